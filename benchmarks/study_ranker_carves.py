"""How many carves should the ranker learn from by default? Chosen on validation only.

On each fixed split's training part (``tastebud.data.movielens.fixed_split``), tune's validation
carve (a random 20% of each user's training events) is held out; the ranker, with the retrievers
``bench_serve.py`` serves (their defaults), 100 candidates each and every other parameter at its
default, is fitted on the other 80% with each number of ``carves`` and scored by NDCG@10 on the
carve; EASE alone (its default) is scored beside it for scale. The test part is never read. Rows
are printed as JSON lines (and appended to ``--results`` when given), so the default is chosen on
figures anyone can rerun:

    .venv/bin/python benchmarks/study_ranker_carves.py --sets ml-100k,ml-latest-small --carves 1,3,5
"""

from __future__ import annotations

import argparse
import json
import time

from serve_models import RANKER_RETRIEVERS  # noqa: I001
from tastebud.core.registry import get_model
from tastebud.data.movielens import fixed_split
from tastebud.eval.evaluate import evaluate_fitted
from tastebud.tune import validation_split


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="ml-100k,ml-latest-small")
    ap.add_argument("--carves", default="1,3,5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", default="")
    args = ap.parse_args()
    for name in args.sets.split(","):
        val = validation_split(fixed_split(name).train, "ranker", "ndcg@10", random_state=args.seed)
        runs = [("ease", {})] + [("ranker", {"carves": int(c)}) for c in args.carves.split(",")]
        for model, params in runs:
            if model == "ranker":
                params = {"retrievers": RANKER_RETRIEVERS, "candidates": 100, "random_state": args.seed, **params}
            t = time.perf_counter()
            fitted = get_model(model)(**params).fit(val.train)
            fit_s = time.perf_counter() - t
            score = evaluate_fitted(fitted, val, k=10, metrics=("ndcg",))["ndcg@10"]
            row = {
                "set": name, "model": model, "carves": params.get("carves"), "seed": args.seed,
                "trees": getattr(fitted, "trees_", None), "fit_s": round(fit_s, 1), "validation_ndcg@10": score,
            }  # fmt: skip
            print(json.dumps(row), flush=True)
            if args.results:
                with open(args.results, "a") as fh:
                    fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
