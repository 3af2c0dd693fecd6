"""Foundation rows: baselines on ML-100K u1..u5 (vs Surprise) and on the fixed top-N splits.

Run: .venv/bin/python benchmarks/bench_baseline.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import tastebud as tb
from common import DATA, markdown_table, timer, write_section
from tastebud.data.movielens import fixed_split, ml100k_folds
from tastebud.eval.evaluate import evaluate_fitted
from tastebud.eval.metrics import mae, rmse

# published peer figures on the fixed splits (shared/data/README.md)
PEER_POPULAR_NDCG = {"ml-100k": 0.214, "ml-latest-small": 0.179}


# The code this benchmark's section measures (besides common.COMMON_PATHS); make bench-check reads it.
MEASURES = [
    "src/tastebud/models/baseline.py",
]


def surprise_folds() -> list[tuple[float, float, float]]:
    from surprise import BaselineOnly, Dataset, Reader, accuracy
    from surprise.model_selection import PredefinedKFold

    folder = DATA / "ml-100k"
    files = [(str(folder / f"u{f}.base"), str(folder / f"u{f}.test")) for f in range(1, 6)]
    data = Dataset.load_from_folds(files, Reader("ml-100k"))
    out = []
    for train, test in PredefinedKFold().split(data):
        with timer() as t:
            algo = BaselineOnly(verbose=False).fit(train)
            preds = algo.test(test)
        out.append((accuracy.rmse(preds, verbose=False), accuracy.mae(preds, verbose=False), t["s"]))
    return out


def main() -> None:
    folds = ml100k_folds()
    ours = []
    for split in folds:
        with timer() as t:
            model = tb.get_model("bias")().fit(split.train)
            pred = model.predict_idx(split.test.user_idx, split.test.item_idx)
        ours.append((rmse(pred, split.test.values), mae(pred, split.test.values), t["s"]))
    peer = surprise_folds()
    o, p = np.mean(ours, axis=0), np.mean(peer, axis=0)
    rating = pd.DataFrame(
        [
            {"model": "tastebud bias", "RMSE": o[0], "MAE": o[1], "fit+predict s/fold": o[2]},
            {"model": "Surprise BaselineOnly", "RMSE": p[0], "MAE": p[1], "fit+predict s/fold": p[2]},
        ]
    )
    speed = p[2] / o[2]

    rows = []
    for name in ("ml-100k", "ml-latest-small"):
        split = fixed_split(name)
        for model_name in ("popular", "random"):
            with timer() as t:
                model = tb.get_model(model_name)().fit(split.train)
            r = evaluate_fitted(model, split, k=10)
            rows.append(
                {
                    "data": name,
                    "model": f"tastebud {model_name}",
                    "NDCG@10": r["ndcg@10"],
                    "Recall@10": r["recall@10"],
                    "coverage": r["coverage"],
                    "fit s": t["s"],
                    "peer NDCG@10 (MostPopular, published)": PEER_POPULAR_NDCG[name] if model_name == "popular" else float("nan"),
                }
            )
    topn = pd.DataFrame(rows)
    body = (
        "## Baselines\n\n"
        "ML-100K canonical u1..u5 folds, mean over folds (same run):\n\n"
        + markdown_table(rating)
        + f"\n\nRMSE ratio tastebud / Surprise = {o[0] / p[0]:.4f}; tastebud is {speed:.0f}x faster.\n\n"
        "Top-N on the fixed per-user 80/20 splits (`shared/data/splits`), full ranking, train items excluded:\n\n"
        + markdown_table(topn)
        + "\n\nReproduce: `.venv/bin/python benchmarks/bench_baseline.py`"
    )
    write_section("baseline", body, measures=MEASURES)
    print(body)


if __name__ == "__main__":
    main()
