"""Implicit ALS: known answers against dense numpy least squares, fold-in, partial fit, bad input."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tastebud.core.errors import ConfigError, DataError, TrainingError
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions
from tastebud.kernels import ials as K
from tastebud.models.ials import ImplicitALS

NO_EXTRA = np.empty(0, np.float32)


def tiny(n_users=12, n_items=15, density=0.35, seed=0, counts=True, extra_users=0, extra_items=0) -> Interactions:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # nobody empty
    u, i = np.nonzero(mask)
    values = rng.integers(1, 6, len(u)).astype(np.float32) if counts else None
    users = IdMap(np.arange(100, 100 + n_users + extra_users), "user")
    items = IdMap([f"i{j}" for j in range(n_items + extra_items)], "item")
    return Interactions(users, items, u, i, values, explicit=False)


def dense_solution(R: np.ndarray, Y: np.ndarray, reg: float, alpha: float) -> np.ndarray:
    """Hu et al. eq. (4) with the full dense C^u: x_u = (Y^T C^u Y + reg I)^-1 Y^T C^u p(u)."""
    k = Y.shape[1]
    X = np.zeros((R.shape[0], k))
    for u in range(R.shape[0]):
        c = 1.0 + alpha * R[u]
        p = (R[u] > 0).astype(float)
        A = Y.T @ (c[:, None] * Y) + reg * np.eye(k)
        X[u] = np.linalg.solve(A, Y.T @ (c * p))
    return X


@pytest.mark.parametrize("n", [0, 1, 7, 64, 65])
def test_gramian_summed_over_blocks_is_the_float64_product(n):
    Y = np.random.default_rng(n).standard_normal((n, 5)).astype(np.float32)
    want = Y.astype(np.float64).T @ Y.astype(np.float64) + 0.25 * np.eye(5)
    np.testing.assert_allclose(K.gramian(Y, 0.25, block=8), want, rtol=1e-12, atol=1e-12)
    assert K.gramian(Y, 0.25).dtype == np.float64


def test_cg_and_cholesky_kernels_reach_the_dense_least_squares_solution():
    data = tiny()
    R = data.matrix.toarray().astype(np.float64)
    rng = np.random.default_rng(1)
    k, reg, alpha = 4, 0.5, 2.0
    Y = rng.standard_normal((data.n_items, k)).astype(np.float32)
    want = dense_solution(R, Y.astype(np.float64), reg, alpha)
    conf = data.matrix.copy()
    conf.data = (alpha * conf.data).astype(np.float32)
    A0 = K.gramian(Y, reg)
    X = np.zeros((data.n_users, k), np.float32)
    for _ in range(5):  # warm-started CG sweeps (k steps each) converge to the exact answer
        K.cg_rows(conf.indptr, conf.indices, conf.data, X, Y, A0.astype(np.float32), k, NO_EXTRA)
    np.testing.assert_allclose(X, want, rtol=1e-3, atol=1e-4)
    X2 = np.zeros((data.n_users, k), np.float32)
    K.exact_rows(conf.indptr, conf.indices, conf.data, np.arange(data.n_users), X2, Y, A0, NO_EXTRA)
    np.testing.assert_allclose(X2, want, rtol=1e-4, atol=1e-5)
    # three CG steps from the previous vector already get close (Takacs et al.'s point)
    X3 = (want * 0.9).astype(np.float32)
    K.cg_rows(conf.indptr, conf.indices, conf.data, X3, Y, A0.astype(np.float32), 3, NO_EXTRA)
    assert np.abs(X3 - want).max() < 0.25 * np.abs(want * 0.1).max()


def row_by_row_cg(R: sp.csr_matrix, X: np.ndarray, Y: np.ndarray, A0: np.ndarray, steps: int, extra) -> np.ndarray:
    """Takacs et al.'s warm-started CG, one row at a time in float64: what the blocked kernel must equal."""
    X = X.astype(np.float64).copy()
    Y = Y.astype(np.float64)
    for u in range(R.shape[0]):
        items, c1 = R.indices[R.indptr[u] : R.indptr[u + 1]], R.data[R.indptr[u] : R.indptr[u + 1]].astype(np.float64)
        if len(items) == 0:
            X[u] = 0.0
            continue
        Yu = Y[items]
        A = A0 + Yu.T @ (c1[:, None] * Yu) + (extra[u] if len(extra) else 0.0) * np.eye(len(A0))
        x = X[u]
        r = Yu.T @ (c1 + 1.0) - A @ x
        p, rs = r.copy(), r @ r
        for _ in range(steps if rs >= 1e-20 else 0):
            ap = A @ p
            if p @ ap <= 0:
                break
            step = rs / (p @ ap)
            x, r = x + step * p, r - step * ap
            if r @ r < 1e-20:
                break
            p, rs = r + (r @ r) / rs * p, r @ r
        X[u] = x
    return X


