"""Explicit matrix factorisation: known answers on tiny matrices, gradient and sampler checks,
fold-in, determinism and bad input. The ML-100K accuracy checks are marked slow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import tastebud as tb
from tastebud.core.errors import ConfigError, DataError, TrainingError
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions
from tastebud.kernels import mf as K
from tastebud.models.mf import SVD, BayesianMF, ExplicitALS, SVDpp

MODELS = ["svd", "svdpp", "als", "bayesmf"]


def frame_data(matrix: np.ndarray, scale: tuple[float, float]) -> Interactions:
    """Every non-NaN cell of ``matrix`` as a rating."""
    u, i = np.nonzero(~np.isnan(matrix))
    df = pd.DataFrame({"user": [f"u{x}" for x in u], "item": [f"i{x}" for x in i], "rating": matrix[u, i]})
    return Interactions.from_frame(df, "user", "item", "rating", scale=scale)


def _id(x):
    return x.item() if isinstance(x, np.generic) else x


def small(name: str, **extra):
    cls = tb.get_model(name)
    params = dict(cls.fast_params)
    params.update(extra)
    return cls(**params)


# ---------------------------------------------------------------- known answers
def test_als_recovers_rank_one_plus_biases():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=7), rng.normal(size=9)
    bu, bi = rng.normal(scale=0.5, size=7), rng.normal(scale=0.5, size=9)
    truth = 5.0 + bu[:, None] + bi[None, :] + np.outer(a, b)
    data = frame_data(truth, (0.0, 10.0))
    model = ExplicitALS(factors=1, epochs=200, reg=1e-9, reg_user_bias=1e-9, reg_item_bias=1e-9, weighted_reg=False, threads=1).fit(data)
    users = [f"u{x}" for x in range(7) for _ in range(9)]
    items = [f"i{y}" for _ in range(7) for y in range(9)]
    np.testing.assert_allclose(model.predict(users, items), truth.ravel(), atol=1e-3)


def test_sgd_step_is_minus_learning_rate_times_gradient():
    """One SGD update equals -lr * the finite-difference gradient of the per-rating loss."""
    rng = np.random.default_rng(2)
    k, lr, mu = 4, 0.01, 3.0
    regs = (0.03, 0.05, 0.07, 0.11)
    p0, q0 = rng.normal(size=(2, k)).astype(np.float32), rng.normal(size=(3, k)).astype(np.float32)
    bu0, bi0 = rng.normal(size=2), rng.normal(size=3)
    users, items, ratings = np.array([1], np.int32), np.array([2], np.int32), np.array([4.5])

    def loss(theta: np.ndarray) -> float:
        b_u, b_i, pu, qi = theta[0], theta[1], theta[2 : 2 + k], theta[2 + k :]
        e = ratings[0] - (mu + b_u + b_i + pu @ qi)
        return 0.5 * e * e + 0.5 * (regs[0] * b_u**2 + regs[1] * b_i**2 + regs[2] * pu @ pu + regs[3] * qi @ qi)

    theta = np.concatenate([[bu0[1], bi0[2]], p0[1], q0[2]]).astype(np.float64)
    eps = 1e-6
    grad = np.array([(loss(theta + eps * e) - loss(theta - eps * e)) / (2 * eps) for e in np.eye(len(theta))])
    p, q, bu, bi = p0.copy(), q0.copy(), bu0.copy(), bi0.copy()
    K.sgd_epoch(users, items, ratings, 1, mu, bu, bi, p, q, lr, *regs)
    after = np.concatenate([[bu[1], bi[2]], p[1], q[2]])
    np.testing.assert_allclose(after, theta - lr * grad, rtol=1e-5, atol=1e-6)
    # rows not involved are untouched
    np.testing.assert_array_equal(p[0], p0[0])
    np.testing.assert_array_equal(q[:2], q0[:2])


def test_svdpp_step_is_minus_learning_rate_times_gradient():
    """A user with one rating: every SVD++ update (b, p, q, y) is -lr * the loss gradient."""
    rng = np.random.default_rng(3)
    k, lr, mu = 3, 0.02, 3.2
    regs = (0.03, 0.05, 0.07, 0.11, 0.13)
    p0, q0, y0 = (
        rng.normal(size=(1, k)).astype(np.float32),
        rng.normal(size=(2, k)).astype(np.float32),
        rng.normal(size=(2, k)).astype(np.float32),
    )
    indptr, indices, data = np.array([0, 1], np.int64), np.array([1], np.int32), np.array([2.0])

    def loss(theta: np.ndarray) -> float:
        b_u, b_i, pu, qi, yj = theta[0], theta[1], theta[2 : 2 + k], theta[2 + k : 2 + 2 * k], theta[2 + 2 * k :]
        e = data[0] - (mu + b_u + b_i + qi @ (pu + yj))  # |N(u)| = 1
        return 0.5 * e * e + 0.5 * (
            regs[0] * b_u**2 + regs[1] * b_i**2 + regs[2] * pu @ pu + regs[3] * qi @ qi + regs[4] * yj @ yj
        )

    theta = np.concatenate([[0.1, -0.2], p0[0], q0[1], y0[1]]).astype(np.float64)
    eps = 1e-6
    grad = np.array([(loss(theta + eps * e) - loss(theta - eps * e)) / (2 * eps) for e in np.eye(len(theta))])
    p, q, y = p0.copy(), q0.copy(), y0.copy()
    bu, bi = np.array([0.1]), np.array([0.0, -0.2])
    K.svdpp_epoch(
        indptr, indices, data, np.array([0], np.int64), np.array([0], np.int64), 1, mu, bu, bi, p, q, y, lr, *regs
    )
    after = np.concatenate([[bu[0], bi[1]], p[0], q[1], y[1]])
    np.testing.assert_allclose(after, theta - lr * grad, rtol=1e-5, atol=1e-6)


def _one_row_system(rng: np.random.Generator, n: int, d: int):
    other = np.hstack([rng.normal(size=(n, 1)), rng.normal(size=(n, d - 1))])
    data = rng.normal(size=n) + 3.0
    offset = 3.0 + other[:, 0]
    return other, data, offset


def test_gibbs_conditional_mean_and_covariance():
    rng = np.random.default_rng(4)
    n, d = 12, 3
    other, data, offset = _one_row_system(rng, n, d)
    x = np.hstack([np.ones((n, 1)), other[:, 1:]])
    y = data - offset
    alpha = 1.7
    prior_mu = np.array([0.2, -0.1, 0.3])
    prior_lam = np.array([[2.0, 0.3, 0.0], [0.3, 1.5, 0.1], [0.0, 0.1, 1.0]])
    lam_star = prior_lam + alpha * x.T @ x
    mean = np.linalg.solve(lam_star, alpha * x.T @ y + prior_lam @ prior_mu)
    # the same row repeated: draws with the caller's standard normals
    rows = 20000
    indptr = np.arange(rows + 1, dtype=np.int64) * n
    indices = np.tile(np.arange(n, dtype=np.int32), rows)
    out = np.zeros((rows, d))
    K.gibbs_side(
        indptr,
        indices,
        np.tile(data, rows),
        offset,
        other,
        out,
        alpha,
        prior_mu,
        prior_lam,
        np.zeros((rows, d)),
        np.empty(0),
    )
    np.testing.assert_allclose(out[0], mean, rtol=1e-10, atol=1e-12)
    K.gibbs_side(
        indptr,
        indices,
        np.tile(data, rows),
        offset,
        other,
        out,
        alpha,
        prior_mu,
        prior_lam,
        rng.standard_normal((rows, d)),
        np.empty(0),
    )
    np.testing.assert_allclose(out.mean(axis=0), mean, atol=0.02)
    np.testing.assert_allclose(np.cov(out.T), np.linalg.inv(lam_star), atol=0.01)


def test_gibbs_with_huge_precision_is_the_least_squares_solution():
    rng = np.random.default_rng(5)
    n, d = 15, 4
    other, data, offset = _one_row_system(rng, n, d)
    x = np.hstack([np.ones((n, 1)), other[:, 1:]])
    ls = np.linalg.lstsq(x, data - offset, rcond=None)[0]
    out = np.zeros((1, d))
    K.gibbs_side(
        np.array([0, n], np.int64),
        np.arange(n, dtype=np.int32),
        data,
        offset,
        other,
        out,
        1e10,
        np.zeros(d),
        np.eye(d),
        rng.standard_normal((1, d)),
        np.empty(0),
    )
    np.testing.assert_allclose(out[0], ls, atol=1e-4)


def test_gibbs_implicit_is_a_sequential_scan_of_exact_conditionals():
    """Bayesian SVD++: with zero noise every y_j becomes its conditional mean given the rest,
    computed here from scratch from the residuals (brute force), item after item."""
    rng = np.random.default_rng(8)
    n_users, n_items, k, mu, alpha = 4, 5, 2, 3.0, 1.3
    dense = np.where(rng.random((n_users, n_items)) < 0.6, rng.integers(1, 6, (n_users, n_items)).astype(float), np.nan)
    dense[:, 0] = 4.0  # every user rated item 0
    mask = ~np.isnan(dense)
    bu, bi = rng.normal(size=n_users), rng.normal(size=n_items)
    p, q, y = rng.normal(size=(n_users, k)), rng.normal(size=(n_items, k)), rng.normal(size=(n_items, k))
    c = 1.0 / np.sqrt(mask.sum(axis=1))
    prior_mu, prior_lam = np.array([0.1, -0.2]), np.array([[1.5, 0.2], [0.2, 0.8]])

    def z_of(yy):
        return (mask @ yy) * c[:, None]

    # kernel inputs: residuals with everything, g_u and S_u
    z = z_of(y)
    resid = np.where(mask, dense - (mu + bu[:, None] + bi[None, :] + (p + z) @ q.T), 0.0)
    g = resid @ q
    gram = np.einsum("ui,ia,ib->uab", mask.astype(float), q, q)
    csc = sp.csc_matrix(mask.astype(float))
    y_kernel = y.copy()
    K.gibbs_implicit(
        csc.indptr.astype(np.int64),
        csc.indices.astype(np.int32),
        c,
        q,
        y_kernel,
        g,
        gram,
        alpha,
        prior_mu,
        prior_lam,
        np.zeros((n_items, k)),
    )
    # brute force
    yb = y.copy()
    for j in range(n_items):
        users = np.nonzero(mask[:, j])[0]
        if len(users) == 0:
            continue
        others = yb.copy()
        others[j] = 0.0
        z_minus = z_of(others)
        prec, lin = prior_lam.copy(), prior_lam @ prior_mu
        for u in users:
            for i in np.nonzero(mask[u])[0]:
                xrow = c[u] * q[i]
                target = dense[u, i] - (mu + bu[u] + bi[i] + q[i] @ (p[u] + z_minus[u]))
                prec += alpha * np.outer(xrow, xrow)
                lin += alpha * xrow * target
        yb[j] = np.linalg.solve(prec, lin)
    np.testing.assert_allclose(y_kernel, yb, rtol=1e-8, atol=1e-10)


def test_ridge_side_matches_numpy():
    rng = np.random.default_rng(6)
    n, d = 10, 4
    other, data, offset = _one_row_system(rng, n, d)
    x = np.hstack([np.ones((n, 1)), other[:, 1:]])
    for weighted in (True, False):
        out = np.zeros((2, d))
        indptr = np.array([0, n, n], np.int64)  # second row empty -> zeros
        K.ridge_side(indptr, np.arange(n, dtype=np.int32), data, offset, other, out, 0.3, 0.7, weighted)
        scale = n if weighted else 1
        lam = np.diag([0.3 * scale] + [0.7 * scale] * (d - 1))
        np.testing.assert_allclose(out[0], np.linalg.solve(x.T @ x + lam, x.T @ (data - offset)), rtol=1e-9)
        np.testing.assert_array_equal(out[1], 0.0)


# ---------------------------------------------------------------- fold-in, explanations, similarity
def test_als_fold_in_equals_the_fitted_user(synth):
    model = ExplicitALS(factors=6, epochs=6, threads=1).fit(synth)
    for u in (0, 5, 17):
        row = synth.matrix[u]
        folded = model._score_history(row.indices, row.data)
        np.testing.assert_allclose(folded, model._score(np.array([u]), None)[0], rtol=1e-4, atol=1e-4)


def test_svd_fold_in_minimises_the_sgd_objective(synth):
    """Fold-in solves the user's part of the SGD objective exactly: its gradient is zero there."""
    model = SVD(factors=5, epochs=15, threads=1).fit(synth)
    row = synth.matrix[3]
    bias, p = model._fold_in(row.indices, row.data.astype(np.float64))
    q = model.item_factors_[row.indices].astype(np.float64)
    e = row.data - (model.global_mean_ + bias + model.item_bias_[row.indices] + q @ p)
    n = len(row.indices)
    reg_bu, _, reg_pu, _ = model._regs()
    np.testing.assert_allclose(-e.sum() + n * reg_bu * bias, 0.0, atol=1e-4)
    np.testing.assert_allclose(-q.T @ e + n * reg_pu * p, 0.0, atol=1e-4)


