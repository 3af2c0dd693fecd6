"""Numba kernels for neighbourhood models: sparse all-pairs similarity with top-K pruning, and
k-nearest-neighbour rating prediction.

The similarity kernel never builds a dense n x n matrix. It walks the rows of an entity x feature
CSR matrix (items x users for item-based models) in parallel chunks; each chunk owns one set of
dense accumulators of length n (plus a list of the columns it touched) that is reset after every
row, and keeps only the best ``k`` similarities of the row in a small heap. Memory is
O(threads * n + n * k), the same scheme as implicit's ``all_pairs_knn``. Every row is computed
independently, in a fixed order, so results do not depend on the number of threads.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

# similarity kinds (what is computed from the per-pair sums)
DOT = 0  # sum x*y (values pre-weighted, e.g. BM25)
COSINE = 1  # sum x*y / (|x| |y|), norms over all features
PEARSON = 2  # Pearson correlation over the common support (per-pair means)
COMMON_COSINE = 3  # sum x*y / sqrt(sum_common x^2 * sum_common y^2) (adjusted cosine, pearson-baseline)
MSD = 4  # 1 / (mean squared difference over the common support + 1)
ASYMMETRIC = 5  # sum x*y / (|x|^2)^alpha (|y|^2)^(1-alpha)  (Aiolli 2013)

_NEEDS_MOMENTS = (PEARSON, COMMON_COSINE, MSD)


@njit(cache=True, inline="always")
def _worse(v1: float, c1: int, v2: float, c2: int) -> bool:
    """True when (v1, c1) ranks below (v2, c2): lower value, ties towards the higher column."""
    return v1 < v2 or (v1 == v2 and c1 > c2)


@njit(cache=True)
def _heap_push(hv: np.ndarray, hc: np.ndarray, size: int, k: int, v: float, c: int) -> int:
    """Keep the best ``k`` (value, column) pairs in a min-heap (root = worst kept). Returns size."""
    if size < k:
        pos = size
        hv[pos] = v
        hc[pos] = c
        size += 1
        while pos > 0:
            parent = (pos - 1) // 2
            if _worse(hv[pos], hc[pos], hv[parent], hc[parent]):
                hv[pos], hv[parent] = hv[parent], hv[pos]
                hc[pos], hc[parent] = hc[parent], hc[pos]
                pos = parent
            else:
                break
        return size
    if not _worse(hv[0], hc[0], v, c):
        return size
    hv[0] = v
    hc[0] = c
    pos = 0
    while True:
        left = 2 * pos + 1
        right = left + 1
        small = pos
        if left < size and _worse(hv[left], hc[left], hv[small], hc[small]):
            small = left
        if right < size and _worse(hv[right], hc[right], hv[small], hc[small]):
            small = right
        if small == pos:
            break
        hv[pos], hv[small] = hv[small], hv[pos]
        hc[pos], hc[small] = hc[small], hc[pos]
        pos = small
    return size


@njit(cache=True)
def _pair_similarity(
    kind: int,
    n: float,
    sxy: float,
    sx: float,
    sy: float,
    sxx: float,
    syy: float,
    sq_q: float,
    sq_e: float,
    alpha: float,
    shrinkage: float,
    shrink_offset: float,
) -> float:
    if kind == DOT:
        sim = sxy
    elif kind == COSINE:
        den = np.sqrt(sq_q * sq_e)
        sim = sxy / den if den > 0 else 0.0
    elif kind == ASYMMETRIC:
        den = sq_q**alpha * sq_e ** (1.0 - alpha)
        sim = sxy / den if den > 0 else 0.0
    elif kind == PEARSON:
        if n < 2:
            return 0.0
        num = n * sxy - sx * sy
        den = (n * sxx - sx * sx) * (n * syy - sy * sy)
        sim = num / np.sqrt(den) if den > 0 else 0.0
    elif kind == COMMON_COSINE:
        den = sxx * syy
        sim = sxy / np.sqrt(den) if den > 0 else 0.0
    else:  # MSD
        msd = (sxx - 2.0 * sxy + syy) / n
        sim = 1.0 / (msd + 1.0)
    if shrinkage > 0:
        m = n - shrink_offset
        sim = sim * m / (m + shrinkage) if m > 0 else 0.0
    return sim


@njit(cache=True)
def _row_topk(
    q_idx: np.ndarray,
    q_val: np.ndarray,
    sq_q: float,
    self_col: int,
    f_indptr: np.ndarray,
    f_indices: np.ndarray,
    f_data: np.ndarray,
    sq: np.ndarray,
    kind: int,
    k: int,
    shrinkage: float,
    shrink_offset: float,
    min_support: int,
    alpha: float,
    cnt: np.ndarray,
    sxy: np.ndarray,
    sx: np.ndarray,
    sy: np.ndarray,
    sxx: np.ndarray,
    syy: np.ndarray,
    touched: np.ndarray,
    hv: np.ndarray,
    hc: np.ndarray,
) -> int:
    """Similarities of one query row against every entity; best ``k`` (> 0) into (hv, hc)."""
    moments = kind == PEARSON or kind == COMMON_COSINE or kind == MSD
    pearson = kind == PEARSON
    nt = 0
    for a in range(len(q_idx)):
        f = q_idx[a]
        x = q_val[a]
        for b in range(f_indptr[f], f_indptr[f + 1]):
            e = f_indices[b]
            y = f_data[b]
            if cnt[e] == 0:
                touched[nt] = e
                nt += 1
            cnt[e] += 1
            sxy[e] += x * y
            if moments:
                sxx[e] += x * x
                syy[e] += y * y
                if pearson:  # only Pearson needs the plain sums (per-pair means)
                    sx[e] += x
                    sy[e] += y
    size = 0
    for t in range(nt):
        e = touched[t]
        c = cnt[e]
        if e != self_col and c >= min_support:
            if moments:
                sim = _pair_similarity(
                    kind, float(c), sxy[e], sx[e], sy[e], sxx[e], syy[e], sq_q, sq[e], alpha, shrinkage, shrink_offset
                )
            else:
                sim = _pair_similarity(
                    kind, float(c), sxy[e], 0.0, 0.0, 0.0, 0.0, sq_q, sq[e], alpha, shrinkage, shrink_offset
                )
            if sim > 0:
                size = _heap_push(hv, hc, size, k, sim, e)
        cnt[e] = 0
        sxy[e] = 0.0
        if moments:
            sxx[e] = 0.0
            syy[e] = 0.0
            if pearson:
                sx[e] = 0.0
                sy[e] = 0.0
    return size


@njit(cache=True)
def _row_topk_dot(
    q_idx: np.ndarray,
    q_val: np.ndarray,
    self_col: int,
    f_indptr: np.ndarray,
    f_indices: np.ndarray,
    f_data: np.ndarray,
    k: int,
    acc: np.ndarray,
    touched: np.ndarray,
    hv: np.ndarray,
    hc: np.ndarray,
) -> int:
    """Fast path: plain dot products of pre-scaled rows (cosine, asymmetric cosine, BM25, TF-IDF
    without shrinkage or minimum support): one accumulator, no per-pair arithmetic."""
    nt = 0
    for a in range(len(q_idx)):
        f = q_idx[a]
        x = q_val[a]
        for b in range(f_indptr[f], f_indptr[f + 1]):
            e = f_indices[b]
            if acc[e] == 0.0:
                touched[nt] = e
                nt += 1
            acc[e] += x * f_data[b]
    size = 0
    for t in range(nt):
        e = touched[t]
        v = acc[e]
        acc[e] = 0.0
        if v > 0 and e != self_col:
            if size < k or not _worse(v, e, hv[0], hc[0]):
                size = _heap_push(hv, hc, size, k, v, e)
    return size


@njit(cache=True)
def _sort_by_column(hv: np.ndarray, hc: np.ndarray, size: int, out_v: np.ndarray, out_c: np.ndarray) -> None:
    order = np.argsort(hc[:size])
    for t in range(size):
        out_c[t] = hc[order[t]]
        out_v[t] = hv[order[t]]


@njit(parallel=True, cache=True)
def topk_similarity(
    e_indptr: np.ndarray,
    e_indices: np.ndarray,
    e_data: np.ndarray,
    f_indptr: np.ndarray,
    f_indices: np.ndarray,
    f_data: np.ndarray,
    sq: np.ndarray,
    kind: int,
    k: int,
    shrinkage: float,
    shrink_offset: float,
    min_support: int,
    alpha: float,
    n_chunks: int,
    fast: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` positive similarities of every row of E (entity x feature CSR) to every other row.

    ``F`` is E transposed (feature x entity CSR, same values); ``sq`` the squared norm of every
    row of E. Returns (counts per row, columns (n, k), values (n, k)); each row's kept entries come
    first, sorted by column. The diagonal is never kept. ``fast``: the caller pre-scaled E and F
    so that the similarity is the plain dot product (kind and the pair parameters are ignored).
    """
    n = len(e_indptr) - 1
    out_c = np.full((n, k), -1, np.int32)
    out_v = np.zeros((n, k), np.float32)
    counts = np.zeros(n, np.int64)
    chunk = (n + n_chunks - 1) // n_chunks
    moments = kind == PEARSON or kind == COMMON_COSINE or kind == MSD
    for ch in prange(n_chunks):
        lo = ch * chunk
        hi = min(n, lo + chunk)
        if lo >= hi:
            continue
        m = n if moments else 1
        cnt = np.zeros(1 if fast else n, np.int32)
        sxy = np.zeros(n, np.float64)
        sx = np.zeros(m, np.float64)
        sy = np.zeros(m, np.float64)
        sxx = np.zeros(m, np.float64)
        syy = np.zeros(m, np.float64)
        touched = np.empty(n, np.int64)
        hv = np.empty(k, np.float64)
        hc = np.empty(k, np.int64)
        for i in range(lo, hi):
            s, t = e_indptr[i], e_indptr[i + 1]
            if fast:
                size = _row_topk_dot(
                    e_indices[s:t], e_data[s:t], i, f_indptr, f_indices, f_data, k, sxy, touched, hv, hc
                )
            else:
                size = _row_topk(
                    e_indices[s:t], e_data[s:t], sq[i], i, f_indptr, f_indices, f_data, sq, kind, k,
                    shrinkage, shrink_offset, min_support, alpha, cnt, sxy, sx, sy, sxx, syy, touched, hv, hc,
                )  # fmt: skip
            order = np.argsort(hc[:size])
            for a in range(size):
                out_c[i, a] = hc[order[a]]
                out_v[i, a] = hv[order[a]]
            counts[i] = size
    return counts, out_c, out_v


