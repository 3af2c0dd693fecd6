"""The benchmarks' peers: carried into tastebud's ranking, they rank as their own library does."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from benchmods import bench_fixture
from tastebud.data.synthetic import generate

bench = bench_fixture("peers", "protocol")


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


def test_the_cornac_bpr_peer_ranks_exactly_as_cornac_scores(bench, data) -> None:
    """cornac's item bias rides as the last factor: the carried dot product is cornac's own ``score``."""
    peers, _ = bench
    pytest.importorskip("cornac")
    from cornac.data import Dataset
    from cornac.models import BPR

    params = {"k": 8, "max_iter": 30, "learning_rate": 0.05, "lambda_reg": 0.01}
    carried = peers.CORNAC_BPR.fit(data, params, 0)
    m = data.matrix.tocoo()
    cdata = Dataset.from_uir(list(zip(m.row.astype(str), m.col.astype(str), m.data.astype(float), strict=True)), seed=0)
    model = BPR(**params, seed=0).fit(cdata)
    assert np.abs(model.i_biases).max() > 0  # the bias is learned, so leaving it out would show
    ours = np.array([int(raw) for raw in cdata.iid_map], np.int64)
    theirs = np.array(list(cdata.iid_map.values()), np.int64)
    seen = data.matrix.tocsr()
    for u in range(0, data.n_users, 7):
        expected = np.full(data.n_items, -np.inf)
        expected[ours] = model.score(cdata.uid_map[str(u)])[theirs]
        assert np.allclose(carried.score_rows([u])[0], expected, atol=1e-5)
        expected[seen[u].indices] = -np.inf
        top = np.argsort(-expected, kind="stable")[:10]
        assert np.array_equal(carried.rank_rows([u], 10)[0][0], top)


def test_knn_scores_sum_the_nearest_of_the_history_not_every_neighbour(bench) -> None:
    """LensKit's item-kNN rule, worked by hand: per target, the max_nbrs largest similarities to the
    person's items, summed; no neighbour at all: no score."""
    from lenskit_worker import knn_scores

    sims = sp.csr_matrix(np.array([[0, 0.9, 0.1, 0], [0.9, 0, 0.5, 0], [0.1, 0.5, 0, 0], [0, 0, 0, 0]], np.float32))
    history = sp.csr_matrix(np.array([[1, 1, 0, 0]], np.float32))
    one = knn_scores(sims, history, max_nbrs=1)[0]
    assert np.allclose(one[:3], [0.9, 0.9, 0.5]) and np.isnan(one[3])
    two = knn_scores(sims, history, max_nbrs=2)[0]
    assert np.allclose(two[:3], [0.9, 0.9, 0.6])  # = history @ sims where the history is not longer than max_nbrs
    assert np.allclose(two[:3], (history @ sims).toarray()[0, :3])


def test_als_fold_in_is_the_weighted_least_squares_user_step(bench) -> None:
    """LensKit's user solve is Hu et al.'s: minimise sum_i c_i (p_i - u.v_i)^2 + reg |u|^2 over all
    items, c = 1 + weight on the history (p = 1), 1 elsewhere (p = 0); checked against lstsq."""
    from lenskit_worker import als_fold_in

    rng = np.random.default_rng(0)
    v = rng.normal(size=(12, 3)).astype(np.float32)
    v[5] = np.nan  # an item LensKit never saw: left out of the solve
    reg, weight = 0.7, 4.0
    known = np.delete(np.arange(12), 5)
    otor = v[known].T.astype(np.float64) @ v[known] + reg * np.eye(3)
    history = [0, 3, 5, 8]
    u = als_fold_in(v, otor, weight, sp.csr_matrix((np.ones(4), ([0] * 4, history)), shape=(1, 12)))[0]
    p = np.isin(known, history).astype(float)
    w = np.sqrt(1.0 + weight * p)
    a = np.vstack([v[known] * w[:, None], np.sqrt(reg) * np.eye(3)])
    expected = np.linalg.lstsq(a, np.concatenate([p * w, np.zeros(3)]), rcond=None)[0]
    assert np.allclose(u, expected, atol=1e-4)


@pytest.mark.parametrize(
    ("which", "params"),
    [("lenskit-als", {"embedding_size": 8, "epochs": 4, "regularization": 1.0, "weight": 5.0}),
     ("lenskit-knn", {"max_nbrs": 5})],
)  # fmt: skip
def test_the_lenskit_peers_round_trip_through_their_own_environment(bench, data, lenskit_python, which, params) -> None:
    """The worker fits in LensKit's environment and checks there that the carried rule gives LensKit's
    own scores (else the fit raises); here the carried model ranks, and folds a history in exactly as
    it scores the training row it came from."""
    peers, _ = bench
    peer = peers.PEERS[which]
    assert peer.available() and peer.python == lenskit_python
    carried = peer.fit(data, params, 0)
    items, scores = carried.rank_rows(np.arange(data.n_users), 5)
    assert (items >= 0).all() and np.isfinite(scores).all()
    assert np.array_equal(items, peer.fit(data, params, 0).rank_rows(np.arange(data.n_users), 5)[0])  # seeded
    row = data.matrix.tocsr()[11]
    assert np.allclose(carried.score_history_idx(row.indices, row.data), carried.score_rows([11])[0], atol=1e-5)


def test_the_lenskit_worker_fails_loudly_on_a_rule_it_does_not_carry(bench, data, lenskit_python) -> None:
    peers, _ = bench
    with pytest.raises(RuntimeError, match="feedback='implicit' only"):
        peers._lenskit("knn", data, {"max_nbrs": 5, "feedback": "explicit"}, 0)
