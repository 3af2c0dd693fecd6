"""bench_sasrec's reading of the test item: ranks worked by hand, and choices made on validation only."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmods import bench_fixture
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions
from tastebud.data.splits import leave_last_out
from tastebud.data.synthetic import generate

bench = bench_fixture("bench_sasrec")


class Fixed:
    """Stands in for a fitted model: the same score matrix for every call."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def score_rows(self, users: np.ndarray) -> np.ndarray:
        return self.scores[users]


def _pair() -> tuple[Interactions, Interactions, Fixed]:
    users, items = IdMap(np.arange(2), "user"), IdMap(np.arange(12), "item")
    train = Interactions(users, items, np.array([0, 1]), np.array([0, 3]), explicit=False)
    target = Interactions(users, items, np.array([0, 1]), np.array([2, 11]), explicit=False)
    scores = np.full((2, 12), -1.0)
    scores[0, :5] = [0.9, 0.5, 0.5, 0.1, 0.3]  # user 0: item 0 seen, item 1 ties the target (item 2)
    scores[1, :10] = 1.0  # user 1: ten items above the target (item 11, score 0), one of them seen
    scores[1, 11] = 0.0
    return train, target, Fixed(scores)


def test_ranks_count_ties_against_the_target_and_skip_seen_items(bench) -> None:
    train, target, model = _pair()
    got = bench.metrics(model, train, target, np.array([[1, 3], [0, 1]]))
    # user 0: rank 1 (the tie); user 1: rank 9 (the seen item 3 is no candidate; with it, rank 10, a miss)
    assert got["NDCG@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(11)) / 2)
    assert got["HR@10"] == 1.0
    # against the sampled items: user 0 rank 1 (item 1 ties), user 1 rank 2
    assert got["NDCG@10 (100 neg)"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 2)
    assert got["HR@10 (100 neg)"] == 1.0


def test_a_seen_item_would_push_the_target_out_of_the_top_ten(bench) -> None:
    train, target, model = _pair()
    nothing_seen = Interactions(train.users, train.items, np.array([0]), np.array([5]), explicit=False)
    assert bench.metrics(model, nothing_seen, target, None)["HR@10"] == 0.5  # user 1 now ranks 10th


def test_negatives_are_distinct_unseen_and_seeded(bench) -> None:
    data = generate(n_users=30, n_items=400, n_interactions=900, explicit=False, random_state=2, features=False)
    users = np.arange(data.n_users)
    neg = bench.sample_negatives(data, users, n=20, seed=0)
    m = data.matrix
    for u in users:
        assert len(set(neg[u])) == 20
        assert not np.isin(neg[u], m.indices[m.indptr[u] : m.indptr[u + 1]]).any()
    assert np.array_equal(neg, bench.sample_negatives(data, users, n=20, seed=0))


def test_the_best_baseline_is_chosen_by_validation_not_test(bench) -> None:
    rows = [{"validation": 0.10, "NDCG@10": 0.30}, {"validation": 0.20, "NDCG@10": 0.05}]
    assert bench.best_by_validation(rows) is rows[1]


def test_baseline_rows_are_scored_on_validation_then_refitted_for_test(bench) -> None:
    import tastebud as tb

    data = generate(n_users=40, n_items=200, n_interactions=1200, explicit=False, random_state=3, features=False)
    val, test = leave_last_out(data, validation=True)
    neg = bench.sample_negatives(data, test.test.user_idx.astype(np.int64), n=20)
    defaults, tuned = bench.baseline_rows("popular", val, test, neg, trials=3)
    assert defaults["setting"] == "defaults" and tuned["setting"] == "tuned on validation (3 trials)"
    for row in (defaults, tuned):
        on_val = tb.get_model("popular")(**row["params"]).fit(val.train)
        assert row["validation"] == bench.metrics(on_val, val.train, val.test, None)["NDCG@10"]
        on_test = tb.get_model("popular")(**row["params"]).fit(test.train)
        assert row["NDCG@10"] == bench.metrics(on_test, test.train, test.test, neg)["NDCG@10"]
