"""Hybrid blend: fusion answers worked by hand, fit/save/load, history fold-in, validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import tastebud as tb
from tastebud.core.base import Recommender
from tastebud.core.errors import ConfigError
from tastebud.data.idmap import IdMap
from tastebud.models.hybrid import Hybrid


class _Fixed(Recommender):
    supports_history = True

    def __init__(self, row: tuple = ()) -> None:
        self.row = row

    def _score(self, user_idx, item_idx):
        row = np.asarray(self.row, np.float32)
        row = row if item_idx is None else row[item_idx]
        return np.tile(row, (len(user_idx), 1))

    def _score_history(self, item_idx, values):
        return np.asarray(self.row, np.float32)


def fixed(row, name):
    m = _Fixed(tuple(row))
    m.name = name
    m.users_, m.items_ = IdMap(np.array([10, 11])), IdMap(np.array([0, 1, 2, 3]))
    m.user_items_ = sp.csr_matrix((2, 4), dtype=np.float32)
    return m


def test_rrf_known_answer():
    a, b = fixed([3, 2, 1, 0], "a"), fixed([0, 1, 2, 3], "b")
    # equal weights, rrf_k=1: item0 = .5/2 + .5/5 = .35, item1 = .5/3 + .5/4, item2 = same, item3 = .35
    blend = Hybrid.from_fitted([a, b], method="rrf", rrf_k=1)
    recs = blend.recommend([10], k=4)
    assert recs.items_of(0) == [0, 3, 1, 2]
    np.testing.assert_allclose(recs.scores_of(0), [0.35, 0.35, 0.5 / 3 + 0.125, 0.5 / 3 + 0.125], rtol=1e-5)
    # weights 3:1: item0 .75/2+.25/5=.425, item1 .75/3+.25/4=.3125, item3 .75/5+.25/2=.275, item2 .75/4+.25/3=.2708
    blend = Hybrid.from_fitted([a, b], weights=[3, 1], method="rrf", rrf_k=1)
    recs = blend.recommend([10], k=4)
    assert recs.items_of(0) == [0, 1, 3, 2]
    np.testing.assert_allclose(recs.scores_of(0), [0.425, 0.3125, 0.275, 0.1875 + 0.25 / 3], rtol=1e-5)


def test_score_fusion_known_answer():
    a, b = fixed([3, 2, 1, 0], "a"), fixed([0, 1, 2, 3], "b")
    z = (np.array([3, 2, 1, 0]) - 1.5) / np.sqrt(1.25)
    blend = Hybrid.from_fitted([a, b], weights=[3, 1], method="score")
    recs = blend.recommend([10], k=4)
    assert recs.items_of(0) == [0, 1, 2, 3]
    np.testing.assert_allclose(recs.scores_of(0), 0.75 * z - 0.25 * z, rtol=1e-5)
    # scale does not matter for score fusion: a x1000 changes nothing
    a2 = fixed([3000, 2000, 1000, 0], "a")
    again = Hybrid.from_fitted([a2, b], weights=[3, 1], method="score").recommend([10], k=4)
    np.testing.assert_allclose(again.scores_of(0), recs.scores_of(0), rtol=1e-5)
    # history fold-in blends the members' history scores the same way
    hist = blend.recommend_for_history([1], k=3)
    assert hist.items_of(0) == [0, 2, 3]


def small_data():
    rng = np.random.default_rng(0)
    rows = [(u, i, float(rng.integers(1, 6))) for u in range(40) for i in rng.choice(30, 8, replace=False)]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating"])
    return tb.Interactions.from_frame(frame, rating="rating", scale=(1, 5))


def test_fit_save_load_and_explain(tmp_path):
    data = small_data()
    blend = Hybrid(models=["popular", "bias"], weights=[1.0, 2.0], method="score").fit(data)
    assert [m.name for m in blend.members] == ["popular", "bias"]
    recs = blend.recommend([0, 1, 2], k=5, explain=True)
    assert all("popular #" in e.text and "bias #" in e.text for row in recs.explanations for e in row)
    blend.save(tmp_path / "h")
    loaded = tb.load_model(str(tmp_path / "h"))
    assert isinstance(loaded, Hybrid) and loaded.get_params() == blend.get_params()
    again = loaded.recommend([0, 1, 2], k=5)
    for row in range(3):
        assert again.items_of(row) == recs.items_of(row)
        np.testing.assert_allclose(again.scores_of(row), recs.scores_of(row), rtol=1e-6)
    hist = loaded.recommend_for_history([0, 1, 99], k=4)
    assert "99" in hist.warnings[0] and len(hist.items_of(0)) == 4


def test_blend_differs_from_members_and_validates():
    data = small_data()
    with pytest.raises(ConfigError, match="weights"):
        Hybrid(models=["popular", "bias"], weights=[1.0]).fit(data)
    with pytest.raises(ConfigError, match="no model named"):
        Hybrid(models=["popular", "nope"]).fit(data)
    with pytest.raises(ConfigError, match="hybrid"):
        Hybrid(models=["hybrid"]).fit(data)
    with pytest.raises(ConfigError, match="method"):
        Hybrid(models=["popular"], method="max").fit(data)
    with pytest.raises(ConfigError, match="params"):
        Hybrid(models=["popular"], params={"bias": {}}).fit(data)
    other = small_data()
    other.users = IdMap(np.arange(100, 140))
    with pytest.raises(ConfigError, match="other users"):
        a = tb.get_model("popular")().fit(data)
        b = tb.get_model("bias")().fit(small_data())
        b.users_ = other.users
        Hybrid.from_fitted([a, b])
