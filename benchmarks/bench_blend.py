"""The blend against its best member and Surprise's best model, under the honest protocol.

Data: ML-100K u1..u5 (the canonical folds) and a random 90/10 split of ml-latest-small's ratings.
On every data set, everything is chosen on the training part (``base``) alone:

* tastebud's best single model (Bayesian MF) is tuned with Optuna (TPE, on tune's
  random 20% validation carve of the base) for ``--trials`` trials, its defaults enqueued first
  (factors capped at 24: a 64-factor Gibbs fit takes minutes on a shared machine);
* Surprise's best rating model is chosen on the same carve: BaselineOnly, KNNBaseline (item-based,
  pearson_baseline) and SVD are each tuned with the same sampler for ``--trials`` trials (their
  defaults scored too), and the one with the lowest validation RMSE is refitted on the base;
* the blend takes the default members (bias, item/user kNN with baseline, SVD, SVD++, timeSVD++)
  and the tuned Bayesian MF, and its default protocol (``protocol_text`` says which: cross-fitted
  out-of-fold predictions of every base rating, or one probe carved from the base), learns its
  blender on those held-out predictions, refits the members on the whole base. tastebud's best
  single model is the member with the lowest RMSE on the blender's held-out rows (a validation
  choice), scored as refitted inside the blend.

The test part is read once per data set, for the table. Rows: RMSE per data set, the mean and
spread over u1..u5, fit seconds of the whole blend, and the paired per-fold difference of the
blend against its best member on the test part.

    .venv/bin/python benchmarks/bench_blend.py                   # writes the "blend" section
    .venv/bin/python benchmarks/bench_blend.py --sets u1 --trials 1 --no-write   # a quick look

Data sets are independent: runs with ``--sets u1 --results a.jsonl --no-write`` and so on may go
side by side; a last run with every set and the joined ``--results`` file writes the section.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import tastebud as tb
from bench_rating import PEER_NAMES, PEERS, _surprise_rmse
from common import DATA, write_section  # noqa: I001
from protocol import search as protocol_search
from tastebud.data import splits as S
from tastebud.data.movielens import load_ml_latest_small, ml100k_folds
from tastebud.eval.metrics import rmse
from tastebud.models.blend import DEFAULT_MEMBERS
from tastebud.tune import validation_split

MEASURES = [
    "benchmarks/bench_rating.py",
    "benchmarks/protocol.py",
    "src/tastebud/models/blend.py",
    "src/tastebud/models/timesvdpp.py",
    "src/tastebud/kernels/timesvdpp.py",
    "src/tastebud/models/mf.py",
    "src/tastebud/kernels/mf.py",
    "src/tastebud/models/knn.py",
    "src/tastebud/models/baseline.py",
]
GLOCAL_K_U1 = 0.8889


def load_sets(names: list[str]) -> dict[str, S.Split]:
    out: dict[str, S.Split] = {}
    folds = tuple(int(n[1:]) for n in names if n.startswith("u"))
    for split in ml100k_folds(DATA, folds=folds) if folds else []:
        out[split.name] = split
    if "latest" in names:
        out["latest"] = S.kfold(load_ml_latest_small(DATA, features=False), k=10, random_state=0)[0]
    return {n: out[n] for n in names}


def search(objective, first: dict, trials: int, seed: int) -> dict:  # type: ignore[no-untyped-def]
    """Optuna's TPE (seeded) for ``trials`` trials, the known defaults tried first."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(first)
    study.optimize(objective, n_trials=trials)
    return {**study.best_params, "value": round(study.best_value, 4)}


def tune_bayesmf(val: S.Split, trials: int, seed: int) -> dict:
    """Bayesian MF's factor count and implicit option (its own search space, factors capped at 24 to bound the cost)."""

    def objective(trial) -> float:  # type: ignore[no-untyped-def]
        params = {
            "factors": trial.suggest_int("factors", 4, 24, log=True),
            "implicit": trial.suggest_categorical("implicit", ["none", "users", "both"]),
        }
        model = tb.get_model("bayesmf")(**params, random_state=seed).fit(val.train)
        return rmse(model.predict_idx(val.test.user_idx, val.test.item_idx), val.test.values)

    return search(objective, {"factors": 10, "implicit": "both"}, trials, seed)