def skewed(n_rows=150, n_cols=90, seed=0) -> sp.csr_matrix:
    """Rows from empty to dense: a few heavy rows among many light ones, as real items are."""
    rng = np.random.default_rng(seed)
    nnz = np.minimum(n_cols, (rng.pareto(1.2, n_rows) * 2).astype(int))
    nnz[:3] = [0, n_cols, n_cols // 2]
    rows = [rng.choice(n_cols, size=c, replace=False) for c in nnz]
    indptr = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int32)
    indices = np.concatenate([np.sort(r) for r in rows]).astype(np.int32)
    data = rng.integers(1, 6, len(indices)).astype(np.float32) * 2.0
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))


@pytest.mark.parametrize("k", [3, 40, 150])
@pytest.mark.parametrize("reg_exponent", [False, True])
def test_blocked_cg_kernel_equals_row_by_row_cg_and_converges_to_the_exact_solve(k, reg_exponent):
    """Rows run in lockstep blocks (the dense products as one matrix product, blocks of 1 to 32 rows
    for these k) with empty, light and dense rows: the same CG iterates as one row at a time, and
    many sweeps reach the brute-force least-squares solution."""
    R = skewed()
    rng = np.random.default_rng(k)
    Y = (rng.standard_normal((R.shape[1], k)) * 0.3).astype(np.float32)
    X0 = (rng.standard_normal((R.shape[0], k)) * 0.1).astype(np.float32)
    A0 = K.gramian(Y, 0.5)
    extra = rng.random(R.shape[0]).astype(np.float32) if reg_exponent else NO_EXTRA
    bounds, order = K.cg_plan(R.indptr, k)
    assert bounds[0] == 0 and bounds[-1] == R.shape[0] and (np.diff(bounds) > 0).all()
    assert np.diff(bounds).max() <= K.block_width(k) and sorted(order) == list(range(len(order)))
    X = X0.copy()
    assert K.cg_rows(R.indptr, R.indices, R.data, X, Y, A0.astype(np.float32), 3, extra) == 0
    want = row_by_row_cg(R, X0, Y, A0, 3, extra)
    np.testing.assert_allclose(X, want, rtol=2e-3, atol=2e-4 * np.abs(want).max())
    assert not X[0].any()  # the empty row
    for _ in range(30):
        K.cg_rows(R.indptr, R.indices, R.data, X, Y, A0.astype(np.float32), k, extra)
    dense = R.toarray().astype(np.float64)
    for u in range(1, R.shape[0]):
        c = 1.0 + dense[u]
        lam = extra[u] if len(extra) else 0.0
        A = Y.T.astype(np.float64) @ (c[:, None] * Y) + (0.5 + lam) * np.eye(k)
        exact = np.linalg.solve(A, Y.T.astype(np.float64) @ (c * (dense[u] > 0)))
        np.testing.assert_allclose(X[u], exact, rtol=1e-2, atol=1e-3 * max(1.0, np.abs(exact).max()))


def test_cg_kernel_counts_non_finite_rows():
    R = skewed(40, 30, seed=2)
    Y = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    Y[R.indices[R.indptr[5]]] = np.nan  # poisons row 5 and every row sharing that column
    X = np.zeros((40, 4), np.float32)
    bad = K.cg_rows(R.indptr, R.indices, R.data, X, Y, K.gramian(Y, 0.1).astype(np.float32), 3, NO_EXTRA)
    assert bad == int((~np.isfinite(X)).any(axis=1).sum()) > 0


