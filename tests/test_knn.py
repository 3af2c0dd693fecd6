"""ItemKNN / UserKNN: similarities against brute-force formulas, predictions worked by hand,
pruning, fold-in, explanations, persistence and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import tastebud as tb
from tastebud.core.errors import ConfigError, NotSupportedError
from tastebud.kernels import knn as K
from tastebud.models.knn import ItemKNN, UserKNN

# 5 users x 5 items; 0 = not rated
R = np.array(
    [
        [5, 3, 0, 1, 4],
        [4, 0, 0, 1, 5],
        [1, 1, 0, 5, 2],
        [1, 0, 5, 4, 0],
        [0, 1, 5, 4, 3],
    ],
    dtype=float,
)


def ratings(m: np.ndarray = R, explicit: bool = True) -> tb.Interactions:
    u, i = np.nonzero(m)
    df = pd.DataFrame({"user": [f"u{x}" for x in u], "item": [f"i{x}" for x in i], "rating": m[u, i]})
    return tb.Interactions.from_frame(df, rating="rating" if explicit else None, scale=(1.0, 5.0) if explicit else None)


def dense_sim(model) -> np.ndarray:
    return model.sim_.toarray()


# ---------------------------------------------------------------- brute-force similarity references
def ref_pairs(M: np.ndarray, a: int, b: int):
    common = (M[a] != 0) & (M[b] != 0)
    return M[a, common], M[b, common]


def ref_cosine(M, a, b):
    return M[a] @ M[b] / np.sqrt((M[a] ** 2).sum() * (M[b] ** 2).sum())


def ref_pearson(M, a, b):
    x, y = ref_pairs(M, a, b)
    if len(x) < 2:
        return 0.0
    xc, yc = x - x.mean(), y - y.mean()
    den = np.sqrt((xc**2).sum() * (yc**2).sum())
    return float(xc @ yc / den) if den > 0 else 0.0


def ref_msd(M, a, b):
    x, y = ref_pairs(M, a, b)
    return 1.0 / (((x - y) ** 2).mean() + 1.0) if len(x) else 0.0


@pytest.mark.parametrize(
    "name,ref",
    [("cosine", ref_cosine), ("pearson", ref_pearson), ("msd", ref_msd)],
)
@pytest.mark.parametrize("cls", [ItemKNN, UserKNN])
def test_similarity_matches_brute_force(cls, name, ref):
    data = ratings()
    model = cls(neighbors=4, similarity=name).fit(data)
    # the entity x feature matrix in the model's own index order
    X = data.matrix.toarray().astype(float)
    M = X.T if cls is ItemKNN else X
    S = dense_sim(model)
    n = M.shape[0]
    for a in range(n):
        for b in range(n):
            want = 0.0 if a == b else ref(M, a, b)
            want = want if want > 0 else 0.0  # only positive similarities are kept
            assert S[a, b] == pytest.approx(want, abs=1e-6), (a, b)


def test_adjusted_cosine_and_shrinkage_by_hand():
    data = ratings()
    X = data.matrix.toarray().astype(float)
    rated = X != 0
    user_mean = X.sum(1) / rated.sum(1)
    C = np.where(rated, X - user_mean[:, None], 0.0)  # centred on the user's mean
    model = ItemKNN(neighbors=4, similarity="adjusted_cosine", shrinkage=2.0).fit(data)
    S = dense_sim(model)
    for a in range(5):
        for b in range(5):
            if a == b:
                continue
            common = rated[:, a] & rated[:, b]
            x, y = C[common, a], C[common, b]
            den = np.sqrt((x**2).sum() * (y**2).sum())
            sim = (x @ y / den if den > 0 else 0.0) * common.sum() / (common.sum() + 2.0)
            assert S[a, b] == pytest.approx(max(sim, 0.0), abs=1e-6)


def test_pearson_baseline_uses_bias_model():
    data = ratings()
    model = ItemKNN(
        neighbors=4, similarity="pearson_baseline", shrinkage=1.0, reg_user_bias=2.0, reg_item_bias=3.0, epochs=5
    ).fit(data)
    bias = tb.get_model("bias")(reg_user_bias=2.0, reg_item_bias=3.0, epochs=5).fit(data)
    np.testing.assert_allclose(model.item_bias_, bias.item_bias_, rtol=1e-6)
    X = data.matrix.toarray().astype(float)
    rated = X != 0
    base = bias.global_mean_ + bias.user_bias_[:, None] + bias.item_bias_[None, :]
    Res = np.where(rated, X - base, 0.0)
    S = dense_sim(model)
    for a in range(5):
        for b in range(5):
            if a == b:
                continue
            common = rated[:, a] & rated[:, b]
            x, y = Res[common, a], Res[common, b]
            n = common.sum()
            den = np.sqrt((x**2).sum() * (y**2).sum())
            sim = (x @ y / den if den > 0 else 0.0) * (n - 1) / (n - 1 + 1.0) if n > 1 else 0.0
            assert S[a, b] == pytest.approx(max(sim, 0.0), abs=1e-5)


def test_min_support_drops_thin_pairs():
    data = ratings()
    X = data.matrix.toarray() != 0
    co = X.T.astype(int) @ X.astype(int)
    model = ItemKNN(neighbors=4, similarity="cosine", min_support=3).fit(data)
    S = dense_sim(model)
    assert (S[co < 3] == 0).all()
    assert (S[(co >= 3) & ~np.eye(5, dtype=bool)] > 0).all()


def test_implicit_weightings_match_implicit_formulas():
    rng = np.random.default_rng(3)
    X = (rng.random((30, 12)) < 0.3).astype(float)
    X[0, :] = 1.0
    data = ratings(X, explicit=False)
    Xd = data.matrix.toarray().astype(float)
    items = Xd.T  # item x user
    n_items = items.shape[0]
    idf = np.log(n_items) - np.log1p((items != 0).sum(0))
    # TF-IDF (implicit's TFIDFRecommender): sqrt(tf) * idf, rows normalised, dot product
    W = np.sqrt(items) * idf[None, :]
    W = W / np.linalg.norm(W, axis=1, keepdims=True)
    T = W @ W.T
    # BM25 (implicit's BM25Recommender, bm25_k1=1.2, bm25_b=0.75): no normalisation
    length = items.sum(1)
    norm = 0.25 + 0.75 * length / length.mean()
    Wb = items * 2.2 / (1.2 * norm[:, None] + items) * idf[None, :]
    Bm = Wb @ Wb.T
    # asymmetric cosine (Aiolli 2013), alpha = 0.8: c_ij / (|U_i|^0.8 |U_j|^0.2)
    c = items @ items.T
    cnt = items.sum(1)
    A = c / (cnt[:, None] ** 0.8 * cnt[None, :] ** 0.2)
    for name, ref, extra in (("tfidf", T, {}), ("bm25", Bm, {}), ("asymmetric_cosine", A, {"asymmetry": 0.8})):
        S = ItemKNN(neighbors=n_items - 1, similarity=name, **extra).fit(data).sim_.toarray()
        want = np.where(np.eye(n_items, dtype=bool), 0.0, np.maximum(ref, 0.0))
        np.testing.assert_allclose(S, want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_topk_pruning_keeps_the_best_per_row():
    rng = np.random.default_rng(0)
    X = (rng.random((60, 40)) < 0.2).astype(float)
    data = ratings(X, explicit=False)
    full = ItemKNN(neighbors=39, similarity="cosine").fit(data).sim_.toarray()
    pruned = ItemKNN(neighbors=5, similarity="cosine").fit(data).sim_.toarray()
    for i in range(full.shape[0]):
        row = full[i]
        kept = np.nonzero(pruned[i])[0]
        assert len(kept) == min(5, (row > 0).sum())
        # every kept value is at least every dropped one
        dropped = np.setdiff1d(np.nonzero(row)[0], kept)
        if len(dropped):
            assert pruned[i, kept].min() >= row[dropped].max() - 1e-7
        np.testing.assert_allclose(pruned[i, kept], row[kept], rtol=1e-6)


def test_kernel_independent_of_chunks_and_general_path():
    rng = np.random.default_rng(1)
    E = sp.random(50, 80, density=0.15, random_state=2, format="csr", dtype=np.float64)
    E.data = rng.random(E.nnz) + 0.1
    F = E.T.tocsr()
    sq = np.asarray(E.multiply(E).sum(1)).ravel()
    ref = None
    for chunks in (1, 3, 16):
        out = K.topk_similarity(
            E.indptr, E.indices, E.data, F.indptr, F.indices, F.data, sq, K.DOT, 7, 0.0, 0.0, 1, 0.5, chunks
        )
        fast = K.topk_similarity(
            E.indptr, E.indices, E.data, F.indptr, F.indices, F.data, sq, K.DOT, 7, 0.0, 0.0, 1, 0.5, chunks, True
        )
        for a, b in zip(out, fast, strict=False):
            np.testing.assert_allclose(a, b, rtol=1e-6)
        if ref is None:
            ref = out
        for a, b in zip(out, ref, strict=False):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- predictions by hand
def _manual_item_prediction(data, model, u, i, variant):
    X = data.matrix.toarray().astype(float)
    rated = X != 0
    S = model.sim_.toarray()
    cand = [j for j in np.nonzero(rated[u])[0] if S[i, j] > 0]
    cand = sorted(cand, key=lambda j: -S[i, j])[: model.neighbors]
    item_mean = X.sum(0) / np.maximum(rated.sum(0), 1)
    item_std = np.sqrt(((np.where(rated, X - item_mean, 0.0)) ** 2).sum(0) / np.maximum(rated.sum(0), 1))
    item_std[item_std == 0] = 1.0
    w = np.array([S[i, j] for j in cand])
    if variant == "plain":
        return float(w @ X[u, cand] / w.sum()) if len(cand) else float(X[rated].mean())
    if variant == "mean":
        return item_mean[i] + (float(w @ (X[u, cand] - item_mean[cand]) / w.sum()) if len(cand) else 0.0)
    if variant == "zscore":
        return item_mean[i] + item_std[i] * (
            float(w @ ((X[u, cand] - item_mean[cand]) / item_std[cand]) / w.sum()) if len(cand) else 0.0
        )
    b = model.bias_mean_ + model.user_bias_[u] + model.item_bias_
    return b[i] + (float(w @ (X[u, cand] - b[cand]) / w.sum()) if len(cand) else 0.0)


@pytest.mark.parametrize("variant", ["plain", "mean", "zscore", "baseline"])
def test_item_predictions_by_hand(variant):
    data = ratings()
    model = ItemKNN(neighbors=2, similarity="cosine", prediction=variant).fit(data)
    X = data.matrix.toarray()
    for u in range(5):
        for i in range(5):
            if X[u, i]:
                continue
            want = np.clip(_manual_item_prediction(data, model, u, i, variant), 1, 5)
            got = model.predict([data.users.ids[u]], [data.items.ids[i]])[0]
            assert got == pytest.approx(want, abs=1e-5), (u, i)


def test_user_mean_prediction_by_hand():
    data = ratings()
    model = UserKNN(neighbors=2, similarity="msd", prediction="mean").fit(data)
    X = data.matrix.toarray().astype(float)
    rated = X != 0
    S = model.sim_.toarray()
    mean = X.sum(1) / rated.sum(1)
    u, i = 0, int(data.items.index(["i2"])[0])  # u0 has not rated i2; users 3 and 4 have
    nb = sorted([v for v in np.nonzero(rated[:, i])[0] if S[u, v] > 0], key=lambda v: -S[u, v])[:2]
    w = S[u, nb]
    want = mean[u] + w @ (X[nb, i] - mean[nb]) / w.sum()
    assert model.predict(["u0"], ["i2"])[0] == pytest.approx(np.clip(want, 1, 5), abs=1e-5)


def test_unknown_ids_fall_back_never_nan():
    data = ratings()
    for cls in (ItemKNN, UserKNN):
        for pred in ("plain", "mean", "zscore", "baseline"):
            m = cls(neighbors=2, prediction=pred).fit(data)
            out = m.predict(["nobody", "u0", "nobody"], ["i0", "no-item", "no-item"])
            assert np.isfinite(out).all()


def test_implicit_model_ranks_but_does_not_predict():
    data = ratings(explicit=False)
    m = ItemKNN(neighbors=3).fit(data)
    assert not m.predicts_ratings
    with pytest.raises(NotSupportedError, match="implicit"):
        m.predict(["u0"], ["i2"])


# ---------------------------------------------------------------- ranking, fold-in, explanations
def test_item_ranking_is_similarity_sum():
    data = ratings(explicit=False)
    m = ItemKNN(neighbors=2, similarity="cosine").fit(data)
    X = data.matrix.toarray()
    S = m.sim_.toarray()
    np.testing.assert_allclose(m.score(data.users.ids.tolist()), X @ S, rtol=1e-5, atol=1e-6)


def test_user_ranking_is_neighbour_sum():
    data = ratings(explicit=False)
    m = UserKNN(neighbors=2, similarity="cosine").fit(data)
    X = data.matrix.toarray()
    S = m.sim_.toarray()
    np.testing.assert_allclose(m.score(data.users.ids.tolist()), S @ X, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [ItemKNN, UserKNN])
@pytest.mark.parametrize("sim", ["cosine", "bm25", "tfidf", "asymmetric_cosine"])
def test_history_equals_known_user(cls, sim):
    """A person folded in from their history scores like the same person seen in training."""
    rng = np.random.default_rng(5)
    X = (rng.random((40, 25)) < 0.25).astype(float)
    data = ratings(X, explicit=False)
    m = cls(neighbors=6, similarity=sim).fit(data)
    for u in (0, 7, 19):
        items = data.items.to_ids(data.matrix[u].indices).tolist()
        row = m.score([data.users.ids[u]])[0]
        hist = m._score_history(data.items.index(items), np.ones(len(items), np.float32))
        if cls is UserKNN:
            # the fold-in similarities of a known person equal their training row (self aside)
            full = cls(neighbors=data.n_users - 1, similarity=sim).fit(data)
            cols, sims = full._query_neighbours(data.items.index(items), np.ones(len(items)))
            got = np.zeros(data.n_users)
            got[cols] = sims
            got[u] = 0.0
            np.testing.assert_allclose(got, full.sim_[u].toarray()[0], rtol=1e-5, atol=1e-6)
            continue
        np.testing.assert_allclose(hist, row, rtol=1e-5, atol=1e-6)


def test_recommend_for_history_and_explanations():
    data = ratings(explicit=False)
    m = ItemKNN(neighbors=3).fit(data)
    recs = m.recommend_for_history(["i0", "i4"], k=2, explain=True)
    got = recs.items_of(0)
    assert got and not {"i0", "i4"} & set(got)
    ex = recs.explanations[0][0]
    assert ex.contributions and {c for c, _ in ex.contributions} <= {"i0", "i4"}
    # weights add up to the score
    assert sum(w for _, w in ex.contributions) == pytest.approx(recs.scores_of(0)[0], rel=1e-5)
    um = UserKNN(neighbors=2).fit(data)
    recs = um.recommend(["u3"], k=1, explain=True)
    ex = recs.explanations[0][0]
    assert recs.scores_of(0)[0] > 0
    assert ex.contributions and all(str(c).startswith("u") for c, _ in ex.contributions)
    assert sum(w for _, w in ex.contributions) == pytest.approx(recs.scores_of(0)[0], rel=1e-5)
    assert um.recommend_for_history(["i2", "i3"], k=2).items_of(0)


def test_similar_items():
    data = ratings(explicit=False)
    m = ItemKNN(neighbors=4).fit(data)
    got = m.similar_items(["i2"], k=2).items_of(0)
    S = m.sim_.toarray()[data.items.index(["i2"])[0]]
    assert got[0] == data.items.ids[int(np.argmax(S))]
    assert UserKNN(neighbors=2).fit(data).similar_items(["i2"], k=2).items_of(0)


def test_normalize_rows_sum_to_one():
    data = ratings(explicit=False)
    m = ItemKNN(neighbors=2, normalize=True).fit(data)
    sums = np.asarray(m._ranker.sum(axis=1)).ravel()
    assert np.allclose(sums[sums > 0], 1.0)


def test_save_load_round_trip(tmp_path):
    data = ratings()
    for cls in (ItemKNN, UserKNN):
        m = cls(neighbors=2, similarity="pearson_baseline", prediction="baseline").fit(data)
        m.save(tmp_path / cls.__name__)
        back = tb.load_model(str(tmp_path / cls.__name__))
        assert back.predicts_ratings
        np.testing.assert_allclose(back.predict(["u0", "u3"], ["i2", "i1"]), m.predict(["u0", "u3"], ["i2", "i1"]))
        assert back.recommend_for_history(["i0", "i1"], k=2).items_of(0) == m.recommend_for_history(
            ["i0", "i1"], k=2
        ).items_of(0)


# ---------------------------------------------------------------- bad input
def test_bad_parameters_give_clear_errors():
    data = ratings()
    with pytest.raises(ConfigError, match="similarity must be one of"):
        ItemKNN(similarity="jaccardish").fit(data)
    with pytest.raises(ConfigError, match="neighbors must be > 0"):
        ItemKNN(neighbors=0).fit(data)
    with pytest.raises(ConfigError, match="neighbors must be > 0"):
        UserKNN(neighbors=-3).fit(data)
    with pytest.raises(ConfigError, match="prediction must be one of"):
        UserKNN(prediction="median").fit(data)
    with pytest.raises(ConfigError, match="asymmetry"):
        ItemKNN(asymmetry=1.5).fit(data)
    with pytest.raises(ConfigError, match="needs explicit ratings"):
        ItemKNN(similarity="pearson").fit(ratings(explicit=False))
    with pytest.raises(ConfigError, match="k must be"):
        ItemKNN().fit(data).recommend(["u0"], k=0)


@pytest.mark.slow
def test_ml100k_fold1_matches_surprise_knnbaseline(data_root):
    """Same settings as Surprise's KNNBaseline (pearson_baseline, k=40, item-based): same RMSE
    on u1 (Surprise measured 0.93594)."""
    from tastebud.data.movielens import ml100k_folds
    from tastebud.eval import metrics as M

    split = ml100k_folds(data_root, folds=(1,))[0]
    m = ItemKNN(neighbors=40, similarity="pearson_baseline", prediction="baseline").fit(split.train)
    pred = m.predict_idx(split.test.user_idx.astype(np.int64), split.test.item_idx.astype(np.int64))
    assert M.rmse(pred, split.test.values) == pytest.approx(0.93594, abs=2e-4)