def choose_surprise(val: S.Split, trials: int, seed: int) -> dict:
    """Surprise's best model on the carve: each candidate's defaults, then ``trials`` TPE trials; lowest RMSE wins."""
    tried: dict[str, dict] = {}
    for label, (make, defaults, space) in PEERS.items():
        def score(params: dict, make=make) -> float:  # type: ignore[no-untyped-def]
            return _surprise_rmse(make(params, seed), val.train, val.test)

        params, value = protocol_search(space, score, trials, seed)
        first = score(defaults)
        if first <= value:
            params, value = dict(defaults), first
        tried[label] = {"params": params, "value": round(value, 4)}
    best = min(tried, key=lambda k: tried[k]["value"])
    return {"model": best, **tried[best], "tried": {k: v["value"] for k, v in tried.items()}}


def run_set(name: str, split: S.Split, trials: int, seed: int) -> dict:
    base, test = split.train, split.test
    row: dict = {"set": name, "load": [os.getloadavg()[0]]}
    val = validation_split(base, "bayesmf", "rmse", random_state=seed)  # tune's own carve: 20% of the base
    start = time.perf_counter()
    best = tune_bayesmf(val, trials, seed)
    row["bayesmf_params"] = best
    row["tune_s"] = time.perf_counter() - start
    members = {n: dict(p) for n, p in DEFAULT_MEMBERS.items()}
    members["bayesmf"] = {"factors": best["factors"], "implicit": best["implicit"]}
    blend = tb.get_model("blend")(members=members, random_state=seed)
    start = time.perf_counter()
    blend.fit(base)
    row["blend_fit_s"] = time.perf_counter() - start
    row["blender"] = blend.blender_
    row["blend"] = rmse(blend.predict_idx(test.user_idx, test.item_idx, test.timestamps), test.values)
    row["members"] = {
        n: rmse(m.predict_idx(test.user_idx, test.item_idx, test.timestamps), test.values)
        for n, m in zip(blend.member_names_, blend.fitted_members, strict=True)
    }
    row["best_single_name"] = min(blend.probe_rmse_, key=blend.probe_rmse_.get)  # on the held-out rows
    row["best_single"] = row["members"][row["best_single_name"]]
    row["best_member"] = min(row["members"], key=row["members"].get)
    row["blend_minus_best_member"] = row["blend"] - row["members"][row["best_member"]]
    start = time.perf_counter()
    chosen = choose_surprise(val, trials, seed)
    row["surprise_choice"] = chosen
    row["surprise_params"] = chosen["params"]
    make = PEERS[chosen["model"]][0]
    row["surprise"] = _surprise_rmse(make(chosen["params"], seed), base, test)
    row["surprise_s"] = time.perf_counter() - start
    row["load"].append(os.getloadavg()[0])  # at the start and at the end of this data set's run
    print(json.dumps(row, default=str), flush=True)
    return row


def protocol_text(params: dict) -> str:
    """How the blend at these parameters makes its blender's rows, in words for the section."""
    if params["probe_by"] == "folds":
        k = params["folds"]
        return (
            f"are cross-fitted (Jahrer, Töscher & Legenstein 2010): the training part is split into {k} random "
            f"folds, every member is fitted on {k - 1} of them and predicts the other, so every training rating "
            "gets one out-of-fold prediction; the blender (ridge, FWLS or LightGBM, and its penalty) is chosen "
            "on an inner random 20% of those rows and learned on all of them"
        )
    return (
        f"are fitted on the training part minus a {params['probe_by']} {params['probe']:.0%} probe; the blender "
        "(ridge, FWLS or LightGBM, and its penalty) is chosen on an inner 20% fold of the probe and learned on "
        "the probe"
    )


def table(rows: list[dict]) -> str:
    folds = [r for r in rows if r["set"].startswith("u")]
    cols = [r["set"] for r in rows]
    out = []
    for label, key in (
        ("tastebud blend", "blend"),
        ("tastebud best single (lowest held-out RMSE)", "best_single"),
        ("Surprise best model (chosen and tuned on validation)", "surprise"),
    ):
        line: dict = {"model": label}
        for r in rows:
            line[r["set"]] = f"{r[key]:.4f}"
        if len(folds) == 5:
            vals = [r[key] for r in folds]
            line["u1..u5 mean (sd)"] = f"{np.mean(vals):.4f} ({np.std(vals, ddof=1):.4f})"
        out.append(line)
    out.append(
        {
            "model": "blend - best member (paired, test)",
            **{r["set"]: f"{r['blend_minus_best_member']:+.4f}" for r in rows},
        }
    )
    out.append({"model": "tastebud best single, chosen on held-out rows", **{r["set"]: r["best_single_name"] for r in rows}})
    out.append({"model": "Surprise model chosen on validation", **{r["set"]: PEER_NAMES[r["surprise_choice"]["model"]] for r in rows}})
    out.append({"model": "best member on test (for the paired row)", **{r["set"]: r["best_member"] for r in rows}})
    out.append({"model": "blender chosen on the inner fold", **{r["set"]: r["blender"] for r in rows}})
    out.append({"model": "fit s of the whole blend", **{r["set"]: f"{r['blend_fit_s']:.0f}" for r in rows}})
    return _md(out, ["model", *cols] + (["u1..u5 mean (sd)"] if len(folds) == 5 else []))