def test_factors_do_not_depend_on_threads_on_skewed_data():
    """Blocks are handed out to whichever thread is free, largest first; the plan depends on the
    data alone, so 1, 2 and every thread give bit-identical factors."""
    R = skewed(300, 120, seed=4)
    coo = R.tocoo()
    data = Interactions(IdMap(np.arange(300), "user"), IdMap(np.arange(120), "item"), coo.row, coo.col, coo.data,
                        explicit=False)  # fmt: skip
    fits = [ImplicitALS(factors=40, epochs=3, threads=t).fit(data) for t in (1, 2, 0)]
    for other in fits[1:]:
        np.testing.assert_array_equal(fits[0].user_factors_, other.user_factors_)
        np.testing.assert_array_equal(fits[0].item_factors_, other.item_factors_)


def test_fitted_users_solve_their_least_squares_problem_and_fold_in_reproduces_them():
    data = tiny()
    model = ImplicitALS(factors=5, reg=0.3, alpha=3.0, epochs=6, cg_steps=0, reg_exponent=0.0).fit(data)
    R = data.matrix.toarray().astype(np.float64)
    want = dense_solution(R, model.item_factors_.astype(np.float64), 0.3, 3.0)
    np.testing.assert_allclose(model.user_factors_, want, rtol=1e-3, atol=1e-4)
    for u in (0, 5, 11):
        row = model.user_items_[u]
        np.testing.assert_allclose(model.fold_in(row), model.user_factors_[u], rtol=1e-4, atol=1e-5)
        uid = data.users.ids[u].item()
        items = data.items.to_ids(row.indices).tolist()
        a = model.recommend([uid], k=5)
        b = model.recommend_for_history(items, values=row.data.tolist(), k=5)
        assert a.items_of(0) == b.items_of(0)
        np.testing.assert_allclose(a.scores_of(0), b.scores_of(0), rtol=1e-4, atol=1e-5)


def test_cg_fit_matches_exact_fit_in_ranking_quality():
    data = tiny(40, 30, seed=3)
    cg = ImplicitALS(factors=6, reg=0.5, alpha=4.0, epochs=15).fit(data)
    ex = ImplicitALS(factors=6, reg=0.5, alpha=4.0, epochs=15, cg_steps=0).fit(data)
    R = data.matrix.toarray() > 0

    def train_auc(m):
        s = m.user_factors_ @ m.item_factors_.T
        return np.mean([(s[u][R[u]][:, None] > s[u][~R[u]][None, :]).mean() for u in range(R.shape[0])])

    assert abs(train_auc(cg) - train_auc(ex)) < 0.02 and train_auc(cg) > 0.8


def test_log_confidence():
    m = ImplicitALS(alpha=2.0, confidence="log", eps=0.5)
    np.testing.assert_allclose(
        m._cm1(np.array([0.0, 1.0, 3.0])), 2.0 * np.log1p(np.array([0, 1.0, 3.0]) / 0.5), rtol=1e-6
    )
    data = tiny()
    fitted = ImplicitALS(factors=4, epochs=3, reg=0.1, alpha=4.0, reg_exponent=0.0, confidence="log", cg_steps=0).fit(data)
    R = data.matrix.toarray().astype(np.float64)
    Y = fitted.item_factors_.astype(np.float64)
    c = 1 + 4.0 * np.log1p(R[0])
    want = np.linalg.solve(Y.T @ (c[:, None] * Y) + 0.1 * np.eye(4), Y.T @ (c * (R[0] > 0)))
    np.testing.assert_allclose(fitted.user_factors_[0], want, rtol=1e-3, atol=1e-4)


