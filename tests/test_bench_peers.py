"""The benchmarks' peers: carried into tastebud's ranking, they rank as their own library does."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from tastebud.data.synthetic import generate

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("peers"), importlib.import_module("protocol")
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def data():
    return generate(n_users=120, n_items=80, n_interactions=2400, explicit=False, random_state=3, features=False)


def test_carried_state_ranks_as_the_tastebud_model_it_came_from(bench, data) -> None:
    peers, _ = bench
    from tastebud.models.ease import EASE
    from tastebud.models.ials import ImplicitALS

    users = np.arange(data.n_users)
    als = ImplicitALS(factors=8, epochs=3, threads=1).fit(data)
    carried = peers.Carried.of_factors("als", data, als.user_factors_, als.item_factors_)
    assert np.array_equal(carried.rank_rows(users, 10)[0], als.rank_rows(users, 10)[0])
    ease = EASE(reg=50.0).fit(data)
    carried = peers.Carried.of_item_weights("ease", data, ease.weights_)
    assert np.array_equal(carried.rank_rows(users, 10)[0], ease.rank_rows(users, 10)[0])
    assert np.allclose(carried.score_rows(users[:3], [4, 1]), ease.score_rows(users[:3], [4, 1]), atol=1e-5)


def _agree(ours: np.ndarray, ids: np.ndarray) -> float:
    """Share of users whose top lists hold the same items (ties may order differently)."""
    return float(np.mean([set(a) == set(b) for a, b in zip(ours, ids, strict=True)]))


@pytest.mark.parametrize("which", ["als", "bpr"])
def test_carried_factors_rank_as_implicit_recommends(bench, data, which) -> None:
    peers, _ = bench
    pytest.importorskip("implicit")
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    ui = data.matrix.tocsr()
    if which == "als":
        model = AlternatingLeastSquares(factors=8, iterations=3, num_threads=1, random_state=0)
    else:  # the item bias is implicit's last factor: the carried dot product must include it
        model = BayesianPersonalizedRanking(factors=8, iterations=20, num_threads=1, random_state=0)
    model.fit(ui, show_progress=False)
    users = np.arange(data.n_users)
    ids, _ = model.recommend(users, ui, N=5, filter_already_liked_items=True)
    carried = peers.Carried.of_factors(which, data, model.user_factors, model.item_factors)
    assert _agree(carried.rank_rows(users, 5)[0], ids) > 0.95


@pytest.mark.parametrize("similarity", ["cosine", "bm25", "tfidf"])
def test_the_item_knn_peer_ranks_as_implicit_recommends(bench, data, similarity) -> None:
    peers, _ = bench
    pytest.importorskip("implicit")
    from implicit import nearest_neighbours as nn

    cls = {"cosine": nn.CosineRecommender, "bm25": nn.BM25Recommender, "tfidf": nn.TFIDFRecommender}[similarity]
    ui = data.matrix.tocsr()
    model = cls(K=10, num_threads=1)
    model.fit(ui, show_progress=False)
    users = np.arange(data.n_users)
    ids, _ = model.recommend(users, ui, N=5, filter_already_liked_items=True)
    carried = peers.IMPLICIT_KNN.fit(data, {"K": 10, "similarity": similarity}, 0)
    assert _agree(carried.rank_rows(users, 5)[0], ids) > 0.95


def test_cornac_ease_is_steck_closed_form_in_tastebud_item_order(bench, data) -> None:
    peers, _ = bench
    pytest.importorskip("cornac")
    carried = peers.CORNAC_EASE.fit(data, {"lamb": 50.0, "posB": False}, 0)
    x = data.matrix.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 50.0 * np.eye(data.n_items))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    assert np.allclose(carried.weights_, b, atol=1e-4)


def test_a_peer_is_searched_and_read_as_tune_searches_and_reads(bench, data) -> None:
    """tune_peer over a tastebud model's own fit gives tune's best value: the same carve, sampler and read."""
    _, protocol = bench
    pytest.importorskip("optuna")
    from tastebud.core.space import LogFloat
    from tastebud.models.ease import EASE
    from tastebud.tune import tune

    space = {"reg": LogFloat(1.0, 5000.0)}
    params, value = protocol.tune_peer(lambda t, p: EASE(**p).fit(t), space, data, "ease", "ndcg@10", trials=3)
    ours = tune("ease", data, metric="ndcg@10", trials=3, params={"dropout": 0.0}, random_state=0)
    assert params == {"reg": ours.params["reg"]}
    assert value == pytest.approx(ours.value)