def _short(params: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())


def _md(rows: list[dict], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def _targets(rows: list[dict]) -> str:
    """The issue's targets, read off the rows (never asserted by hand)."""
    out = []
    wins = [r["set"] for r in rows if r["blend_minus_best_member"] < 0]
    out.append(f"the blend beats its best member on {len(wins)} of {len(rows)} data sets (paired differences above)")
    folds = [r["blend"] for r in rows if r["set"].startswith("u")]
    if len(folds) == 5:
        mean = float(np.mean(folds))
        out.append(f"its u1..u5 mean is {mean:.4f} ({'within' if mean <= 0.885 else 'over'} the 0.885 asked)")
    u1 = [r["blend"] for r in rows if r["set"] == "u1"]
    if u1:
        verdict = "met" if u1[0] <= 0.880 else "missed"
        out.append(f"its u1 RMSE is {u1[0]:.4f} against the 0.880 asked ({verdict}; GLocal-K: {GLOCAL_K_U1})")
    return "; ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="u1,latest,u2,u3,u4,u5")
    ap.add_argument("--trials", type=int, default=3, help="Optuna trials per side per data set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", default="", help="JSON-lines file: rows appended per data set, reused when present")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    names = args.sets.split(",")
    done: dict[str, dict] = {}
    path = Path(args.results) if args.results else None
    if path and path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            done[r["set"]] = r
    todo = [n for n in names if n not in done]
    sets = load_sets(todo) if todo else {}
    for n in todo:
        row = run_set(n, sets[n], args.trials, args.seed)
        done[n] = row
        if path:
            with open(path, "a") as fh:
                fh.write(json.dumps(row, default=str) + "\n")
    rows = [done[n] for n in names]
    targets = _targets(rows)
    loads = ", ".join(f"{r['set']} " + " to ".join(f"{v:.1f}" for v in r["load"]) for r in rows)
    members = ", ".join(rows[0]["members"])
    params = "; ".join(
        f"{r['set']}: Bayesian MF {_short(r['bayesmf_params'])}, {PEER_NAMES[r['surprise_choice']['model']]} "
        f"{_short(r['surprise_params'])} (validation RMSE of each Surprise candidate: {_short(r['surprise_choice']['tried'])})"
        for r in rows
    )
    body = f"""## Blend of rating models (RMSE on the test part, lower is better)

Protocol: on every data set each choice is made on the training part alone. Bayesian MF (tastebud's
best single rating model) is tuned by Optuna (TPE, seed {args.seed}) for {args.trials} trials on a 20%
validation carve of the training part (defaults tried first; factors capped at 24 to bound the cost;
the validation RMSE is `value` below). On the same carve, Surprise's BaselineOnly, KNNBaseline and
SVD are each scored at their defaults and tuned with the same sampler for {args.trials} trials; the one
with the lowest validation RMSE is Surprise's row (refitted on the training part). tastebud's best
single model is the blend member with the lowest RMSE on the blender's held-out rows.
The blend's members ({members}; Bayesian MF with its tuned parameters, the others at their
defaults) {protocol_text(tb.get_model("blend")().get_params())};
the members are refitted on the whole training part (the blend's default protocol, chosen on
validation carves of u1's and latest's training parts by `benchmarks/study_blend_folds.py`, figures
in docs/blend.md). "latest" is a random 90/10 split of
ml-latest-small's ratings. GLocal-K's published u1 figure is {GLOCAL_K_U1}.

{table(rows)}

Per member RMSE (test): {"; ".join(r["set"] + ": " + ", ".join(f"{k} {v:.4f}" for k, v in r["members"].items()) for r in rows)}.

Tuned parameters (`value`: validation RMSE): {params}.

Against the issue's targets: {targets}. What was tried to go further, on u1's validation carve
only (a separate run, not redone by this script): adding explicit ALS, Bayesian MF with implicit
"none" or with 20 factors and implicit "users", SVD with 200 factors, user kNN (MSD, mean-centred)
or item kNN (Pearson, mean-centred) to the default members moved the carve's ridge blend by at most
0.0005 RMSE (0.8852 to 0.8847), so the defaults stand. Fit seconds are wall time on 2 cores shared
with other work; the 1-minute load average at the start and end of each data set's run: {loads}.
"""
    print(body)
    if not args.no_write:
        write_section("blend", body, measures=MEASURES)


if __name__ == "__main__":
    main()