def test_explanations_split_the_score_by_history_item():
    data = tiny(10, 12, density=0.25, seed=4)
    model = ImplicitALS(factors=4, reg=0.2, alpha=2.0, epochs=5, cg_steps=0).fit(data)
    counts = np.diff(model.user_items_.indptr)
    u = int(np.argmin(np.where(counts > 1, counts, 99)))  # a user with 2..5 items: all listed
    assert 1 < counts[u] <= 5
    recs = model.recommend([data.users.ids[u].item()], k=3, explain=True)
    for _item, score, expl in zip(recs.items_of(0), recs.scores_of(0), recs.explanations[0], strict=False):
        assert len(expl.contributions) == counts[u]
        assert sum(w for _, w in expl.contributions) == pytest.approx(score, rel=1e-3, abs=1e-4)
        assert {i for i, _ in expl.contributions} == set(data.items.to_ids(model.user_items_[u].indices))


def test_similar_items_is_cosine_of_item_factors():
    data = tiny()
    model = ImplicitALS(factors=4, epochs=3).fit(data)
    Y = model.item_factors_.astype(np.float64)
    unit = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    sims = unit @ unit[2]
    sims[2] = -np.inf
    got = model.similar_items("i2", k=4)
    assert got.items_of(0) == data.items.to_ids(np.argsort(-sims, kind="stable")[:4]).tolist()


def test_results_do_not_depend_on_thread_count():
    data = tiny(50, 40, seed=5)
    a = ImplicitALS(factors=6, epochs=4, threads=1).fit(data)
    b = ImplicitALS(factors=6, epochs=4, threads=2).fit(data)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    c = ImplicitALS(factors=6, epochs=4, random_state=1).fit(data)
    assert not np.array_equal(a.user_factors_, c.user_factors_)


def test_partial_fit_adds_users_and_items_without_refitting():
    data = tiny(15, 12, seed=6)
    model = ImplicitALS(factors=4, reg=0.3, epochs=5, cg_steps=0).fit(data)
    items_before, users_before = model.item_factors_.copy(), model.user_factors_.copy()
    # a new user with known items, and a new item liked by that user and an old user
    new = Interactions.from_frame(
        pd.DataFrame({"user": [900, 900, 900, 100], "item": ["i0", "i3", "i_new", "i_new"]}), "user", "item"
    )
    model.partial_fit_users(new.subset(np.array([0, 1])))
    assert len(model.users_) == 16 and model.users_.index([900])[0] == 15
    np.testing.assert_array_equal(model.item_factors_, items_before)  # users only
    np.testing.assert_array_equal(model.user_factors_[:15], users_before)  # old users untouched
    np.testing.assert_allclose(model.user_factors_[15], model.fold_in(model.user_items_[15]), rtol=1e-5, atol=1e-6)
    model.partial_fit(new)
    assert len(model.items_) == 13 and model.items_.index(["i_new"])[0] == 12
    assert model.users_.ids[:15].tolist() == data.users.ids.tolist()  # indices never move
    assert np.abs(model.item_factors_[12]).sum() > 0
    untouched = [u for u in range(1, 15)]
    np.testing.assert_array_equal(model.user_factors_[untouched], users_before[untouched])
    # after the last round the touched users are exact given the item factors
    for u in (0, 15):
        np.testing.assert_allclose(model.user_factors_[u], model.fold_in(model.user_items_[u]), rtol=1e-4, atol=1e-5)
    recs = model.recommend([900], k=3)
    assert len(recs.items_of(0)) == 3 and not {"i0", "i3", "i_new"} & set(recs.items_of(0))
    assert model.user_items_.shape == (16, 13) and model.user_items_.nnz == data.matrix.nnz + 4 - int(
        data.matrix[0, 0] > 0
    )


def test_bad_input():
    data = tiny()
    with pytest.raises(ConfigError, match="factors"):
        ImplicitALS(factors=0).fit(data)
    with pytest.raises(ConfigError, match="alpha"):
        ImplicitALS(alpha=-1.0).fit(data)
    neg = Interactions(data.users, data.items, data.user_idx, data.item_idx, -data.values, explicit=False)
    with pytest.raises(DataError, match=">= 0"):
        ImplicitALS(factors=3, epochs=2).fit(neg)
    nan_values = data.values.copy()
    nan_values[3] = np.nan
    with pytest.raises(DataError, match="finite"):
        ImplicitALS(factors=3, epochs=2).fit(
            Interactions(data.users, data.items, data.user_idx, data.item_idx, nan_values, explicit=False)
        )
    model = ImplicitALS(factors=3, epochs=2).fit(data)
    with pytest.raises(DataError, match=">= 0"):
        model.recommend_for_history(["i1", "i2"], values=[1.0, -2.0])
    with pytest.raises(TrainingError, match="alpha"):
        ImplicitALS(factors=3, epochs=2, alpha=1e38).fit(data)