def test_explanations_add_up_to_the_score(synth):
    model = ExplicitALS(factors=5, epochs=5, threads=1).fit(synth)
    u = 7
    row = synth.matrix[u]
    items = np.array([1, 4, 9])
    contrib = model._contributions(row.indices, row.data.astype(np.float64), items)
    user_part = model._score(np.array([u]), items)[0] - model.global_mean_ - model.item_bias_[items]
    np.testing.assert_allclose(contrib.sum(axis=1), user_part, rtol=1e-4, atol=1e-4)
    recs = model.recommend([_id(synth.users.ids[u])], k=3, explain=True)
    top = recs.explanations[0][0]
    assert top.text.startswith("because you rated") and len(top.contributions) == 3


def test_similar_items_is_cosine_of_item_factors(synth):
    model = SVD(factors=6, epochs=5, threads=1).fit(synth)
    q = model.item_factors_.astype(np.float64)
    i = 2
    cos = q @ q[i] / (np.linalg.norm(q, axis=1) * np.linalg.norm(q[i]) + 1e-30)
    cos[i] = -np.inf
    want = np.argsort(-cos, kind="stable")[:5]
    got = model.similar_items([_id(synth.items.ids[i])], k=5).items_of(0)
    assert got == synth.items.to_ids(want).tolist()


