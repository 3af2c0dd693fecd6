"""Compiled inner loops of the explicit matrix-factorisation models (``tastebud.models.mf``).

* ``sgd_epoch``: one epoch of biased-MF SGD (Funk / Koren et al. 2009), in a given order. With
  ``n_chunks > 1`` the order is cut into chunks updated in parallel without locks (Hogwild,
  Recht et al. 2011); with one chunk it is a plain sequential, deterministic loop.
* ``svdpp_epoch``: one epoch of SVD++ (Koren 2008) processed user by user, so the implicit sum
  ``|N(u)|^-1/2 sum_j y_j`` is computed once per user instead of once per rating.
* ``ridge_side``: one half-step of explicit ALS with biases: every row's ``[b, p]`` solved
  exactly by ridge regression given the other side (rows in parallel).
* ``gibbs_side``: one half-sweep of the Bayesian MF Gibbs sampler (Salakhutdinov & Mnih 2008):
  every row's ``[b, p]`` drawn from its Gaussian conditional given the other side. The standard
  normal draws are made by the caller from its seeded generator, so the result does not depend on
  the number of threads.

Rows are CSR: ``indptr``, ``indices`` (the other side's index), ``data`` (the rating).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, fastmath=True)
def _dot(a, b):  # type: ignore[no-untyped-def]
    s = 0.0
    for f in range(a.shape[0]):
        s += a[f] * b[f]
    return s


@njit(cache=True, parallel=True, fastmath=True)
def sgd_epoch(  # type: ignore[no-untyped-def]
    users, items, ratings, order, n_chunks, mu, bu, bi, P, Q, lr, reg_bu, reg_bi, reg_pu, reg_qi
):
    """One SGD epoch over ``order`` (indices into the rating arrays); returns the sum of squared errors.

    The update is Surprise's / Koren's: ``e = r - mu - b_u - b_i - p_u.q_i``, then
    ``b_u += lr (e - reg_bu b_u)``, ``p_u += lr (e q_i - reg_pu p_u)`` (with the old ``q_i``), etc.
    """
    n = order.shape[0]
    k = P.shape[1]
    sse = np.zeros(n_chunks)
    size = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        start = c * size
        stop = min(n, start + size)
        acc = 0.0
        for t in range(start, stop):
            idx = order[t]
            u = users[idx]
            i = items[idx]
            pred = mu + bu[u] + bi[i]
            for f in range(k):
                pred += P[u, f] * Q[i, f]
            e = ratings[idx] - pred
            acc += e * e
            bu[u] += lr * (e - reg_bu * bu[u])
            bi[i] += lr * (e - reg_bi * bi[i])
            for f in range(k):
                puf = P[u, f]
                qif = Q[i, f]
                P[u, f] += lr * (e * qif - reg_pu * puf)
                Q[i, f] += lr * (e * puf - reg_qi * qif)
        sse[c] = acc
    return sse.sum()


@njit(cache=True, parallel=True, fastmath=True)
def svdpp_epoch(  # type: ignore[no-untyped-def]
    indptr, indices, data, user_order, rating_perm, n_chunks, mu, bu, bi, P, Q, Y, lr, reg_bu, reg_bi, reg_pu, reg_qi, reg_yj
):
    """One SVD++ epoch, user by user (in ``user_order``); returns the sum of squared errors.

    Prediction ``mu + b_u + b_i + q_i.(p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)`` with N(u) the items
    u rated. Within a user, ratings are visited in the order of ``rating_perm`` (a permutation of
    positions within the CSR row, precomputed per epoch); the implicit sum is held fixed while the
    user's ratings are visited, and every ``y_j`` gets the accumulated gradient once per user.
    """
    n_users = user_order.shape[0]
    k = P.shape[1]
    sse = np.zeros(n_chunks)
    size = (n_users + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        z = np.empty(k)
        grad = np.empty(k)
        acc = 0.0
        for t in range(c * size, min(n_users, (c + 1) * size)):
            u = user_order[t]
            s, e_ = indptr[u], indptr[u + 1]
            n_u = e_ - s
            if n_u == 0:
                continue
            norm = 1.0 / np.sqrt(n_u)
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
                pred = mu + bu[u] + bi[i]
                for f in range(k):
                    pred += Q[i, f] * (P[u, f] + z[f])
                e = data[p] - pred
                acc += e * e
                bu[u] += lr * (e - reg_bu * bu[u])
                bi[i] += lr * (e - reg_bi * bi[i])
                for f in range(k):
                    puf = P[u, f]
                    qif = Q[i, f]
                    P[u, f] += lr * (e * qif - reg_pu * puf)
                    Q[i, f] += lr * (e * (puf + z[f]) - reg_qi * qif)
                    grad[f] += e * norm * qif
            for p in range(s, e_):
                j = indices[p]
                for f in range(k):
                    Y[j, f] += lr * (grad[f] - reg_yj * Y[j, f])
        sse[c] = acc
    return sse.sum()


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
def gibbs_side(indptr, indices, data, offset_other, other, out, alpha, prior_mu, prior_lam, noise):  # type: ignore[no-untyped-def]
    """Bayesian MF half-sweep: draw every row's ``[b, p]`` from its Gaussian conditional.

    ``Lambda* = Lambda + alpha sum_j x_j x_j^T``, ``mu* = Lambda*^-1 (alpha sum_j x_j y_j + Lambda mu)``
    with ``x_j = [1, q_j]`` and ``y_j = r - offset_other[j]``; the draw is ``mu* + L^-T z`` with
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