def test_users_and_items_without_interactions_get_zero_vectors():
    data = tiny(extra_users=2, extra_items=3)
    model = ImplicitALS(factors=4, epochs=3).fit(data)
    assert np.isfinite(model.user_factors_).all() and np.isfinite(model.item_factors_).all()
    assert not model.user_factors_[-2:].any() and not model.item_factors_[-3:].any()
    recs = model.recommend([data.users.ids[-1].item()], k=3)
    assert np.isfinite(recs.scores_of(0)).all()
    assert model.recommend_for_history([], k=3).items_of(0)  # empty history: a zero user, still a list


def test_frequency_scaled_regularisation_matches_the_dense_solution():
    data = tiny(seed=8)
    model = ImplicitALS(factors=4, reg=0.5, alpha=2.0, epochs=4, cg_steps=0, reg_exponent=1.0).fit(data)
    R = data.matrix.toarray().astype(np.float64)
    Y = model.item_factors_.astype(np.float64)
    for u in (0, 7):
        c = 1.0 + 2.0 * R[u]
        lam = 0.5 * c.sum() / data.n_items  # reg * (sum_i c_ui / n_items) ** 1
        want = np.linalg.solve(Y.T @ (c[:, None] * Y) + lam * np.eye(4), Y.T @ (c * (R[u] > 0)))
        np.testing.assert_allclose(model.user_factors_[u], want, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(model.fold_in(model.user_items_[u]), model.user_factors_[u], rtol=1e-4, atol=1e-5)
    cg = ImplicitALS(factors=4, reg=0.5, alpha=2.0, epochs=8, cg_steps=4, reg_exponent=1.0).fit(data)
    assert np.isfinite(cg.user_factors_).all()


def test_history_vector_is_the_fold_in_and_follows_changed_item_factors():
    """The index path queries with ``history_vector``; its cached Gramian must not outlive the
    item factors it was computed from (partial_fit re-solves item rows in place)."""
    data = tiny(15, 12, seed=3)
    model = ImplicitALS(factors=4, reg=0.3, alpha=2.0, epochs=4, cg_steps=0, reg_exponent=0.0).fit(data)
    items, values = np.array([0, 3, 5]), np.array([1.0, 2.0, 1.0], np.float32)
    row = sp.csr_matrix((values, (np.zeros(len(items), int), items)), shape=(1, model.n_items))
    np.testing.assert_allclose(model.history_vector(items, values), model.fold_in(row), rtol=1e-6)
    np.testing.assert_allclose(model._score_history(items, values), model.item_factors_ @ model.fold_in(row), rtol=1e-5)
    before = model.item_factors_.copy()
    old = Interactions.from_frame(
        pd.DataFrame({"user": [data.users.ids[0]] * 2, "item": data.items.ids[[1, 2]]}), "user", "item"
    )
    model.partial_fit_items(old)  # same shape: item rows re-solved in place
    assert not np.array_equal(before, model.item_factors_)
    R = np.zeros((1, model.n_items))
    R[0, items] = values
    want = dense_solution(R, model.item_factors_.astype(np.float64), 0.3, 2.0)[0]
    np.testing.assert_allclose(model.history_vector(items, values), want, rtol=1e-4, atol=1e-5)


def test_starting_the_thread_pool_leaves_the_environment_as_it_was(monkeypatch):
    """The sleeping-wait policy is set only while numba loads its OpenMP runtime (see _start_threads)."""
    from tastebud.models import _common

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(_common, "_THREADS_STARTED", False)
    with _common.numba_threads(1) as n:
        assert n == 1
    assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a policy the user chose is kept
    monkeypatch.setattr(_common, "_THREADS_STARTED", False)
    with _common.numba_threads(0):
        pass
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