@pytest.mark.parametrize("name", MODELS)
def test_unknown_ids_fall_back_to_biases(name, synth):
    model = small(name).fit(synth)
    item = _id(synth.items.ids[4])
    user = _id(synth.users.ids[2])
    want_item = model.global_mean_ + model.item_bias_[4]
    want_user = model.global_mean_ + model.user_bias_[2]
    got = model.predict(["nobody", user], [item, "nothing"])
    np.testing.assert_allclose(got, np.clip([want_item, want_user], *synth.rating_scale), rtol=1e-5)


def test_bayesmf_fold_in_close_to_the_fitted_user(synth):
    model = BayesianMF(factors=4, epochs=40, burn_in=10, threads=1).fit(synth)
    u = 11
    row = synth.matrix[u]
    folded = model._score_history(row.indices, row.data)
    fitted = model._score(np.array([u]), None)[0]
    assert np.corrcoef(folded, fitted)[0, 1] > 0.9


@pytest.mark.parametrize("implicit", ["users", "both"])
def test_bayesmf_implicit_fold_in_and_round_trip(implicit, synth, tmp_path):
    model = BayesianMF(factors=4, epochs=30, burn_in=10, implicit=implicit, threads=1).fit(synth)
    assert model.implicit_factors_.shape == (synth.n_items, 4 * model.samples_)
    u = 9
    row = synth.matrix[u]
    folded = model._score_history(row.indices, row.data)
    assert np.corrcoef(folded, model._score(np.array([u]), None)[0])[0, 1] > 0.9
    model.save(tmp_path / "b")
    loaded = tb.load_model(str(tmp_path / "b"))
    np.testing.assert_allclose(loaded._score_history(row.indices, row.data), folded, rtol=1e-5)
    recs = loaded.recommend([_id(synth.users.ids[u])], k=2, explain=True)
    assert all(e.text.startswith("because you rated") for e in recs.explanations[0])


