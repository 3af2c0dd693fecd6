"""Which protocol should the blend use by default: one probe or cross-fitting? Chosen on validation only.

On each data set's training part, tune's random 20% validation carve (the one bench_blend.py tunes
Bayesian MF on) is held out; the blend with its default members is fitted on the other 80% under
each setting and scored by RMSE on the carve. The test part is never read. Rows are printed as JSON
lines (and appended to ``--results`` when given), with the per-carve difference against the first
setting, so the default is chosen on figures anyone can rerun:

    .venv/bin/python benchmarks/study_blend_folds.py --sets u1,latest --settings random,folds5
"""

from __future__ import annotations

import argparse
import json
import os
import time

import tastebud as tb
from bench_blend import load_sets  # noqa: I001
from tastebud.eval.metrics import rmse
from tastebud.tune import validation_split

#: Named settings of the blend's own protocol (members and blender at their defaults).
SETTINGS = {
    "random": {"probe_by": "random", "probe": 0.1},
    "folds5": {"probe_by": "folds", "folds": 5},
    "folds10": {"probe_by": "folds", "folds": 10},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="u1,latest")
    ap.add_argument("--settings", default="random,folds5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", default="")
    args = ap.parse_args()
    settings = args.settings.split(",")
    sets = load_sets(args.sets.split(","))
    for name, split in sets.items():
        val = validation_split(split.train, "bayesmf", "rmse", random_state=args.seed)  # the test part stays unread
        first = None
        for setting in settings:
            load = os.getloadavg()[0]
            start = time.perf_counter()
            blend = tb.get_model("blend")(**SETTINGS[setting], random_state=args.seed).fit(val.train)
            seconds = time.perf_counter() - start
            pred = blend.predict_idx(val.test.user_idx, val.test.item_idx, val.test.timestamps)
            row = {
                "set": name,
                "setting": setting,
                "val_rmse": round(rmse(pred, val.test.values), 5),
                "blender": blend.blender_,
                "fit_s": round(seconds, 1),
                "load": round(load, 1),
                "members_val_rmse": {
                    n: round(
                        rmse(m.predict_idx(val.test.user_idx, val.test.item_idx, val.test.timestamps), val.test.values),
                        5,
                    )
                    for n, m in zip(blend.member_names_, blend.fitted_members, strict=True)
                },
            }
            first = row["val_rmse"] if first is None else first
            row["minus_first"] = round(row["val_rmse"] - first, 5)
            line = json.dumps(row)
            print(line, flush=True)
            if args.results:
                with open(args.results, "a") as fh:
                    fh.write(line + "\n")


if __name__ == "__main__":
    main()
