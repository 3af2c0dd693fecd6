"""The synthetic generator: exact sizes, determinism, and the signal every model family relies on."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tastebud.core.errors import ConfigError
from tastebud.data.synthetic import GENRE_WORDS, GENRES, generate, generate_with_truth, seed_example


@pytest.fixture(scope="module")
def gen():
    return generate_with_truth(n_users=600, n_items=300, n_interactions=30_000, random_state=3)


def test_sizes_ids_and_no_duplicates(gen):
    data, _ = gen
    assert (len(data), data.n_users, data.n_items) == (30_000, 600, 300)
    assert data.users.ids[0] == "u0" and data.items.ids[299] == "i299"
    assert isinstance(data.users.ids[5].item(), str)
    pairs = data.user_idx.astype(np.int64) * data.n_items + data.item_idx
    assert len(np.unique(pairs)) == len(data) == data.matrix.nnz
    assert data.summary.duplicate_pairs == 0
    assert data.summary.rows_read == data.summary.rows_kept == len(data)
    assert data.user_counts().min() >= 5  # min(5, N // U) for every user


def test_dense_small_sets_are_exact():
    # the contract suite's shape: half of all pairs are observed
    d = generate(n_users=80, n_items=60, n_interactions=2400)
    assert len(d) == d.matrix.nnz == 2400
    d = generate(n_users=10, n_items=10, n_interactions=100)  # every pair
    assert d.matrix.nnz == 100 and (d.matrix.toarray() > 0).all()
    d = generate(n_users=50, n_items=40, n_interactions=20)  # fewer events than users
    assert len(d) == 20 and d.n_users == 50


def test_deterministic_under_seed():
    a = generate(n_users=120, n_items=80, n_interactions=3000, random_state=7)
    b = generate(n_users=120, n_items=80, n_interactions=3000, random_state=7)
    c = generate(n_users=120, n_items=80, n_interactions=3000, random_state=8)
    for x, y in (
        (a.user_idx, b.user_idx),
        (a.item_idx, b.item_idx),
        (a.values, b.values),
        (a.timestamps, b.timestamps),
    ):
        np.testing.assert_array_equal(x, y)
    assert a.item_features.equals(b.item_features) and a.user_features.equals(b.user_features)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_values_and_scale(gen):
    data, _ = gen
    assert data.explicit and data.rating_scale == (1.0, 5.0)
    assert set(np.unique(data.values).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    share = np.bincount(data.values.astype(int), minlength=6)[1:] / len(data)
    assert share.min() > 0.005 and 3.2 < data.values.mean() < 4.0  # MovieLens-like: every star used
    imp = generate(n_users=100, n_items=50, n_interactions=1000, explicit=False)
    assert not imp.explicit and (imp.values == 1.0).all() and imp.rating_scale is None


def test_ratings_follow_latent_tastes(gen):
    data, truth = gen
    u, i = data.user_idx, data.item_idx
    taste = truth.user_factors[u] + truth.progress[:, None] * truth.user_drift[u]
    dot = np.einsum("nd,nd->n", taste, truth.item_factors[i])
    assert np.corrcoef(dot, data.values)[0, 1] > 0.3
    # choices too: chosen pairs score higher than random pairs
    rand = truth.user_factors @ truth.item_factors.T
    assert dot.mean() > rand.mean() + 0.3


def test_popularity_and_activity_are_skewed(gen):
    data, _ = gen
    counts = np.sort(data.item_counts())[::-1]
    assert counts[: len(counts) // 10].sum() > 0.2 * len(data)  # top 10% of items: twice their share
    assert counts[0] > 4 * counts[len(counts) // 2]
    active = data.user_counts()
    assert active.max() > 5 * np.median(active)


def test_every_item_and_user_has_features(gen):
    data, _ = gen
    items, users = data.item_features, data.user_features
    assert list(items.columns) == ["title", "year", "genres", "description", "people"]
    assert list(items.index) == list(data.items.ids) and list(users.index) == list(data.users.ids)
    assert items["title"].is_unique
    assert all(len(g) >= 1 and set(g) <= set(GENRES) for g in items["genres"])
    assert all(1 <= len(p) <= 4 for p in items["people"])
    assert items["year"].between(1930, 2024).all()
    assert set(users["gender"]) == {"F", "M"} and users["age"].between(14, 80).all()
    sparse = generate(n_users=20, n_items=400, n_interactions=200)
    assert (sparse.item_counts() == 0).any() and sparse.item_features.notna().all().all()


def test_content_carries_the_genre_signal(gen):
    data, truth = gen
    items = data.item_features
    word_genre = {w: g for g, ws in GENRE_WORDS.items() for w in ws}
    primary = [GENRES[g] for g in truth.item_primary_genre]
    assert all(p == gs[0] for p, gs in zip(primary, items["genres"], strict=False))
    hits = []
    for desc, gs in zip(items["description"], items["genres"], strict=False):
        words = [w.strip(".,:;") for w in desc.split()]
        genres = [word_genre[w] for w in words if w in word_genre]
        hits.append(np.mean([g in gs for g in genres]))
    assert np.mean(hits) > 0.6
    # a user's history concentrates on a few genres (what content models find)
    m = data.matrix.tocsr()
    own, base = [], np.bincount(truth.item_primary_genre, minlength=len(GENRES)) / data.n_items
    for u in range(data.n_users):
        g = np.bincount(truth.item_primary_genre[m.indices[m.indptr[u] : m.indptr[u + 1]]], minlength=len(GENRES))
        own.append(g.max() / g.sum())
    assert np.mean(own) > base.max() + 0.1


def test_demographics_follow_taste(gen):
    data, _ = gen
    years = data.item_features["year"].to_numpy()[data.item_idx]
    mean_year = np.bincount(data.user_idx, weights=years) / np.bincount(data.user_idx)
    age = data.user_features["age"].to_numpy()
    assert np.corrcoef(age, mean_year)[0, 1] < -0.2  # older people watch older films


def test_order_carries_signal(gen):
    data, truth = gen
    o = np.lexsort((data.timestamps, data.user_idx))
    u, i, t = data.user_idx[o], data.item_idx[o], data.timestamps[o]
    same_user = u[1:] == u[:-1]
    assert (t[1:][same_user] > t[:-1][same_user]).all()  # strictly increasing per user
    sequel = truth.sequel[i[:-1]] == i[1:]
    assert sequel[same_user].mean() > 0.05  # chance is 1 / 300: a sequence model can learn "next"
    g = truth.item_primary_genre
    same_genre = (g[i[:-1]] == g[i[1:]])[same_user].mean()
    chance = (np.bincount(g[i]) / len(i)) @ (np.bincount(g[i]) / len(i))
    assert same_genre > chance + 0.2
    # sessions: gaps inside a session are minutes, between sessions much longer
    gaps = (t[1:] - t[:-1])[same_user]
    assert np.median(gaps) < 3600 < np.percentile(gaps, 95)


def test_taste_drifts_over_time(gen):
    data, truth = gen
    u, i = data.user_idx, data.item_idx
    toward = np.einsum("nd,nd->n", truth.user_drift[u], truth.item_factors[i])
    early, late = truth.progress < 0.3, truth.progress > 0.7
    assert toward[late].mean() > toward[early].mean() + 0.05


def test_bad_sizes_raise_config_error():
    with pytest.raises(ConfigError, match="n_interactions"):
        generate(n_users=3, n_items=3, n_interactions=10)
    with pytest.raises(ConfigError, match="n_users"):
        generate(n_users=0)


def test_seed_example():
    d = seed_example()
    assert (len(d), d.n_users, d.n_items) == (14, 5, 5)
    frame = d.to_frame()
    got = {u: sorted(g["value"].astype(int).tolist(), reverse=True) for u, g in frame.groupby("user")}
    assert got == {"Amit": [5, 4, 3], "Beth": [5, 4, 2, 1], "Carl": [5, 5], "Dana": [5, 4, 3], "Eva": [5, 1]}
    assert list(d.items.ids) == ["Inception", "Arrival", "Up", "WALL-E", "John Wick"]
    feats = d.item_features
    assert "Animation" in feats.loc["Up", "genres"] and feats.loc["WALL-E", "year"] == 2008
    assert d.matrix[d.users.index(["Carl"])[0]].nnz == 2
    assert set(d.user_features.columns) == {"age", "gender", "occupation"}


@pytest.mark.slow
def test_one_million_interactions_is_quick():
    t = time.process_time()
    d = generate(n_users=20_000, n_items=5_000, n_interactions=1_000_000, random_state=1)
    assert len(d) == d.matrix.nnz == 1_000_000
    assert time.process_time() - t < 20  # about 3 s of CPU time; 10M take about 32 s
