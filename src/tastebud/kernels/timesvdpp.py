"""The compiled SGD epoch of timeSVD++ (Koren 2009, "Collaborative Filtering with Temporal Dynamics").

The loop is SVD++'s (``kernels.mf.svdpp_epoch``: user by user, the implicit sum formed once per
user, every ``y_j`` taking the user's accumulated gradient once) with the paper's time-drifting
biases added to the prediction and the updates:

``r(u,i,t) = mu + b_i + b_{i,Bin(t)} + b_u + alpha_u dev_u(t) + b_{u,t} + q_i . (p_u + |N(u)|^-1/2 sum_j y_j)``

Per rating the caller passes the item-bias time bin (``bins``), ``dev_u(t)`` (``devs``) and the
index of the rating's (user, day) pair in ``b_{u,t}`` (``user_days``), all in CSR order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# positions in the ``regs`` array
REG_USER_BIAS, REG_ITEM_BIAS, REG_USER_FACTORS, REG_ITEM_FACTORS, REG_IMPLICIT = 0, 1, 2, 3, 4
REG_ITEM_BIN_BIAS, REG_USER_DRIFT, REG_USER_DAY_BIAS = 5, 6, 7


@njit(cache=True, fastmath=True)
def _range(
    indptr,
    indices,
    data,
    bins,
    devs,
    user_days,
    user_order,
    rating_perm,
    start,
    stop,
    mu,
    bu,
    bi,
    bib,
    au,
    but,
    P,
    Q,
    Y,
    lr,
    lr_drift,
    regs,
):  # type: ignore[no-untyped-def]
    k = P.shape[1]
    z = np.empty(k, np.float32)
    grad = np.empty(k, np.float32)
    a = np.float32(1.0 - lr * regs[REG_USER_FACTORS])
    b = np.float32(1.0 - lr * regs[REG_ITEM_FACTORS])
    c = np.float32(1.0 - lr * regs[REG_IMPLICIT])
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
            tb = bins[p]
            d = user_days[p]
            dev = devs[p]
            pu = P[u]
            qi = Q[i]
            dot = np.float32(0.0)
            for f in range(k):
                dot += qi[f] * (pu[f] + z[f])
            e = data[p] - (mu + bu[u] + au[u] * dev + but[d] + bi[i] + bib[i, tb] + dot)
            acc += e * e
            bu[u] += lr * (e - regs[REG_USER_BIAS] * bu[u])
            bi[i] += lr * (e - regs[REG_ITEM_BIAS] * bi[i])
            bib[i, tb] += lr * (e - regs[REG_ITEM_BIN_BIAS] * bib[i, tb])
            au[u] += lr_drift * (e * dev - regs[REG_USER_DRIFT] * au[u])
            but[d] += lr * (e - regs[REG_USER_DAY_BIAS] * but[d])
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
def _hogwild(
    indptr,
    indices,
    data,
    bins,
    devs,
    user_days,
    user_order,
    rating_perm,
    n_chunks,
    mu,
    bu,
    bi,
    bib,
    au,
    but,
    P,
    Q,
    Y,
    lr,
    lr_drift,
    regs,
):  # type: ignore[no-untyped-def]
    n = user_order.shape[0]
    sse = np.zeros(n_chunks)
    size = (n + n_chunks - 1) // n_chunks
    for ch in prange(n_chunks):
        sse[ch] = _range(
            indptr,
            indices,
            data,
            bins,
            devs,
            user_days,
            user_order,
            rating_perm,
            ch * size,
            min(n, (ch + 1) * size),
            mu,
            bu,
            bi,
            bib,
            au,
            but,
            P,
            Q,
            Y,
            lr,
            lr_drift,
            regs,
        )
    return sse.sum()


def timesvdpp_epoch(
    indptr,
    indices,
    data,
    bins,
    devs,
    user_days,
    user_order,
    rating_perm,
    n_chunks,
    mu,
    bu,
    bi,
    bib,
    au,
    but,
    P,
    Q,
    Y,
    lr,
    lr_drift,
    regs,
):  # type: ignore[no-untyped-def]
    """One timeSVD++ epoch; returns the sum of squared errors. One chunk is sequential (deterministic).

    Updates per rating, with ``e`` the error: ``b_u``, ``b_i``, ``b_{i,Bin}``, ``b_{u,t}`` move by
    ``lr (e - reg x)``; ``alpha_u`` by ``lr_drift (e dev_u(t) - reg alpha_u)`` (dev grows with
    |t - t_u|^beta, so it takes its own, smaller step as in the paper); ``p_u``, ``q_i``, ``y_j`` as
    SVD++. ``regs`` holds the L2 weights at the ``REG_*`` positions.
    """
    args = (mu, bu, bi, bib, au, but, P, Q, Y, lr, lr_drift, regs)
    if n_chunks <= 1:
        return _range(
            indptr, indices, data, bins, devs, user_days, user_order, rating_perm, 0, user_order.shape[0], *args
        )
    return _hogwild(indptr, indices, data, bins, devs, user_days, user_order, rating_perm, n_chunks, *args)
