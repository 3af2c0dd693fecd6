"""The one top-k routine every model shares (batch-first, like implicit's)."""

from __future__ import annotations

import numpy as np


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` columns of each row of ``scores``, best first.

    ``-inf`` and NaN entries are never returned: their slots come back as index ``-1`` and score
    NaN. Ties break towards the lower column index, so a row gives the same answer alone or in
    a batch.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim == 1:
        idx, val = topk(scores[None, :], k)
        return idx[0], val[0]
    scores = np.where(np.isnan(scores), -np.inf, scores)
    n_rows, n_cols = scores.shape
    k_eff = min(k, n_cols)
    if k_eff <= 0 or n_rows == 0:
        return np.full((n_rows, k), -1, np.int64), np.full((n_rows, k), np.nan, np.float32)
    if k_eff < n_cols:
        cand = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
        kth = np.take_along_axis(scores, cand, axis=1).min(axis=1, keepdims=True)
        # rows where more columns tie with the k-th value than fit: resolve by a stable sort
        ambiguous = np.nonzero((scores >= kth).sum(axis=1) > k_eff)[0]
        if ambiguous.size:
            cand[ambiguous] = np.argsort(-scores[ambiguous], axis=1, kind="stable")[:, :k_eff]
    else:
        cand = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols)).copy()
    cand_scores = np.take_along_axis(scores, cand, axis=1)
    order = np.lexsort((cand, -cand_scores), axis=1)
    idx = np.take_along_axis(cand, order, axis=1).astype(np.int64)
    val = np.take_along_axis(cand_scores, order, axis=1)
    invalid = np.isneginf(val)
    idx[invalid] = -1
    val[invalid] = np.nan
    if k_eff < k:
        idx = np.pad(idx, ((0, 0), (0, k - k_eff)), constant_values=-1)
        val = np.pad(val, ((0, 0), (0, k - k_eff)), constant_values=np.nan)
    return idx, val
