"""EASE: the closed form against a dense numpy computation, the memory guard, fold-in."""

from __future__ import annotations

import numpy as np
import pytest

from tastebud.core.errors import ConfigError, DataError
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions
from tastebud.models.ease import EASE, ease_bytes


def tiny(n_users=40, n_items=25, seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < 0.3
    u, i = np.nonzero(mask)
    return Interactions(IdMap(np.arange(n_users), "user"), IdMap(np.arange(n_items), "item"), u, i, explicit=False)


def test_weights_equal_the_dense_formula():
    data = tiny()
    lam = 7.0
    X = data.matrix.toarray().astype(np.float64)
    P = np.linalg.inv(X.T @ X + lam * np.eye(data.n_items))
    B = np.eye(data.n_items) - P / np.diag(P)[None, :]  # B = I - P diag(1/diag(P))
    model = EASE(reg=lam).fit(data)
    np.testing.assert_allclose(np.diag(model.weights_), 0.0)
    np.testing.assert_allclose(model.weights_, B, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.score([3]), X[[3]] @ B, rtol=1e-4, atol=1e-5)


def test_dropout_is_the_edlae_closed_form():
    data = tiny(seed=2)
    lam, p = 3.0, 0.25
    X = data.matrix.toarray().astype(np.float64)
    G = X.T @ X
    P = np.linalg.inv(G + np.diag(lam + p / (1 - p) * np.diag(G)))
    B = np.eye(data.n_items) - P / np.diag(P)[None, :]
    np.testing.assert_allclose(EASE(reg=lam, dropout=p).fit(data).weights_, B, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="dropout"):
        EASE(dropout=1.0).fit(data)


def test_fold_in_and_explanations_are_the_score_split():
    data = tiny(seed=1)
    model = EASE(reg=5.0).fit(data)
    row = model.user_items_[4]
    items = row.indices.tolist()
    a = model.recommend([4], k=5, explain=True)
    b = model.recommend_for_history(items, k=5)
    assert a.items_of(0) == b.items_of(0)
    np.testing.assert_allclose(a.scores_of(0), b.scores_of(0), rtol=1e-5)
    if len(items) <= 5:
        for score, expl in zip(a.scores_of(0), a.explanations[0], strict=False):
            assert sum(w for _, w in expl.contributions) == pytest.approx(score, rel=1e-4)
    contrib = model.weights_[row.indices, a.items[0][0]]
    assert a.explanations[0][0].contributions[0][1] == pytest.approx(contrib.max(), rel=1e-5)


def test_memory_budget_is_checked_before_allocating():
    # 300,000 items would need ~1 TB; the default budget (half the free memory) refuses at once
    n_items = 300_000
    data = Interactions(
        IdMap([0, 1], "user"), IdMap(np.arange(n_items), "item"), np.array([0, 1]), np.array([5, 7]), explicit=False
    )
    with pytest.raises(ConfigError, match="ials.*itemknn|max_memory_gb"):
        EASE().fit(data)
    small = tiny()
    assert ease_bytes(small.n_items) == small.n_items**2 * 12
    with pytest.raises(ConfigError, match="max_memory_gb"):
        EASE(max_memory_gb=ease_bytes(small.n_items) / 2 / (1 << 30)).fit(small)
    EASE(max_memory_gb=ease_bytes(small.n_items) * 2 / (1 << 30)).fit(small)


def test_bad_input():
    data = tiny()
    with pytest.raises(ConfigError, match="reg"):
        EASE(reg=0.0).fit(data)
    neg = Interactions(data.users, data.items, data.user_idx, data.item_idx, -data.values, explicit=False)
    with pytest.raises(DataError, match=">= 0"):
        EASE().fit(neg)
    model = EASE(reg=5.0).fit(data)
    with pytest.raises(DataError, match=">= 0"):
        model.recommend_for_history([1, 2], values=[1.0, -1.0])
