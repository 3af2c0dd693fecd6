"""Compiled inner loops of the explicit matrix-factorisation models (``tastebud.models.mf``).

* ``sgd_epoch``: one epoch of biased-MF SGD (Funk / Koren et al. 2009), in array order. With
  ``n_chunks > 1`` the ratings are cut into chunks updated in parallel without locks (Hogwild,
  Recht et al. 2011); with one chunk it is a plain sequential, deterministic loop.
* ``svdpp_epoch``: one epoch of SVD++ (Koren 2008) processed user by user, so the implicit sum
  ``|N(u)|^-1/2 sum_j y_j`` is computed once per user instead of once per rating.
* ``ridge_side``: one half-step of explicit ALS with biases: every row's ``[b, p]`` solved
  exactly by ridge regression given the other side (rows in parallel).
* ``gibbs_side``: one half-sweep of the Bayesian MF Gibbs sampler (Salakhutdinov & Mnih 2008):
  every row's ``[b, p]`` drawn from its Gaussian conditional given the other side. The standard
  normal draws are made by the caller from its seeded generator, so the result does not depend on
  the number of threads.
* ``gibbs_implicit`` / ``user_gram``: the Bayesian SVD++ step, every implicit factor ``y_j`` drawn
  in turn from its exact conditional, with per-user Gram matrices and residual sums kept up to
  date after each draw (O(nnz k^2) per sweep).

Rows are CSR: ``indptr``, ``indices`` (the other side's index), ``data`` (the rating).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, fastmath=True)
def _sgd_range(users, items, ratings, start, stop, mu, bu, bi, P, Q, lr, reg_bu, reg_bi, reg_pu, reg_qi):  # type: ignore[no-untyped-def]
    """SGD over ratings ``start:stop`` in array order; factors are float32 (twice the SIMD width)."""
    k = P.shape[1]
    a = np.float32(1.0 - lr * reg_pu)
    b = np.float32(1.0 - lr * reg_qi)
    acc = 0.0
    for t in range(start, stop):
        u = users[t]
        i = items[t]
        pu = P[u]
        qi = Q[i]
        dot = np.float32(0.0)
        for f in range(k):
            dot += pu[f] * qi[f]
        e = ratings[t] - (mu + bu[u] + bi[i] + dot)
        acc += e * e
        bu[u] += lr * (e - reg_bu * bu[u])
        bi[i] += lr * (e - reg_bi * bi[i])
        le = np.float32(lr * e)
        # p_u <- p_u + lr (e q_i - reg_pu p_u);  q_i <- q_i + lr (e p_u_old - reg_qi q_i)
        for f in range(k):
            x = pu[f]
            y = qi[f]
            pu[f] = a * x + le * y
            qi[f] = b * y + le * x
    return acc


@njit(cache=True, parallel=True)
def _sgd_hogwild(users, items, ratings, n_chunks, mu, bu, bi, P, Q, lr, reg_bu, reg_bi, reg_pu, reg_qi):  # type: ignore[no-untyped-def]
    n = users.shape[0]
    sse = np.zeros(n_chunks)
    size = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        sse[c] = _sgd_range(
            users,
            items,
            ratings,
            c * size,
            min(n, (c + 1) * size),
            mu,
            bu,
            bi,
            P,
            Q,
            lr,
            reg_bu,
            reg_bi,
            reg_pu,
            reg_qi,
        )
    return sse.sum()


def sgd_epoch(users, items, ratings, n_chunks, mu, bu, bi, P, Q, lr, reg_bu, reg_bi, reg_pu, reg_qi):  # type: ignore[no-untyped-def]
    """One SGD epoch over the ratings in array order (the caller shuffles them, so the loop reads
    memory sequentially); returns the sum of squared errors.

    The update is Surprise's / Koren's: ``e = r - mu - b_u - b_i - p_u.q_i``, then
    ``b_u += lr (e - reg_bu b_u)``, ``p_u += lr (e q_i - reg_pu p_u)`` (with the old ``p_u`` in the
    ``q_i`` step). One chunk runs sequentially (deterministic); more run Hogwild in parallel.
    """
    args = (mu, bu, bi, P, Q, lr, reg_bu, reg_bi, reg_pu, reg_qi)
    if n_chunks <= 1:
        return _sgd_range(users, items, ratings, 0, users.shape[0], *args)
    return _sgd_hogwild(users, items, ratings, n_chunks, *args)


@njit(cache=True, fastmath=True)
def _svdpp_range(
    indptr,
    indices,
    data,
    user_order,
    rating_perm,
    start,
    stop,
    mu,
    bu,
    bi,
    P,
    Q,
    Y,
    lr,
    reg_bu,
    reg_bi,
    reg_pu,
    reg_qi,
    reg_yj,
):  # type: ignore[no-untyped-def]
    k = P.shape[1]
    z = np.empty(k, np.float32)
    grad = np.empty(k, np.float32)
    a = np.float32(1.0 - lr * reg_pu)
    b = np.float32(1.0 - lr * reg_qi)
    c = np.float32(1.0 - lr * reg_yj)
    lr32 = np.float32(lr)
    acc = 0.0
    for t in range(start, stop):
        u = user_order[t]
        s, e_ = indptr[u], indptr[u + 1]
        n_u = e_ - s
        if n_u == 0:
            continue
        norm = np.float32(1.0 / np.sqrt(n_u))
        for f in range(k):
            z[f] = 0.0
            grad[f] = 0.0
        for p in range(s, e_):
            j = indices[p]
            for f in range(k):
                z[f] += Y[j, f]
        for f in range(k):
            z[f] *= norm
        for pp in range(s, e_):
            p = s + rating_perm[pp]
            i = indices[p]
            pu = P[u]
            qi = Q[i]
            dot = np.float32(0.0)
            for f in range(k):
                dot += qi[f] * (pu[f] + z[f])
            e = data[p] - (mu + bu[u] + bi[i] + dot)
            acc += e * e
            bu[u] += lr * (e - reg_bu * bu[u])
            bi[i] += lr * (e - reg_bi * bi[i])
            le = np.float32(lr * e)
            en = np.float32(e) * norm
            for f in range(k):
                x = pu[f]
                y = qi[f]
                grad[f] += en * y
                pu[f] = a * x + le * y
                qi[f] = b * y + le * (x + z[f])
        for p in range(s, e_):
            j = indices[p]
            for f in range(k):
                Y[j, f] = c * Y[j, f] + lr32 * grad[f]
    return acc


@njit(cache=True, parallel=True)
def _svdpp_hogwild(
    indptr,
    indices,
    data,
    user_order,
    rating_perm,
    n_chunks,
    mu,
    bu,
    bi,
    P,
    Q,
    Y,
    lr,
    reg_bu,
    reg_bi,
    reg_pu,
    reg_qi,
    reg_yj,
):  # type: ignore[no-untyped-def]
    n = user_order.shape[0]
    sse = np.zeros(n_chunks)
    size = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        sse[c] = _svdpp_range(
            indptr,
            indices,
            data,
            user_order,
            rating_perm,
            c * size,
            min(n, (c + 1) * size),
            mu,
            bu,
            bi,
            P,
            Q,
            Y,
            lr,
            reg_bu,
            reg_bi,
            reg_pu,
            reg_qi,
            reg_yj,
        )
    return sse.sum()


def svdpp_epoch(
    indptr,
    indices,
    data,
    user_order,
    rating_perm,
    n_chunks,
    mu,
    bu,
    bi,
    P,
    Q,
    Y,
    lr,
    reg_bu,
    reg_bi,
    reg_pu,
    reg_qi,
    reg_yj,
):  # type: ignore[no-untyped-def]
    """One SVD++ epoch, user by user (in ``user_order``); returns the sum of squared errors.

    Prediction ``mu + b_u + b_i + q_i.(p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)`` with N(u) the items
    u rated. Within a user, ratings are visited in the order of ``rating_perm`` (positions within
    the CSR row); the implicit sum is held fixed during the user's ratings, and every ``y_j`` then
    takes the user's accumulated gradient once: ``y_j += lr (sum_i e_ui |N(u)|^-1/2 q_i - reg_yj y_j)``.
    """
    args = (mu, bu, bi, P, Q, Y, lr, reg_bu, reg_bi, reg_pu, reg_qi, reg_yj)
    if n_chunks <= 1:
        return _svdpp_range(indptr, indices, data, user_order, rating_perm, 0, user_order.shape[0], *args)
    return _svdpp_hogwild(indptr, indices, data, user_order, rating_perm, n_chunks, *args)


@njit(cache=True, fastmath=True)
def _cholesky_solve(A, b, L):  # type: ignore[no-untyped-def]
    """Solve A x = b for symmetric positive definite A (d small); L receives the factor. Returns x."""
    d = A.shape[0]
    for i in range(d):
        for j in range(i + 1):
            s = A[i, j]
            for m in range(j):
                s -= L[i, m] * L[j, m]
            if i == j:
                L[i, i] = np.sqrt(s if s > 1e-300 else 1e-300)
            else:
                L[i, j] = s / L[j, j]
        for j in range(i + 1, d):
            L[i, j] = 0.0
    y = np.empty(d)
    for i in range(d):
        s = b[i]
        for m in range(i):
            s -= L[i, m] * y[m]
        y[i] = s / L[i, i]
    x = np.empty(d)
    for i in range(d - 1, -1, -1):
        s = y[i]
        for m in range(i + 1, d):
            s -= L[m, i] * x[m]
        x[i] = s / L[i, i]
    return x


@njit(cache=True, parallel=True, fastmath=True)
def ridge_side(indptr, indices, data, offset_other, other, out, lam_b, lam_f, scale_by_count):  # type: ignore[no-untyped-def]
    """Explicit ALS half-step: for every row r, ``out[r] = [b_r, p_r]`` minimising

    ``sum_j (data_rj - offset_other[j] - b_r - p_r.q_j)^2 + lam_b n b_r^2 + lam_f n |p_r|^2``

    with ``n = |row|`` when ``scale_by_count`` (ALS-WR, Zhou et al. 2008) else 1; ``other`` is
    ``[b, q]`` of the other side and ``offset_other`` holds ``mu + b_j``. Empty rows get zeros.
    """
    n_rows = indptr.shape[0] - 1
    k = other.shape[1] - 1
    d = k + 1
    for r in prange(n_rows):
        s, e = indptr[r], indptr[r + 1]
        if e == s:
            for f in range(d):
                out[r, f] = 0.0
            continue
        A = np.zeros((d, d))
        b = np.zeros(d)
        x = np.empty(d)
        for p in range(s, e):
            j = indices[p]
            x[0] = 1.0
            for f in range(k):
                x[f + 1] = other[j, f + 1]
            y = data[p] - offset_other[j]
            for a in range(d):
                b[a] += x[a] * y
                for c in range(a + 1):
                    A[a, c] += x[a] * x[c]
        n = float(e - s) if scale_by_count else 1.0
        A[0, 0] += lam_b * n
        for f in range(1, d):
            A[f, f] += lam_f * n
        for a in range(d):
            for c in range(a + 1, d):
                A[a, c] = A[c, a]
        L = np.empty((d, d))
        sol = _cholesky_solve(A, b, L)
        for f in range(d):
            out[r, f] = sol[f]


@njit(cache=True, parallel=True, fastmath=True)
def gibbs_side(indptr, indices, data, offset_other, other, out, alpha, prior_mu, prior_lam, noise, extra):  # type: ignore[no-untyped-def]
    """Bayesian MF half-sweep: draw every row's ``[b, p]`` from its Gaussian conditional.

    ``Lambda* = Lambda + alpha sum_j x_j x_j^T``, ``mu* = Lambda*^-1 (alpha sum_j x_j y_j + Lambda mu)``
    with ``x_j = [1, q_j]`` and ``y_j = r - offset_other[j] - extra[p]`` (``extra``: a per-rating
    offset, Bayesian SVD++'s ``z_u . q_i``; empty for none); the draw is ``mu* + L^-T z`` with
    ``Lambda* = L L^T`` and ``z = noise[r]`` (standard normals from the caller's generator).
    Rows without data are drawn from the prior alone.
    """
    n_rows = indptr.shape[0] - 1
    d = other.shape[1]
    k = d - 1
    for r in prange(n_rows):
        s, e = indptr[r], indptr[r + 1]
        A = np.empty((d, d))
        for a in range(d):
            for c in range(d):
                A[a, c] = prior_lam[a, c]
        b = np.zeros(d)
        for a in range(d):
            for c in range(d):
                b[a] += prior_lam[a, c] * prior_mu[c]
        x = np.empty(d)
        for p in range(s, e):
            j = indices[p]
            x[0] = 1.0
            for f in range(k):
                x[f + 1] = other[j, f + 1]
            y = data[p] - offset_other[j]
            if extra.shape[0] > 0:
                y -= extra[p]
            for a in range(d):
                b[a] += alpha * x[a] * y
                for c in range(a + 1):
                    A[a, c] += alpha * x[a] * x[c]
        for a in range(d):
            for c in range(a + 1, d):
                A[a, c] = A[c, a]
        L = np.empty((d, d))
        mean = _cholesky_solve(A, b, L)
        # solve L^T w = z  (w ~ N(0, Lambda*^-1))
        w = np.empty(d)
        for i in range(d - 1, -1, -1):
            t = noise[r, i]
            for m in range(i + 1, d):
                t -= L[m, i] * w[m]
            w[i] = t / L[i, i]
        for f in range(d):
            out[r, f] = mean[f] + w[f]


@njit(cache=True, parallel=True, fastmath=True)
def sq_errors(users, items, ratings, mu, bu, bi, P, Q):  # type: ignore[no-untyped-def]
    """Sum of squared residuals of ``mu + b_u + b_i + p_u.q_i`` over the ratings."""
    n = users.shape[0]
    k = P.shape[1]
    total = 0.0
    for t in prange(n):
        u = users[t]
        i = items[t]
        pred = mu + bu[u] + bi[i]
        for f in range(k):
            pred += P[u, f] * Q[i, f]
        e = ratings[t] - pred
        total += e * e
    return total


@njit(cache=True, fastmath=True)
def gibbs_implicit(indptr_t, users_t, norm, Q, Y, g, S, alpha, prior_mu, prior_lam, noise):  # type: ignore[no-untyped-def]
    """Bayesian SVD++ half-sweep: draw every implicit factor ``y_j`` in turn, in place.

    The prediction is ``... + q_i . (p_u + c_u sum_{j in N(u)} y_j)``, ``c_u = norm[u]``. Given the
    rest, ``y_j`` is Gaussian with precision ``Lambda + alpha sum_{u in N(j)} c_u^2 S_u`` and linear
    term ``Lambda mu + alpha sum_u c_u (g_u + c_u S_u y_j)``, where ``S_u = sum_{i in R(u)} q_i q_i^T``
    and ``g_u = sum_i q_i e_ui`` over the current residuals. After each draw the ``g_u`` of the users
    of j are corrected (``g_u -= c_u S_u (y_new - y_old)``), so the sweep is an exact sequential
    Gibbs scan at O(nnz k^2). ``users_t``/``indptr_t``: the users of each item (CSC).
    """
    n_items = indptr_t.shape[0] - 1
    k = Y.shape[1]
    A = np.empty((k, k))
    b = np.empty(k)
    L = np.empty((k, k))
    old = np.empty(k)
    lam_mu = prior_lam @ prior_mu
    for j in range(n_items):
        s, e = indptr_t[j], indptr_t[j + 1]
        if e == s:
            continue  # no user rated j: y_j never enters a prediction
        for a in range(k):
            old[a] = Y[j, a]
            b[a] = lam_mu[a]
            for c in range(k):
                A[a, c] = prior_lam[a, c]
        for p in range(s, e):
            u = users_t[p]
            cu = norm[u]
            for a in range(k):
                sy = 0.0
                for c in range(k):
                    A[a, c] += alpha * cu * cu * S[u, a, c]
                    sy += S[u, a, c] * old[c]
                b[a] += alpha * cu * (g[u, a] + cu * sy)
        mean = _cholesky_solve(A, b, L)
        for i in range(k - 1, -1, -1):
            t = noise[j, i]
            for m in range(i + 1, k):
                t -= L[m, i] * Y[j, m]
            Y[j, i] = t / L[i, i]
        for a in range(k):
            Y[j, a] += mean[a]
        for p in range(s, e):
            u = users_t[p]
            cu = norm[u]
            for a in range(k):
                sd = 0.0
                for c in range(k):
                    sd += S[u, a, c] * (Y[j, c] - old[c])
                g[u, a] -= cu * sd


@njit(cache=True, parallel=True, fastmath=True)
def user_gram(indptr, indices, Q):  # type: ignore[no-untyped-def]
    """``S[u] = sum_{i in R(u)} q_i q_i^T`` for every user (rows in parallel)."""
    n_rows = indptr.shape[0] - 1
    k = Q.shape[1]
    S = np.zeros((n_rows, k, k))
    for r in prange(n_rows):
        for p in range(indptr[r], indptr[r + 1]):
            i = indices[p]
            for a in range(k):
                for c in range(k):
                    S[r, a, c] += Q[i, a] * Q[i, c]
    return S
