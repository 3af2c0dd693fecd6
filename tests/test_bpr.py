"""BPR: learns a planted ranking, reproducible with one thread, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from tastebud.core.errors import ConfigError, DataError, TrainingError
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions
from tastebud.models.bpr import BPR


def planted(n_users=120, n_items=90, rank=3, per_user=15, seed=0):
    """Each user has the ``per_user`` items with the highest true score ``u . v``; a third held out."""
    rng = np.random.default_rng(seed)
    U, V = rng.standard_normal((n_users, rank)), rng.standard_normal((n_items, rank))
    top = np.argsort(-(U @ V.T), axis=1)[:, :per_user]
    held = np.zeros((n_users, n_items), bool)
    train_u, train_i = [], []
    for u in range(n_users):
        items = rng.permutation(top[u])
        held[u, items[: per_user // 3]] = True
        train_u += [u] * (per_user - per_user // 3)
        train_i += list(items[per_user // 3 :])
    data = Interactions(
        IdMap(np.arange(n_users), "user"),
        IdMap(np.arange(n_items), "item"),
        np.array(train_u),
        np.array(train_i),
        explicit=False,
    )
    return data, held


def test_auc(model, data, held) -> float:
    scores = model.score(data.users.ids.tolist())
    train = data.matrix.toarray() > 0
    aucs = []
    for u in range(data.n_users):
        pos, neg = scores[u][held[u]], scores[u][~held[u] & ~train[u]]
        aucs.append((pos[:, None] > neg[None, :]).mean())
    return float(np.mean(aucs))


test_auc.__test__ = False  # a helper, not a test


def test_bpr_learns_a_planted_low_rank_ranking():
    data, held = planted()
    short = BPR(factors=8, epochs=1, learning_rate=0.05, threads=1).fit(data)
    full = BPR(factors=8, epochs=60, learning_rate=0.05, threads=1).fit(data)
    auc_short, auc_full = test_auc(short, data, held), test_auc(full, data, held)
    assert auc_full > 0.85 and auc_full > auc_short + 0.1
    assert full.train_auc_[-1] > full.train_auc_[0] + 0.2  # training AUC rises
    assert np.isfinite(full.item_factors_).all()


def test_single_thread_fit_is_reproducible_and_seeded():
    data, _ = planted(seed=1)
    a = BPR(factors=6, epochs=3, threads=1, random_state=7).fit(data)
    b = BPR(factors=6, epochs=3, threads=1, random_state=7).fit(data)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    c = BPR(factors=6, epochs=3, threads=1, random_state=8).fit(data)
    assert not np.array_equal(a.item_factors_, c.item_factors_)
    # Hogwild with two threads still learns the same ranking quality
    d = BPR(factors=6, epochs=3, threads=2, random_state=7).fit(data)
    assert abs(d.train_auc_[-1] - a.train_auc_[-1]) < 0.03


def test_scores_include_item_bias_and_user_with_every_item_is_skipped():
    n_items = 10
    users = np.array([0] * n_items + [1, 1, 2])
    items = np.concatenate([np.arange(n_items), [0, 1, 5]])
    data = Interactions(IdMap([0, 1, 2], "user"), IdMap(np.arange(n_items), "item"), users, items, explicit=False)
    model = BPR(factors=3, epochs=20, threads=1).fit(data)
    np.testing.assert_allclose(
        model.score([1]), model.user_factors_[[1]] @ model.item_factors_.T + model.item_bias_, rtol=1e-6
    )
    assert np.isfinite(model.user_factors_).all()
    assert model.recommend([0], k=3).items_of(0) == []  # has everything already


def test_bad_input():
    data, _ = planted(30, 20, per_user=6)
    with pytest.raises(ConfigError, match="factors"):
        BPR(factors=0).fit(data)
    with pytest.raises(ConfigError, match="learning_rate"):
        BPR(learning_rate=0.0).fit(data)
    neg = Interactions(data.users, data.items, data.user_idx, data.item_idx, -data.values, explicit=False)
    with pytest.raises(DataError, match=">= 0"):
        BPR(epochs=1).fit(neg)
    with pytest.raises(TrainingError, match="learning_rate"):
        BPR(factors=4, epochs=5, learning_rate=1e30, threads=1).fit(data)
