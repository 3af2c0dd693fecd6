"""Metrics against brute-force, one-user-at-a-time Python definitions (hypothesis), plus known
answers worked by hand. The definitions here are the ones written in docs/metrics.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from tastebud.eval import metrics as M

FAST = settings(max_examples=50, deadline=None)


@st.composite
def ranking_case(draw):
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(1, 12))
    k = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rec = np.full((n_users, k), -1, dtype=np.int64)
    for u in range(n_users):
        length = draw(st.integers(0, min(k, n_items)))
        rec[u, :length] = rng.permutation(n_items)[:length]
    density = draw(st.floats(0.0, 1.0))
    rel = sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))
    cut = draw(st.one_of(st.none(), st.integers(1, k)))
    return rec, rel, cut


def per_user(rec: np.ndarray, rel: sp.csr_matrix, cut: int | None):
    """Yield (ranked list without padding, relevant set, k) per user."""
    k = rec.shape[1] if cut is None else cut
    dense = rel.toarray() > 0
    for u in range(rec.shape[0]):
        items = [int(i) for i in rec[u, :k] if i >= 0]
        yield items, set(np.flatnonzero(dense[u]).tolist()), k


def brute(name: str, items: list[int], relevant: set[int], k: int) -> float:
    hits = [i in relevant for i in items]
    n_hits = sum(hits)
    if name == "precision":
        return n_hits / k
    if name == "recall":
        return n_hits / len(relevant) if relevant else 0.0
    if name == "recall_capped":
        return n_hits / min(k, len(relevant)) if relevant else 0.0
    if name == "hit_rate":
        return float(n_hits > 0)
    if name == "ndcg":
        dcg = sum(1 / math.log2(r + 1) for r, h in enumerate(hits, start=1) if h)
        idcg = sum(1 / math.log2(r + 1) for r in range(1, min(k, len(relevant)) + 1))
        return dcg / idcg if idcg else 0.0
    if name == "map":
        total, seen = 0.0, 0
        for r, h in enumerate(hits, start=1):
            if h:
                seen += 1
                total += seen / r
        denom = min(k, len(relevant))
        return total / denom if denom else 0.0
    if name == "mrr":
        return next((1 / r for r, h in enumerate(hits, start=1) if h), 0.0)
    raise KeyError(name)


@pytest.mark.parametrize("name", sorted(M.RANKING_METRICS))
@FAST
@given(case=ranking_case())
def test_ranking_metric_matches_brute_force(name, case):
    rec, rel, cut = case
    got = M.RANKING_METRICS[name](rec, rel, cut)
    want = [brute(name, items, relevant, k) for items, relevant, k in per_user(rec, rel, cut)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert ((got >= 0) & (got <= 1)).all()


@FAST
@given(case=ranking_case())
def test_hits_matrix_is_membership(case):
    rec, rel, _ = case
    dense = rel.toarray() > 0
    want = np.array([[i >= 0 and dense[u, i] for i in row] for u, row in enumerate(rec)], dtype=bool).reshape(rec.shape)
    np.testing.assert_array_equal(M.hits_matrix(rec, rel), want)


def test_known_answers_by_hand():
    # user 0: relevant {1, 3}, list [1, 2, 3] -> hits at ranks 1 and 3
    # user 1: relevant {0, 2, 4, 5}, list [4, -1, -1] (short list) -> hit at rank 1
    # user 2: nothing relevant
    rec = np.array([[1, 2, 3], [4, -1, -1], [0, 1, 2]])
    rel = sp.csr_matrix(np.array([[0, 1, 0, 1, 0, 0], [1, 0, 1, 0, 1, 1], [0, 0, 0, 0, 0, 0]], dtype=np.float32))
    np.testing.assert_allclose(M.precision_at_k(rec, rel), [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(M.recall_at_k(rec, rel), [1.0, 0.25, 0])
    idcg2 = 1 + 1 / math.log2(3)
    idcg3 = idcg2 + 0.5
    np.testing.assert_allclose(M.ndcg_at_k(rec, rel), [(1 + 0.5) / idcg2, 1 / idcg3, 0])
    np.testing.assert_allclose(M.map_at_k(rec, rel), [(1 + 2 / 3) / 2, 1 / 3, 0])
    np.testing.assert_allclose(M.mrr_at_k(rec, rel), [1, 1, 0])
    np.testing.assert_allclose(M.hit_rate_at_k(rec, rel), [1, 1, 0])
    np.testing.assert_allclose(M.ndcg_at_k(rec, rel, k=1), [1, 1, 0])
    assert M.catalog_coverage(rec, 6) == pytest.approx(5 / 6)


@st.composite
def lists_and_items(draw):
    n_items = draw(st.integers(1, 10))
    n_users = draw(st.integers(1, 5))
    k = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rec = np.full((n_users, k), -1, dtype=np.int64)
    for u in range(n_users):
        length = draw(st.integers(0, min(k, n_items)))
        rec[u, :length] = rng.permutation(n_items)[:length]
    pop = rng.integers(0, 20, size=n_items).astype(np.float64)
    vectors = rng.normal(size=(n_items, 3)) * (rng.random((n_items, 1)) < 0.9)  # some zero vectors
    return rec, pop, vectors, n_items


@FAST
@given(case=lists_and_items(), n_train_users=st.integers(1, 30))
def test_beyond_accuracy_metrics_match_brute_force(case, n_train_users):
    rec, pop, vectors, n_items = case
    lists = [[int(i) for i in row if i >= 0] for row in rec]
    assert M.catalog_coverage(rec, n_items) == pytest.approx(len({i for lst in lists for i in lst}) / n_items)

    def mean_or_nan(vals):
        return sum(vals) / len(vals) if vals else float("nan")

    nov = [mean_or_nan([-math.log2(min(1.0, max(1e-12, pop[i] / n_train_users))) for i in lst]) for lst in lists]
    np.testing.assert_allclose(M.novelty(rec, pop, n_train_users), nov, rtol=1e-12)
    arp = [mean_or_nan([pop[i] for i in lst]) for lst in lists]
    np.testing.assert_allclose(M.average_popularity(rec, pop), arp, rtol=1e-12)

    def cos(a, b):
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0

    ild = []
    for lst in lists:
        pairs = [(a, b) for a in lst for b in lst if a != b]
        ild.append(mean_or_nan([1 - cos(vectors[a], vectors[b]) for a, b in pairs]) if len(lst) >= 2 else float("nan"))
    np.testing.assert_allclose(M.intra_list_diversity(rec, vectors), ild, rtol=1e-9, atol=1e-12)


@FAST
@given(st.lists(st.tuples(st.floats(-10, 10), st.floats(-10, 10)), min_size=1, max_size=40))
def test_rmse_mae_match_brute_force(pairs):
    p = np.array([a for a, _ in pairs])
    y = np.array([b for _, b in pairs])
    assert M.rmse(p, y) == pytest.approx(math.sqrt(sum((a - b) ** 2 for a, b in pairs) / len(pairs)), abs=1e-12)
    assert M.mae(p, y) == pytest.approx(sum(abs(a - b) for a, b in pairs) / len(pairs), abs=1e-12)
    assert M.mae(p, y) <= M.rmse(p, y) + 1e-12


def test_rmse_mae_known():
    assert M.rmse([3, 4, 5], [4, 4, 3]) == pytest.approx(math.sqrt(5 / 3))
    assert M.mae([3, 4, 5], [4, 4, 3]) == pytest.approx(1.0)


def test_shape_errors():
    with pytest.raises(ValueError, match="2-D"):
        M.precision_at_k(np.array([1, 2]), sp.csr_matrix((1, 3)))
