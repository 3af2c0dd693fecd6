"""bench_neural's protocol pieces: the reference is chosen by validation, comparisons are paired per
seed, the cold-start carves keep held-out users out of training, and a scaled-down run says so."""

from __future__ import annotations

import numpy as np

from benchmods import bench_fixture
from tastebud.data import splits
from tastebud.data.synthetic import generate

bench = bench_fixture("bench_neural")


def _row(model: str, validation: float | None, test: list[float]) -> dict:
    runs = [{"seed": s, "ndcg@10": v, "recall@20": v, "tail recall@50": v, "fit_s": 1.0} for s, v in enumerate(test)]
    return {"model": model, "setting": "defaults", "validation": validation, "params": {}, "runs": runs}


def test_reference_is_the_best_non_neural_row_on_validation_not_on_test(bench) -> None:
    rows = [
        _row("MostPopular", 0.10, [0.20]),
        _row("ials (tastebud)", 0.25, [0.50, 0.50, 0.50]),  # best on test
        _row("ease (tastebud)", 0.28, [0.40]),  # best on validation
        _row("GMF", None, [0.45, 0.30, 0.41]),  # neural rows have no validation value
        _row("MLP", None, [0.30, 0.50]),  # a run cut short: compared on the seeds it has
    ]
    assert bench.reference(rows)["model"] == "ease (tastebud)"
    table, sentence = bench.accuracy_table(rows, [0, 1, 2])
    gmf = next(line for line in table.splitlines() if line.startswith("| GMF"))
    # EASE's one deterministic fit stands for every seed: differences +0.05, -0.10, +0.01
    assert "+0.0500, -0.1000, +0.0100; better in 2 of 3" in gmf
    mlp = next(line for line in table.splitlines() if line.startswith("| MLP"))
    assert "(-0.1000, +0.1000; better in 1 of 2)" in mlp
    assert "ease (tastebud), defaults, validation NDCG@10 0.2800" in sentence
    assert "GMF 2 of 3" in sentence and "MLP 1 of 2" in sentence


def test_cold_users_leave_training_and_keep_a_history_from_it(bench) -> None:
    data = generate(n_users=80, n_items=60, n_interactions=3000, explicit=False, random_state=1, features=False)
    split = splits.holdout(data, fraction=0.2, random_state=0)
    train, cold, histories = bench.cold_draw(split, 0)
    assert len(cold) == int(0.25 * np.count_nonzero(np.diff(split.test.matrix.indptr)))
    assert not np.isin(train.user_idx, cold).any()
    full = split.train.matrix
    for u, h in zip(cold, histories, strict=True):
        assert 0 < len(h) <= 5 and np.isin(h, full.indices[full.indptr[u] : full.indptr[u + 1]]).all()


def test_cold_validation_reads_training_users_only(bench) -> None:
    data = generate(n_users=120, n_items=60, n_interactions=5000, explicit=False, random_state=2, features=False)
    split = splits.holdout(data, fraction=0.2, random_state=0)
    _, test_cold, _ = bench.cold_draw(split, 0)
    train, histories, rel = bench.cold_validation_draw(split, 0)
    assert not np.isin(train.user_idx, test_cold).any()
    assert len(histories) == rel.shape[0] and len(histories) % 3 == 0
    for r, h in enumerate(histories):  # a query's history never holds its relevant items
        assert not np.intersect1d(h, rel[r].indices).size


def test_a_scaled_down_run_says_what_it_cut(bench) -> None:
    full = {**bench.DEFAULTS, "trials_for": []}
    assert bench.scaled_down(full) == ""
    cut = bench.scaled_down({**full, "cold_seeds": 2, "trials_for": [("ease", "ml-latest-small", 5)]})
    assert "two-tower seeds per cold-start draw (and on the held-out items) 2 instead of 3" in cut
    assert "ease on ml-latest-small: 5 trials instead of 10" in cut
    assert "ials on ml-100k: no tuned row (0 trials)" in bench.scaled_down(
        {**full, "trials_for": [("ials", "ml-100k", 0)]}
    )
    assert "--cold-seeds 2" in bench.command({**full, "cold_seeds": 2})
