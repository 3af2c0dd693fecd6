"""The contract every registered model honours; a new model is picked up automatically.

Each model's ``fast_params`` keep these fits to a fraction of a second.
"""

from __future__ import annotations

import numpy as np
import pytest

import tastebud as tb
from tastebud.core.base import RatingModel, Recommender
from tastebud.core.errors import ConfigError, NotFittedError, UnknownIdError
from tastebud.core.space import Dist, sample_space


def _available() -> list[str]:
    names = []
    for name in tb.list_models():
        try:
            tb.get_model(name)
        except tb.UnknownModelError:
            continue  # optional extra not installed
        names.append(name)
    return names


MODELS = _available()


def make(name: str, **extra):
    cls = tb.get_model(name)
    params = dict(cls.fast_params)
    params.update(extra)
    return cls(**params)


@pytest.fixture(scope="module", params=MODELS)
def fitted(request, synth):
    model = make(request.param)
    assert model.fit(synth) is model
    return model


def users_of(data, n=7):
    return [data.users.ids[i].item() for i in range(0, data.n_users, max(1, data.n_users // n))][:n]


def test_registry_names_resolve():
    assert {"random", "popular", "bias"} <= set(MODELS)
    for name in MODELS:
        assert tb.get_model(name).name == name


def test_params_round_trip():
    for name in MODELS:
        model = make(name)
        clone = model.clone()
        assert clone.get_params() == model.get_params()
        assert not hasattr(clone, "user_items_")


def test_search_space_is_declared_and_valid():
    """Each model says what tune may try (an explicit, possibly empty, ClassVar) over real ``__init__``
    parameters, and any sampled point builds a model that passes its own parameter checks."""
    rng = np.random.default_rng(0)
    for name in MODELS:
        cls = tb.get_model(name)
        declared = [c for c in cls.__mro__ if "search_space" in vars(c) and c not in (Recommender, RatingModel)]
        assert declared, f"{name} declares no search_space (use {{}} with a comment when nothing is worth tuning)"
        space = cls.search_space
        assert set(space) <= set(cls().get_params()), f"{name}: search_space names unknown parameters"
        assert all(isinstance(d, Dist) for d in space.values()), name
        for _ in range(8):
            point = sample_space(space, rng)
            cls(**point)._check_params()
            cls(**{**cls.fast_params, **point})._check_params()


def test_batch_equals_loop(fitted, synth):
    users = users_of(synth)
    batch = fitted.recommend(users, k=5)
    for row, user in enumerate(users):
        one = fitted.recommend([user], k=5)
        assert one.items_of(0) == batch.items_of(row)
        np.testing.assert_allclose(one.scores_of(0), batch.scores_of(row), rtol=1e-5, atol=1e-6)


def test_exclusions_and_candidates(fitted, synth):
    users = users_of(synth)
    recs = fitted.recommend(users, k=10)
    for row, user in enumerate(users):
        seen = set(synth.items.to_ids(synth.matrix[synth.users.index([user])[0]].indices).tolist())
        got = recs.items_of(row)
        assert not seen & set(got)
        assert len(got) == len(set(got))
        scores = recs.scores_of(row)
        assert scores == sorted(scores, reverse=True)
    allowed = [synth.items.ids[i].item() for i in range(0, synth.n_items, 3)]
    restricted = fitted.recommend(users, k=5, items=allowed)
    for row in range(len(users)):
        assert set(restricted.items_of(row)) <= set(allowed)
    with_seen = fitted.recommend(users[:1], k=synth.n_items, exclude_seen=False)
    assert len(with_seen.items_of(0)) == synth.n_items


def test_unknown_ids_and_bad_k(fitted):
    with pytest.raises(UnknownIdError, match="unknown user"):
        fitted.recommend(["no-such-user"], k=3)
    with pytest.raises(ConfigError, match="k must be"):
        fitted.recommend([fitted.users_.ids[0].item()], k=0)


def test_not_fitted():
    for name in MODELS:
        with pytest.raises(NotFittedError):
            make(name).recommend([1], k=3)


def test_save_load_identical(fitted, synth, tmp_path):
    users = users_of(synth)
    fitted.save(tmp_path / "m")
    loaded = tb.load_model(str(tmp_path / "m"))
    assert type(loaded) is type(fitted)
    a, b = fitted.recommend(users, k=8), loaded.recommend(users, k=8)
    for row in range(len(users)):
        assert a.items_of(row) == b.items_of(row)
        np.testing.assert_allclose(a.scores_of(row), b.scores_of(row), rtol=1e-5, atol=1e-6)
    if fitted.predicts_ratings:
        it = [synth.items.ids[0].item()] * len(users)
        np.testing.assert_allclose(fitted.predict(users, it), loaded.predict(users, it), rtol=1e-5)


def test_deterministic_under_seed(fitted, synth):
    users = users_of(synth)
    again = fitted.clone().fit(synth)
    a, b = fitted.recommend(users, k=5), again.recommend(users, k=5)
    for row in range(len(users)):
        assert a.items_of(row) == b.items_of(row)


def test_history_fold_in(fitted, synth):
    if not fitted.supports_history:
        pytest.skip(f"{fitted.name} does not recommend from a history")
    history = [synth.items.ids[i].item() for i in (0, 3, 5, 8, 13)]
    recs = fitted.recommend_for_history(history + ["no-such-item"], k=5)
    assert recs.warnings and "no-such-item" in recs.warnings[0]
    got = recs.items_of(0)
    assert len(got) == 5 and not set(got) & set(history)


def test_predict_in_scale(fitted, synth):
    if not fitted.predicts_ratings:
        with pytest.raises(tb.NotSupportedError):
            fitted.predict([synth.users.ids[0].item()], [synth.items.ids[0].item()])
        return
    users = synth.users.to_ids(synth.user_idx[:50]).tolist()
    items = synth.items.to_ids(synth.item_idx[:50]).tolist()
    pred = fitted.predict(users, items)
    lo, hi = synth.rating_scale
    assert pred.shape == (50,) and np.isfinite(pred).all() and pred.min() >= lo and pred.max() <= hi
    # unknown ids fall back (to biases / the mean), never NaN
    assert np.isfinite(fitted.predict(["no-such-user"], [items[0]])).all()


def test_explanations(fitted, synth):
    recs = fitted.recommend(users_of(synth, 2), k=3, explain=True)
    assert recs.explanations is not None
    for row in recs.explanations:
        assert len(row) == 3 and all(e.text for e in row)


def _listed(model, idx_row, val_row):
    keep = idx_row >= 0
    return model.items_.to_ids(idx_row[keep]).tolist(), val_row[keep].tolist()


def test_index_api_equals_external_ids(fitted, synth):
    """The index-level API (what serve, eval, lab, index and the scale layer call) gives exactly
    what the external-id methods give: the same scores, lists, explanations and ratings."""
    users = users_of(synth)
    uidx = fitted.users_.index(users)
    items = [synth.items.ids[i].item() for i in range(0, synth.n_items, 4)]
    iidx = fitted.items_.index(items)
    np.testing.assert_array_equal(fitted.score_rows(uidx), fitted.score(users))
    np.testing.assert_array_equal(fitted.score_rows(uidx, iidx), fitted.score(users, items))
    for exclude_seen, allowed in ((True, None), (False, None), (True, iidx[::-1])):
        idx, val = fitted.rank_rows(uidx, 6, exclude_seen=exclude_seen, allowed=allowed)
        cand = None if allowed is None else fitted.items_.to_ids(allowed).tolist()
        recs = fitted.recommend(users, k=6, exclude_seen=exclude_seen, items=cand)
        for row in range(len(users)):
            assert _listed(fitted, idx[row], val[row]) == (recs.items_of(row), recs.scores_of(row))
    texts = [[e.text for e in fitted.explain_idx(int(u), idx[row])] for row, u in enumerate(uidx)]
    explained = fitted.recommend(users, k=6, items=cand, explain=True).explanations
    assert texts == [[e.text for e in row] for row in explained]
    if fitted.supports_history:
        history = fitted.items_.index(items[:4])
        i, v = fitted.rank_history_idx(history, k=5, allowed=iidx)
        recs = fitted.recommend_for_history(items[:4], k=5, candidates=items)
        assert _listed(fitted, i, v) == (recs.items_of(0), recs.scores_of(0))
        scores = fitted.score_history_idx(history)
        np.testing.assert_array_equal(v[i >= 0], scores[i[i >= 0]])
    similar = None
    if fitted.supports_similar:
        try:
            similar = fitted.similar_items(items[:3], k=5)
        except tb.NotSupportedError:  # a blend whose members have no similarity
            pass
    if similar is not None:
        i, v = fitted.similar_rows(iidx[:3], k=5)
        for row in range(3):
            assert _listed(fitted, i[row], v[row]) == (similar.items_of(row), similar.scores_of(row))
    if fitted.predicts_ratings:
        pair_items = fitted.items_.index([items[r % len(items)] for r in range(len(users))])
        np.testing.assert_array_equal(
            fitted.predict_idx(uidx, pair_items), fitted.predict(users, fitted.items_.to_ids(pair_items).tolist())
        )
    with pytest.raises(tb.DataError, match="user_idx holds indices outside"):
        fitted.rank_rows([fitted.n_users], 3)
