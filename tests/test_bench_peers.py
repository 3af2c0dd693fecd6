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


def test_the_als_peer_folds_in_a_new_person_as_implicit_recalculates_one(bench, data) -> None:
    """Strong generalisation: the carried ALS answers a history by implicit's own least-squares step."""
    peers, _ = bench
    pytest.importorskip("implicit")
    from implicit.cpu.als import AlternatingLeastSquares

    params = {"factors": 8, "regularization": 1.0, "alpha": 5.0, "iterations": 3}
    carried = peers.IMPLICIT_ALS.fit(data, params, 0)
    model = AlternatingLeastSquares(**params, num_threads=1, random_state=0)
    model.fit(data.matrix.tocsr(), show_progress=False)
    for u in (0, 7, 31):
        row = data.matrix.tocsr()[u]
        ids, _ = model.recommend(0, row, N=5, recalculate_user=True, filter_already_liked_items=True)
        ours, _ = carried.rank_history_idx(row.indices, row.data, 5)
        assert set(ours) == set(ids)


def test_item_item_and_encoder_peers_score_a_history_as_a_training_row(bench, data) -> None:
    """h W (item-kNN, cornac EASE) and VAECF's encoder read a history exactly as the row they trained on."""
    peers, _ = bench
    pytest.importorskip("implicit")
    pytest.importorskip("cornac")
    pytest.importorskip("torch")  # cornac's VAECF trains in PyTorch (not in the lean install)
    vaecf = {"k": 4, "hidden": 10, "beta": 0.2, "learning_rate": 1e-3, "n_epochs": 2, "batch_size": 50,
             "act_fn": "tanh", "likelihood": "mult"}  # fmt: skip
    fitted = [
        peers.IMPLICIT_KNN.fit(data, {"K": 10, "similarity": "bm25"}, 0),
        peers.CORNAC_EASE.fit(data, {"lamb": 50.0, "posB": True}, 0),
        peers.CORNAC_VAECF.fit(data, vaecf, 0),
    ]
    row = data.matrix.tocsr()[11]
    for carried in fitted:
        assert np.allclose(carried.score_history_idx(row.indices, row.data), carried.score_rows([11])[0], atol=1e-6)


def test_the_vaecf_peer_scores_a_training_user_as_cornac_does(bench, data) -> None:
    peers, _ = bench
    pytest.importorskip("cornac")
    pytest.importorskip("torch")
    from cornac.data import Dataset
    from cornac.models import VAECF

    params = {"k": 4, "hidden": 10, "beta": 0.2, "learning_rate": 1e-3, "n_epochs": 2, "batch_size": 50}
    carried = peers.CORNAC_VAECF.fit(data, {**params, "act_fn": "tanh", "likelihood": "mult"}, 0)
    m = data.matrix.tocoo()
    cdata = Dataset.from_uir(list(zip(m.row.astype(str), m.col.astype(str), m.data.astype(float), strict=True)), seed=0)
    hidden = params.pop("hidden")
    model = VAECF(**params, autoencoder_structure=[hidden], seed=0).fit(cdata)
    ours = np.array([int(raw) for raw in cdata.iid_map], np.int64)
    theirs = np.array(list(cdata.iid_map.values()), np.int64)
    u = 5
    expected = model.score(cdata.uid_map[str(u)])[theirs]
    assert np.allclose(carried.score_rows([u])[0][ours], expected, atol=1e-6)


def test_the_search_tries_its_start_point_first(bench) -> None:
    _, protocol = bench
    pytest.importorskip("optuna")
    from tastebud.core.space import Int, LogFloat

    space = {"a": LogFloat(1.0, 100.0), "b": Int(1, 9)}
    seen: list[dict] = []
    best, value = protocol.search(space, lambda p: seen.append(p) or p["b"], trials=3, maximize=True,
                                  fixed={"c": 0}, start={"a": 30.0, "b": 4, "unused": 1})  # fmt: skip
    assert seen[0] == {"c": 0, "a": 30.0, "b": 4}
    assert value == max(p["b"] for p in seen) and best["c"] == 0