def test_history_without_values_reads_as_liked(synth):
    model = SVD(factors=5, epochs=10, threads=1).fit(synth)
    items = [_id(synth.items.ids[i]) for i in (0, 1, 2)]
    a = model.recommend_for_history(items, k=5)
    b = model.recommend_for_history(items, values=[5.0] * 3, k=5)
    assert a.items_of(0) == b.items_of(0)
    with pytest.raises(DataError, match="rating scale"):
        model.recommend_for_history(items, values=[9.0, 4.0, 3.0], k=5)


# ---------------------------------------------------------------- determinism
def test_single_thread_sgd_is_deterministic(synth):
    for cls in (SVD, SVDpp):
        a = cls(factors=6, epochs=5, threads=1, random_state=3).fit(synth)
        b = cls(factors=6, epochs=5, threads=1, random_state=3).fit(synth)
        np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
        np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
        c = cls(factors=6, epochs=5, threads=1, random_state=4).fit(synth)
        assert not np.array_equal(a.item_factors_, c.item_factors_)


def test_hogwild_sgd_learns_like_the_sequential_loop(synth):
    """threads > 1 runs lock-free chunks: not bit-identical, but the same fit quality."""
    for cls in (SVD, SVDpp):
        one = cls(factors=6, epochs=15, threads=1).fit(synth)
        two = cls(factors=6, epochs=15, threads=2).fit(synth)
        assert np.isfinite(two.user_factors_).all()
        assert abs(two.train_rmse_[-1] - one.train_rmse_[-1]) < 0.05


