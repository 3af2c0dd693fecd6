"""The ranking stage: persistence, explanations, fold-in, the fallback, no leakage, and that it learns.

The contract suite (tests/test_contract.py) runs the ranker with its ``fast_params`` as well.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import tastebud as tb
from tastebud.core.errors import ConfigError, DataError
from tastebud.core.registry import register
from tastebud.data import splits
from tastebud.data.synthetic import generate
from tastebud.eval.evaluate import evaluate_fitted
from tastebud.models.baseline import MostPopular

pytest.importorskip("lightgbm")
from tastebud.models.ranker import FEATURE_GROUPS, Ranker  # noqa: E402

FAST = dict(Ranker.fast_params)


class SpyRetriever(MostPopular):
    """Popularity that writes down what it was fitted on and which of its fits each scoring used."""

    log: ClassVar[list[tuple[str, Any]]] = []
    search_space: ClassVar[dict[str, Any]] = {}

    def _fit(self, data: tb.Interactions) -> None:
        super()._fit(data)
        pairs = set(zip(data.user_idx.tolist(), data.item_idx.tolist(), strict=True))
        self.fit_number_ = sum(1 for kind, _ in self.log if kind == "fit")
        self.log.append(("fit", pairs))

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        self.log.append(("score", self.fit_number_))
        return super()._score(user_idx, item_idx)


@pytest.fixture()
def spy():
    """SpyRetriever in the registry for one test only (other modules list the registry)."""
    from tastebud.core import registry

    register("spy_retriever")(SpyRetriever)
    SpyRetriever.log.clear()
    try:
        yield SpyRetriever
    finally:
        registry._REGISTRY.pop("spy_retriever", None)


@pytest.fixture(scope="module")
def model(synth):
    return Ranker(**FAST).fit(synth)


def users_of(data, n=5):
    return [data.users.ids[i] for i in range(0, data.n_users, data.n_users // n)][:n]


def test_save_load_round_trip_without_pickle(model, synth, tmp_path):
    folder = model.save(tmp_path / "r")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "ranker.lightgbm.txt" in manifest["files"]  # LightGBM's own text format
    assert not any(name.endswith((".pkl", ".pickle")) for name in manifest["files"])
    loaded = tb.load_model(folder)
    users = users_of(synth)
    a, b = model.recommend(users, k=8), loaded.recommend(users, k=8)
    for row in range(len(users)):
        assert a.items_of(row) == b.items_of(row)
        np.testing.assert_array_equal(a.scores[row], b.scores[row])
    history = [synth.items.ids[i] for i in (1, 4, 9)]
    assert model.recommend_for_history(history, k=5).items_of(0) == loaded.recommend_for_history(history, k=5).items_of(
        0
    )
    assert loaded.feature_names_ == model.feature_names_ and loaded.retriever_names_ == ["itemknn", "ease", "popular"]


def test_explanations_add_up_to_the_score(model, synth):
    users = users_of(synth, 3)
    recs = model.recommend(users, k=5, explain=True)
    for row in range(len(users)):
        for expl, score in zip(recs.explanations[row], recs.scores[row], strict=True):
            names = [name for name, _ in expl.contributions]
            assert names[-1] == "(base)" and set(names[:-1]) == set(model.feature_names_)
            assert sum(w for _, w in expl.contributions) == pytest.approx(float(score), abs=1e-4)
    history = [synth.items.ids[i] for i in (2, 7, 11, 20)]
    recs = model.recommend_for_history(history, k=3, explain=True)
    for expl, score in zip(recs.explanations[0], recs.scores[0], strict=True):
        assert sum(w for _, w in expl.contributions) == pytest.approx(float(score), abs=1e-4)


def test_compiled_trees_give_lightgbms_scores_and_contributions(model, synth):
    """The served path runs the booster through kernels/trees; LightGBM itself is the fallback."""
    users = np.arange(0, synth.n_users, 9)
    assert model._forest() is not None
    compiled = model.score_rows(users)
    i, _ = model.rank_rows(users[:1], k=5)
    explained = model.explain_idx(int(users[0]), i[0])
    model._cached_forest = (model._booster, None)  # as for a booster the kernels cannot reproduce
    try:
        np.testing.assert_allclose(model.score_rows(users), compiled, atol=1e-5)
        for a, b in zip(model.explain_idx(int(users[0]), i[0]), explained, strict=True):
            np.testing.assert_allclose([w for _, w in a.contributions], [w for _, w in b.contributions], atol=1e-9)
    finally:
        model.__dict__.pop("_cached_forest")


def test_explaining_a_few_items_matches_their_scores_in_any_order(model):
    """_explain runs TreeSHAP on the rows of the asked items only: each explanation still belongs
    to its own item, whatever the order asked, and an item no retriever proposed is said so."""
    scores = model.score_rows(np.array([0]))[0]
    top, _ = model.rank_rows(np.array([0]), 6)
    seen = set(model.user_items_[0].indices)
    outsider = next(i for i in np.argsort(scores, kind="stable") if i not in seen)  # ranked last: not proposed
    asked = np.array([*top[0][::-1], outsider, top[0][2]])
    expls = model.explain_idx(0, asked)
    assert len(expls) == len(asked)
    for i, expl in zip(asked[:-2], expls[:-2], strict=True):
        assert sum(w for _, w in expl.contributions) == pytest.approx(float(scores[i]), abs=1e-4)
    assert "not proposed" in expls[-2].text
    assert expls[-1].contributions == expls[len(top[0]) - 1 - 2].contributions


def test_explaining_the_list_just_scored_matches_explaining_afresh(model):
    """The service scores a person, then explains that list: _explain reuses what _score built
    for that person, and must say exactly what it says for a person it did not just score."""
    top, _ = model.rank_rows(np.array([1]), 5)
    reused = model.explain_idx(1, top[0])
    model.rank_rows(np.array([2]), 5)  # another person scored last: nothing to reuse for person 1
    fresh = model.explain_idx(1, top[0])
    assert [e.contributions for e in reused] == [e.contributions for e in fresh]
    # a history: reused only for the very history scored last (the service's fold-in path)
    hidx, vals = np.array([3, 5, 8]), np.array([2.0, 1.0, 1.0], np.float32)  # as a 1 x items row keeps it
    row = sp.csr_matrix((vals, (np.zeros(3, int), hidx)), shape=(1, model.n_items))
    top, _ = model.rank_history_idx(hidx, vals, 5)
    reused = model.explain_idx(-1, top, row)
    other = sp.csr_matrix((np.ones(2, np.float32), ([0, 0], [8, 3])), shape=(1, model.n_items))
    assert [e.contributions for e in model.explain_idx(-1, top, other)] != [e.contributions for e in reused]
    model.rank_rows(np.array([2]), 5)
    fresh = model.explain_idx(-1, top, row)
    assert [e.contributions for e in reused] == [e.contributions for e in fresh]


def test_fold_in_uses_the_retrievers_that_fold_in(model, synth):
    history = [synth.items.ids[i] for i in (0, 3, 5, 8, 13)]
    recs = model.recommend_for_history(history, k=10)
    got = recs.items_of(0)
    assert len(got) == 10 and not set(got) & set(history)
    proposed = set()
    for retriever in model.retrievers_fitted:
        proposed |= set(retriever.recommend_for_history(history, k=model.candidates).items_of(0))
    assert set(got) <= proposed  # every item came from a retriever's own fold-in
    assert recs.scores_of(0) == sorted(recs.scores_of(0), reverse=True)


def test_unknown_user_gets_the_popularity_fallback(model, synth):
    known = synth.users.ids[0]
    recs = model.recommend(["nobody", known], k=5, unknown="popular")
    assert recs.warnings and "nobody" in recs.warnings[0]
    assert recs.items_of(0) == model.popular_items(k=5).items_of(0)
    assert recs.items_of(1) == model.recommend([known], k=5).items_of(0)


@pytest.mark.parametrize(("carves", "carve_by"), [(1, "auto"), (3, "time"), (3, "random")])
def test_no_label_leaks_into_the_retrievers_it_learns_from(synth, spy, carves, carve_by):
    params = {"spy_retriever": {}, "itemknn": {"neighbors": 10}}
    ranker = Ranker(**{**FAST, "retrievers": params, "carves": carves, "carve_by": carve_by}).fit(synth)
    fits = [(i, pairs) for i, (kind, pairs) in enumerate(spy.log) if kind == "fit"]
    assert len(fits) == carves + 1
    splits_ = ranker._carve_labels(synth)  # the events the ranker learned from, per carve
    assert len(splits_) == carves
    for (_, carved), split in zip(fits[:-1], splits_, strict=True):
        label_pairs = set(zip(split.test.user_idx.tolist(), split.test.item_idx.tolist(), strict=True))
        assert label_pairs and not carved & label_pairs
        if carve_by == "time":  # its retrievers saw only events before its labels
            train = split.train
            for u in np.unique(split.test.user_idx)[:10]:
                assert (
                    train.timestamps[train.user_idx == u].max() <= split.test.timestamps[split.test.user_idx == u].min()
                )
    if carves > 1 and carve_by == "time":  # successive windows: each carve's labels precede the last one's
        first, second = splits_[0].test, splits_[1].test
        u = np.intersect1d(first.user_idx, second.user_idx)[0]
        assert second.timestamps[second.user_idx == u].max() <= first.timestamps[first.user_idx == u].min()
    last_at, full = fits[-1]
    assert full == set(zip(synth.user_idx.tolist(), synth.item_idx.tolist(), strict=True))
    # every scoring before the last fit (the ranker's training) used a carved fit
    during = [n for kind, n in spy.log[:last_at] if kind == "score"]
    assert during and set(during) <= set(range(carves))


@pytest.mark.parametrize("carve_by", ["time", "random"])
def test_the_ranker_beats_its_retrievers_on_a_held_out_carve(carve_by):
    """Latent tastes, drift and sequels in the synthetic data give the ranker signal to combine; it is
    scored on the same kind of carve it learned from (each user's latest events, or random ones)."""
    data = generate(n_users=300, n_items=150, n_interactions=12_000, explicit=False, random_state=1)
    if carve_by == "time":
        split = splits.leave_last_out(data, n=5, min_interactions=10)
    else:
        split = splits.holdout(data, fraction=0.2, random_state=3)
    retrievers = {"popular": {}, "itemknn": {"neighbors": 20}}
    ranker = Ranker(retrievers=retrievers, candidates=60, trees=60, leaves=15, min_leaf=10, carve_by=carve_by)
    ours = evaluate_fitted(ranker.fit(split.train), split, k=10, metrics=("ndcg",))["ndcg@10"]
    alone = [
        evaluate_fitted(tb.get_model(n)(**p).fit(split.train), split, k=10, metrics=("ndcg",))["ndcg@10"]
        for n, p in retrievers.items()
    ]
    assert ours > max(alone)


def test_bad_parameters_are_config_errors(synth):
    with pytest.raises(ConfigError, match="no model named 'nope'"):
        Ranker(**{**FAST, "retrievers": ["nope"]}).fit(synth)
    with pytest.raises(ConfigError, match="'ranker' itself"):
        Ranker(retrievers=["ranker"]).fit(synth)
    with pytest.raises(ConfigError, match="parameters of 'itemknn'"):
        Ranker(retrievers={"itemknn": {"neighbours": 3}}).fit(synth)
    with pytest.raises(ConfigError, match="carve"):
        Ranker(carve=1.5).fit(synth)
    with pytest.raises(ConfigError, match="carve_by"):
        Ranker(carve_by="latest").fit(synth)
    with pytest.raises(ConfigError, match="duplicate"):
        Ranker(retrievers=["popular", "popular"]).fit(synth)


def test_too_little_data_to_carve_is_a_data_error():
    tiny = tb.Interactions.from_frame(pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"]}))
    with pytest.raises(DataError, match="too few interactions"):
        Ranker(**FAST).fit(tiny)


def test_feature_groups_are_documented_functions():
    for group in FEATURE_GROUPS:
        assert callable(group) and group.__doc__, group


@pytest.mark.parametrize("dense_share", [0.0, 1.1])  # every block held dense, every block sparse
def test_content_similarity_is_the_cosine_to_the_history_profile(model, synth, monkeypatch, dense_share):
    import scipy.sparse as sp

    from tastebud.models import ranker

    monkeypatch.setattr(ranker, "DENSE_BLOCK", dense_share)
    model.__dict__.pop("_cached_content", None)
    try:
        b = model._batch(model.retrievers_fitted, model._stats(), users=np.arange(0, synth.n_users, 7))
        got = ranker.content_features(model, b)
    finally:
        model.__dict__.pop("_cached_content", None)
    assert got and len(got) == len(model.content_names_)
    V = model.item_content_.toarray().astype(np.float64)
    seen = (b.history.toarray() != 0).astype(np.float64)
    for k, name in enumerate(model.content_names_):
        cols = model.content_block_ == k
        profile = seen @ V[:, cols]
        norm = np.linalg.norm(profile, axis=1)
        want = (profile @ V[:, cols].T) / np.where(norm > 0, norm, 1.0)[:, None]
        np.testing.assert_allclose(got[f"content_{name}"], np.take_along_axis(want, b.items, axis=1), atol=1e-5)
    assert sp.issparse(model.item_content_)


def test_feature_importance_names_every_feature(model):
    gains = model.feature_importance()
    assert list(gains) and set(gains) == set(model.feature_names_)
    assert list(gains.values()) == sorted(gains.values(), reverse=True)


def test_tune_searches_the_ranker(synth):
    pytest.importorskip("optuna")
    from tastebud.tune import tune

    result = tune("ranker", synth, trials=2, params=FAST, random_state=0)
    assert result.value > 0 and {"retrievers", "candidates"} <= set(result.params)


def test_the_service_answers_with_a_saved_ranker(model, synth, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tastebud.serve.app import ServeConfig, create_app

    folder = model.save(tmp_path / "served")
    user = str(synth.users.ids[3])
    with TestClient(create_app(folder, ServeConfig(token="t"))) as client:
        r = client.get(f"/users/{user}/recommendations?k=5")
        assert r.status_code == 200, r.text
        assert [e["item"] for e in r.json()["items"]] == model.recommend([user], k=5).items_of(0)
        history = [str(synth.items.ids[i]) for i in (0, 3, 5)]
        r = client.post("/recommendations", json={"items": history, "k": 5})
        assert r.status_code == 200, r.text
        assert len(r.json()["items"]) == 5


@pytest.fixture(scope="module")
def with_ials(synth):
    """A ranker with a retriever whose scores are inner products (iALS), which an index can serve."""
    retrievers = {"ials": dict(tb.get_model("ials").fast_params), "itemknn": {"neighbors": 10}, "popular": {}}
    return Ranker(**{**FAST, "retrievers": retrievers}).fit(synth)


def test_a_candidate_source_replaces_a_retrievers_exact_lists(with_ials, synth):
    model = with_ials
    users = users_of(synth)
    history = [synth.items.ids[i] for i in (0, 3, 5, 8)]
    def lists(recs):
        return [recs.items_of(i) for i in range(len(recs.users))]

    exact_users, exact_history = lists(model.recommend(users, k=10)), model.recommend_for_history(history, k=10)
    exact_history = exact_history.items_of(0)
    calls = []
    ials = model.retrievers_fitted[model.retriever_names_.index("ials")]

    def by_users(uidx, k, allowed):
        calls.append("users")
        return ials.rank_rows(uidx, k=k, allowed=allowed)

    def by_history(hidx, values, k):
        calls.append("history")
        return ials.rank_history_idx(hidx, values, k=k)

    model.set_candidate_source("ials", by_users, by_history)
    try:
        assert lists(model.recommend(users, k=10)) == exact_users
        assert model.recommend_for_history(history, k=10).items_of(0) == exact_history
        assert calls == ["users", "history"]  # the source was asked, once per request
        # a source that proposes nothing leaves only the other retrievers' candidates
        model.set_candidate_source(
            "ials", lambda u, k, a: (np.full((len(u), k), -1), np.full((len(u), k), np.nan)), None
        )
        assert lists(model.recommend(users, k=10)) != exact_users
    finally:
        model.set_candidate_source("ials", None)
    assert lists(model.recommend(users, k=10)) == exact_users
    with pytest.raises(ConfigError, match="no retriever named 'nope'"):
        model.set_candidate_source("nope", by_users)


def test_the_service_puts_an_index_behind_the_rankers_vector_retrievers(with_ials, synth, tmp_path):
    """``ann_min_items`` reached: iALS finds the ranker's candidates in a vector index, built at
    publish time and saved with the version; exact search gives the exact path's answers."""
    from tastebud.serve.engine import Engine, PolicyConfig
    from tastebud.serve.retrain import publish_version

    model = with_ials
    users = users_of(synth)
    history = [synth.items.ids[i] for i in (0, 3, 5, 8)]
    exact_users = [model.recommend([u], k=10).items_of(0) for u in users]
    exact_history = model.recommend_for_history(history, k=10).items_of(0)
    policy = {"ann_min_items": 1, "index_spec": "exact", "short_history": 0}
    root = tmp_path / "registry"
    publish_version(root, {"ranker": model}, synth, policy=policy)
    version = root / "versions" / "v0001"
    spec = json.loads((version / "serving.json").read_text())
    assert spec["indexes"] == ["ranker/ials"]  # the retriever with vectors, and only it
    assert (version / "index" / "ranker" / "ials").is_dir()
    engine = Engine.load(root)
    served = engine.models["ranker"]
    assert [n for n in served.retriever_names_ if served.candidate_source(n)] == ["ials"]
    by_users, by_history = served.candidate_source("ials")
    asked = []
    served.set_candidate_source(  # spy on the installed source
        "ials",
        lambda u, k, a: (asked.append("users"), by_users(u, k, a))[1],
        lambda h, v, k: (asked.append("history"), by_history(h, v, k))[1],
    )
    assert [engine.recommend_user(u, k=10).items for u in users] == exact_users
    assert engine.recommend_history(history, k=10).items == exact_history
    assert asked == ["users"] * len(users) + ["history"]
    try:  # no index in the version: HNSW built at load time, candidates from the graph
        hnsw = Engine({"ranker": model}, PolicyConfig(ann_min_items=1, short_history=0), "t")
        assert [n for n in model.retriever_names_ if model.candidate_source(n)] == ["ials"]
        got = [hnsw.recommend_user(u, k=10).items for u in users]
        assert np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact_users, strict=True)]) >= 0.9
        # a version below ann_min_items over the same model object: back to the exact lists
        Engine({"ranker": model}, PolicyConfig(), "t")
        assert not any(model.candidate_source(n) for n in model.retriever_names_)
    finally:
        model.set_candidate_source("ials", None)
