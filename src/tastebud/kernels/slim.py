"""Compiled coordinate descent for SLIM's per-item elastic net (Ning & Karypis 2011).

For each target item ``j`` the weights ``w`` (column j of W) minimise

    1/2 |x_j - X w|^2 + l1 |w|_1 + l2/2 |w|^2,   w >= 0,   w_j = 0,

which only needs the Gram matrix ``G = X^T X``: the objective is ``1/2 w^T G w - G_:j . w +
l1 sum w + l2/2 |w|^2`` plus a constant. Coordinate descent updates one weight at a time,

    w_k <- max(0, (G_kj - (Gw)_k + G_kk w_k - l1) / (G_kk + l2)),

and keeps ``Gw`` current by adding ``delta * G_:k`` when ``w_k`` moves. With the L1 penalty few
weights are ever non-zero, so a sweep costs O(n_items) plus O(n_items) per weight that moved.
``G`` is symmetric, so the kernel reads rows only (contiguous). Items run in parallel with
``prange``; each writes only its own column, so the result does not
depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=False, cache=True)
def slim_columns(G, targets, l1, l2, max_sweeps, tol, keep, out_idx, out_val):  # pragma: no cover - compiled
    """Fit the columns ``targets`` of W; row ``t`` of ``out_idx``/``out_val`` gets column
    ``targets[t]``'s ``keep`` largest weights (index -1 and 0.0 where there are fewer)."""
    n = G.shape[0]
    for t in prange(len(targets)):
        j = targets[t]
        w = np.zeros(n, np.float64)
        gw = np.zeros(n, np.float64)
        for _ in range(max_sweeps):
            biggest_step = 0.0
            biggest_weight = 0.0
            for k in range(n):
                if k == j:
                    continue
                gkk = G[k, k]
                if gkk <= 0.0:  # an item nobody has: its weight stays 0
                    continue
                old = w[k]
                new = (G[j, k] - gw[k] + gkk * old - l1) / (gkk + l2)
                if new < 0.0:
                    new = 0.0
                if new != old:
                    delta = new - old
                    w[k] = new
                    for m in range(n):
                        gw[m] += delta * G[k, m]  # G is symmetric: read row k, contiguous
                    if abs(delta) > biggest_step:
                        biggest_step = abs(delta)
                if new > biggest_weight:
                    biggest_weight = new
            if biggest_step <= tol * max(biggest_weight, 1e-12):
                break
        # the ``keep`` largest weights, best first (ties: lower index first)
        order = np.argsort(-w, kind="mergesort")
        for r in range(keep):
            k = order[r] if r < n else -1
            if k >= 0 and w[k] > 0.0:
                out_idx[t, r] = k
                out_val[t, r] = w[k]
            else:
                out_idx[t, r] = -1
                out_val[t, r] = 0.0
