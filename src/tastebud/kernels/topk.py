"""Compiled top-k over score blocks with exclusions fused in: the engine of ``tastebud.core.ranking``."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from tastebud.kernels._serial import serial_twin


@njit(inline="always", cache=True)
def _block_max(row, lo, hi):  # pragma: no cover - compiled
    mx = -np.inf  # no fastmath: NaN entries never win a comparison, so they cannot hide a block
    for c in range(lo, hi):
        v = row[c]
        if v > mx:
            mx = v
    return mx


@njit(parallel=True, cache=True)
def topk_masked(scores, rows, indptr, indices, k, out_idx, out_val):  # pragma: no cover - compiled
    """Top-``k`` of each row of a dense score block, skipping the row's seen items.

    ``rows[r]`` is the CSR row (user) of block row ``r`` (-1: mask nothing); its ``indices``
    must be sorted. The engine of :mod:`tastebud.core.ranking`, which every layer ranks through: best first,
    ties to the lower column, NaN and -inf never returned (slots left as -1 / NaN). One pass per
    row keeping a sorted buffer of ``k``; runs of 32 columns whose maximum cannot enter the
    buffer are skipped with one vectorised comparison. Parallel over rows.
    """
    n, m = scores.shape
    width = 32
    for r in prange(n):
        u = rows[r]
        if u >= 0:
            seen = indptr[u]
            seen_end = indptr[u + 1]
        else:
            seen = 0
            seen_end = 0
        filled = 0
        for j in range(k):
            out_idx[r, j] = -1
            out_val[r, j] = np.nan
        row = scores[r]
        for lo in range(0, m, width):
            hi = min(m, lo + width)
            if filled == k and not (_block_max(row, lo, hi) > out_val[r, k - 1]):
                continue
            for c in range(lo, hi):
                s = row[c]
                if not (s > -np.inf):  # NaN or -inf
                    continue
                if filled == k and not (s > out_val[r, k - 1]):
                    continue
                while seen < seen_end and indices[seen] < c:
                    seen += 1
                if seen < seen_end and indices[seen] == c:
                    continue
                pos = filled if filled < k else k - 1
                while pos > 0 and s > out_val[r, pos - 1]:
                    out_val[r, pos] = out_val[r, pos - 1]
                    out_idx[r, pos] = out_idx[r, pos - 1]
                    pos -= 1
                out_val[r, pos] = s
                out_idx[r, pos] = c
                if filled < k:
                    filled += 1


topk_masked_serial = serial_twin(topk_masked)  # a request for one person