def test_als_and_gibbs_identical_on_any_thread_count(synth):
    a = BayesianMF(factors=3, epochs=8, burn_in=3, threads=1).fit(synth)
    b = BayesianMF(factors=3, epochs=8, burn_in=3, threads=2).fit(synth)
    np.testing.assert_allclose(a.user_factors_, b.user_factors_, rtol=1e-5, atol=1e-6)
    c = ExplicitALS(factors=4, epochs=3, threads=1).fit(synth)
    d = ExplicitALS(factors=4, epochs=3, threads=2).fit(synth)
    np.testing.assert_allclose(c.item_factors_, d.item_factors_, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", MODELS)
def test_factors_must_be_positive(name, synth):
    with pytest.raises(ConfigError, match="factors"):
        small(name, factors=0).fit(synth)


def test_bad_hyper_parameters(synth):
    with pytest.raises(ConfigError, match="learning_rate"):
        SVD(learning_rate=0.0).fit(synth)
    with pytest.raises(ConfigError, match="reg_item_factors"):
        SVD(reg_item_factors=-1.0).fit(synth)
    with pytest.raises(ConfigError, match="burn_in"):
        BayesianMF(epochs=5, burn_in=5).fit(synth)


def test_divergence_names_the_learning_rate(synth):
    with pytest.raises(TrainingError, match="learning_rate"):
        SVD(factors=10, epochs=30, learning_rate=3.0, reg=0.0, reg_user_bias=0.0, reg_item_bias=0.0, init_std=1.0, threads=1).fit(
            synth
        )
    with pytest.raises(TrainingError, match="learning_rate"):
        SVDpp(factors=10, epochs=30, learning_rate=3.0, reg=0.0, reg_user_bias=0.0, reg_item_bias=0.0, init_std=1.0, threads=1).fit(
            synth
        )


def _raw(values: np.ndarray, scale=(1.0, 5.0), explicit=True) -> Interactions:
    n = len(values)
    return Interactions(
        IdMap(np.arange(3), "user"),
        IdMap(np.arange(4), "item"),
        np.arange(n) % 3,
        np.arange(n) % 4,
        values,
        explicit=explicit,
        rating_scale=scale,
    )


@pytest.mark.parametrize("name", MODELS)
def test_bad_ratings(name):
    with pytest.raises(DataError, match="NaN"):
        small(name).fit(_raw(np.array([1.0, np.nan, 3.0, 4.0, 5.0])))
    with pytest.raises(DataError, match="rating_scale"):
        small(name).fit(_raw(np.array([1.0, 7.0, 3.0, 4.0, 5.0])))
    with pytest.raises(DataError, match="explicit"):
        small(name).fit(_raw(np.ones(5), scale=None, explicit=False))


# ---------------------------------------------------------------- real data (slow)
@pytest.mark.slow
def test_ml100k_u1_rmse(data_root):
    from tastebud.data.movielens import ml100k_folds
    from tastebud.eval.metrics import rmse

    split = ml100k_folds(data_root / "ml-100k", folds=(1,))[0]
    # defaults; Surprise on u1 measures 0.951 (SVD) and 0.935 (SVD++)
    for model, bound in (
        (SVD(), 0.93),
        (SVDpp(), 0.925),
        (BayesianMF(epochs=60, burn_in=15, implicit="none", threads=1), 0.92),
    ):
        model.fit(split.train)
        pred = model.predict_idx(split.test.user_idx.astype(np.int64), split.test.item_idx.astype(np.int64))
        assert np.isfinite(pred).all()
        assert rmse(pred, split.test.values) <= bound, type(model).__name__
