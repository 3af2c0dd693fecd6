"""Foundation rows: baselines on ML-100K u1..u5 (vs Surprise) and on the fixed top-N splits.

Run: .venv/bin/python benchmarks/bench_baseline.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import tastebud as tb
from common import interleave, markdown_table, thread_counts, timing_rows, write_section
from tastebud.data.movielens import fixed_split, ml100k_folds
from tastebud.eval.evaluate import evaluate_fitted
from tastebud.eval.metrics import mae, rmse

# published peer figures on the fixed splits (shared/data/README.md)
PEER_POPULAR_NDCG = {"ml-100k": 0.214, "ml-latest-small": 0.179}


# The code this benchmark's section measures (besides common.COMMON_PATHS); make bench-check reads it.
PAIRS = 5

MEASURES = [
    "src/tastebud/models/baseline.py",
]


def surprise_fit_predict(train_df: pd.DataFrame, test_df: pd.DataFrame) -> np.ndarray:
    """Surprise's BaselineOnly (its defaults) fitted on one fold and predicting its test pairs."""
    from surprise import BaselineOnly, Dataset, Reader

    data = Dataset.load_from_df(train_df[["user", "item", "value"]], Reader(rating_scale=(1, 5)))
    algo = BaselineOnly(verbose=False).fit(data.build_full_trainset())
    return np.array([algo.predict(u, i).est for u, i in zip(test_df["user"], test_df["item"], strict=True)])


def ours_fit_predict(split) -> np.ndarray:  # type: ignore[no-untyped-def]
    model = tb.get_model("bias")().fit(split.train)
    return model.predict_idx(split.test.user_idx, split.test.item_idx)


def main() -> None:
    from threadpoolctl import threadpool_limits

    folds = ml100k_folds()
    frames = [(split.train.to_frame(), split.test.to_frame()) for split in folds]
    ours, peer = [], []
    for split, (train_df, test_df) in zip(folds, frames, strict=True):
        pred = ours_fit_predict(split)
        ours.append((rmse(pred, split.test.values), mae(pred, split.test.values)))
        theirs = surprise_fit_predict(train_df, test_df)
        want = test_df["value"].to_numpy()
        peer.append((rmse(theirs, want), mae(theirs, want)))
    o, p = np.mean(ours, axis=0), np.mean(peer, axis=0)
    rating = pd.DataFrame(
        [
            {"model": "tastebud bias", "RMSE": o[0], "MAE": o[1]},
            {"model": "Surprise BaselineOnly", "RMSE": p[0], "MAE": p[1]},
        ]
    )
    # fit + predict on u1, one thread a side (Surprise is single-threaded), interleaved A B A B
    u1, (u1_train, u1_test) = folds[0], frames[0]
    with threadpool_limits(1):
        threads = thread_counts()
        timings = interleave(
            {
                "tastebud bias": (lambda: ours_fit_predict(u1), "1"),
                "Surprise BaselineOnly": (lambda: surprise_fit_predict(u1_train, u1_test), "1"),
            },
            pairs=PAIRS,
        )
    speed = pd.DataFrame(timing_rows(timings, baseline="Surprise BaselineOnly"))

    rows = []
    for name in ("ml-100k", "ml-latest-small"):
        split = fixed_split(name)
        for model_name in ("popular", "random"):
            model = tb.get_model(model_name)().fit(split.train)
            r = evaluate_fitted(model, split, k=10)
            rows.append(
                {
                    "data": name,
                    "model": f"tastebud {model_name}",
                    "NDCG@10": r["ndcg@10"],
                    "Recall@10": r["recall@10"],
                    "coverage": r["coverage"],
                    "peer NDCG@10 (MostPopular, published)": PEER_POPULAR_NDCG[name] if model_name == "popular" else float("nan"),
                }
            )
    topn = pd.DataFrame(rows)
    body = (
        "## Baselines\n\n"
        "ML-100K canonical u1..u5 folds, mean over folds (same run):\n\n"
        + markdown_table(rating)
        + f"\n\nRMSE ratio tastebud / Surprise = {o[0] / p[0]:.4f}.\n\n"
        f"Fit + predict on u1, {PAIRS} interleaved pairs after a warm-up pair ("
        f"threads in this process while timed: {threads}):\n\n"
        + markdown_table(speed)
        + "\n\n"
        "Top-N on the fixed per-user 80/20 splits (`shared/data/splits`), full ranking, train items excluded:\n\n"
        + markdown_table(topn)
        + "\n\nReproduce: `.venv/bin/python benchmarks/bench_baseline.py`"
    )
    write_section("baseline", body, measures=MEASURES)
    print(body)


if __name__ == "__main__":
    main()
