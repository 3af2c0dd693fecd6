"""Compiled inner loop of BPR (Rendle, Freudenthaler, Gantner & Schmidt-Thieme 2009).

LearnBPR: draw a positive pair (u, i) uniformly from the training entries (bootstrap sampling,
with replacement), draw a negative item j uniformly from the items u has *not* had (rejection
sampling against u's sorted CSR row), and take one SGD step on ``ln sigma(x_ui - x_uj)`` with
``x_ui = b_i + w_u . h_i`` and L2 penalty ``reg``.

Parallel Hogwild (Niu et al. 2011): the samples of an epoch are cut into fixed chunks run with
``prange``; chunks update the shared factors without locks. Each chunk has its own random stream
seeded from ``(seed, epoch, chunk)``, so with one thread the result is bit-for-bit reproducible;
with more, only the order of colliding updates varies.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(inline="always", cache=True)
def _splitmix(state):  # pragma: no cover - compiled
    """splitmix64: returns (new state, 64 random bits)."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@njit(inline="always", cache=True)
def _has(indices, lo, hi, j):  # pragma: no cover - compiled
    """Whether sorted ``indices[lo:hi]`` holds ``j`` (binary search)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        v = indices[mid]
        if v == j:
            return True
        if v < j:
            lo = mid + 1
        else:
            hi = mid
    return False


@njit(parallel=True, fastmath=True, cache=True)
def bpr_epoch(rows, indptr, indices, W, H, b, lr, reg, n_samples, n_chunks, seed, epoch):  # pragma: no cover
    """One epoch of ``n_samples`` SGD steps; returns (sum of ln sigma(x_uij), correct, skipped).

    ``rows[e]`` is the user of stored entry ``e`` (CSR order); ``indices[e]`` its item.
    """
    n_items = H.shape[0]
    k = H.shape[1]
    nnz = indices.shape[0]
    per = (n_samples + n_chunks - 1) // n_chunks
    logl = np.zeros(n_chunks, np.float64)
    correct = np.zeros(n_chunks, np.int64)
    skipped = np.zeros(n_chunks, np.int64)
    for chunk in prange(n_chunks):
        state = (
            np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(epoch) * np.uint64(1000003) + np.uint64(chunk)
        )
        state, _ = _splitmix(state)
        lo_s = chunk * per
        hi_s = min(n_samples, lo_s + per)
        for _ in range(lo_s, hi_s):
            state, z = _splitmix(state)
            e = np.int64(z % np.uint64(nnz))
            u = rows[e]
            i = indices[e]
            lo = indptr[u]
            hi = indptr[u + 1]
            if hi - lo >= n_items:
                skipped[chunk] += 1
                continue
            j = -1
            for _try in range(64):
                state, z = _splitmix(state)
                cand = np.int64(z % np.uint64(n_items))
                if not _has(indices, lo, hi, cand):
                    j = cand
                    break
            if j < 0:
                skipped[chunk] += 1
                continue
            x = b[i] - b[j]
            for f in range(k):
                x += W[u, f] * (H[i, f] - H[j, f])
            # d/dx ln sigma(x) = sigma(-x) = 1 / (1 + e^x)
            if x > 0:
                ex = np.exp(-x)
                g = ex / (1.0 + ex)
                logl[chunk] += -np.log1p(ex)
                correct[chunk] += 1
            else:
                ex = np.exp(x)
                g = 1.0 / (1.0 + ex)
                logl[chunk] += x - np.log1p(ex)
            for f in range(k):
                wu = W[u, f]
                hi_f = H[i, f]
                hj_f = H[j, f]
                W[u, f] = wu + lr * (g * (hi_f - hj_f) - reg * wu)
                H[i, f] = hi_f + lr * (g * wu - reg * hi_f)
                H[j, f] = hj_f + lr * (-g * wu - reg * hj_f)
            b[i] += lr * (g - reg * b[i])
            b[j] += lr * (-g - reg * b[j])
    return logl.sum(), correct.sum(), skipped.sum()