@njit(cache=True)
def query_similarity(
    q_idx: np.ndarray,
    q_val: np.ndarray,
    sq_q: float,
    f_indptr: np.ndarray,
    f_indices: np.ndarray,
    f_data: np.ndarray,
    sq: np.ndarray,
    kind: int,
    k: int,
    shrinkage: float,
    shrink_offset: float,
    min_support: int,
    alpha: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` similarities of one new row (not in E) to every row of E: (columns, values)."""
    n = len(sq)
    moments = kind == PEARSON or kind == COMMON_COSINE or kind == MSD
    m = n if moments else 1
    cnt = np.zeros(n, np.int32)
    sxy = np.zeros(n, np.float64)
    sx = np.zeros(m, np.float64)
    sy = np.zeros(m, np.float64)
    sxx = np.zeros(m, np.float64)
    syy = np.zeros(m, np.float64)
    touched = np.empty(n, np.int64)
    hv = np.empty(k, np.float64)
    hc = np.empty(k, np.int64)
    size = _row_topk(
        q_idx, q_val, sq_q, -1, f_indptr, f_indices, f_data, sq, kind, k,
        shrinkage, shrink_offset, min_support, alpha, cnt, sxy, sx, sy, sxx, syy, touched, hv, hc,
    )  # fmt: skip
    out_c = np.empty(size, np.int64)
    out_v = np.empty(size, np.float64)
    _sort_by_column(hv, hc, size, out_v, out_c)
    return out_c, out_v


@njit(parallel=True, cache=True)
def truncate_rows(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the ``k`` largest entries of each CSR row (ties to the lower column), sorted by column."""
    n = len(indptr) - 1
    out_c = np.full((n, k), -1, np.int32)
    out_v = np.zeros((n, k), np.float32)
    counts = np.zeros(n, np.int64)
    for i in prange(n):
        hv = np.empty(k, np.float64)
        hc = np.empty(k, np.int64)
        size = 0
        for a in range(indptr[i], indptr[i + 1]):
            size = _heap_push(hv, hc, size, k, data[a], indices[a])
        order = np.argsort(hc[:size])
        for a in range(size):
            out_c[i, a] = hc[order[a]]
            out_v[i, a] = hv[order[a]]
        counts[i] = size
    return counts, out_c, out_v


@njit(parallel=True, cache=True)
def knn_aggregate(
    sim_rows: np.ndarray,
    list_rows: np.ndarray,
    s_indptr: np.ndarray,
    s_indices: np.ndarray,
    s_data: np.ndarray,
    r_indptr: np.ndarray,
    r_indices: np.ndarray,
    r_data: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pair p: the ``k`` most similar neighbours that are both in similarity row
    ``sim_rows[p]`` and in rating row ``list_rows[p]``; returns sum(sim * value), sum(sim) and
    the number of neighbours used. A row index of -1 gives zeros (no information).

    Item-based: sim row = target item, rating row = the user's ratings (neighbours are items).
    User-based: sim row = the user, rating row = the item's column (neighbours are users).
    Both rows are sorted by column, so the intersection is a linear merge.
    """
    n_pairs = len(sim_rows)
    num = np.zeros(n_pairs, np.float64)
    den = np.zeros(n_pairs, np.float64)
    used = np.zeros(n_pairs, np.int64)
    for p in prange(n_pairs):
        a = sim_rows[p]
        b = list_rows[p]
        if a < 0 or b < 0:
            continue
        hv = np.empty(k, np.float64)
        hc = np.empty(k, np.int64)
        size = 0
        i, i_end = s_indptr[a], s_indptr[a + 1]
        j, j_end = r_indptr[b], r_indptr[b + 1]
        while i < i_end and j < j_end:
            ci = s_indices[i]
            cj = r_indices[j]
            if ci == cj:
                # heap on similarity; the column slot stores the position of the rating
                size = _heap_push(hv, hc, size, k, s_data[i], -j)
                i += 1
                j += 1
            elif ci < cj:
                i += 1
            else:
                j += 1
        s_num = 0.0
        s_den = 0.0
        for t in range(size):
            s_num += hv[t] * r_data[-hc[t]]
            s_den += hv[t]
        num[p] = s_num
        den[p] = s_den
        used[p] = size
    return num, den, used


def n_threads() -> int:
    return int(numba.get_num_threads())
