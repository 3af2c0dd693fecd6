"""Compiled inner loops of implicit ALS (Hu, Koren & Volinsky 2008).

Each row (a user, or an item when the matrix is transposed) minimises

    sum_i c_ui (p_ui - x_u . y_i)^2 + reg |x_u|^2,   p_ui = 1 where the row has item i, else 0,

whose normal equations are ``(Y^T Y + reg I + Y_u^T (C_u - I) Y_u) x_u = Y_u^T c_u``. Only the
row's own items change the left side from the shared ``A0 = Y^T Y + reg I``, so a row costs
O(nnz_u k) per matrix-vector product instead of O(n_items k^2).

* :func:`cg_rows` takes a few conjugate-gradient steps per row, warm-started from the row's
  previous vector (Takacs, Pilaszy & Tikk 2011, "Applications of the conjugate gradient method
  for implicit feedback collaborative filtering"), as implicit does: 3 steps per sweep are as
  good as an exact solve once the factors settle, at a fraction of the cost.
* :func:`exact_rows` solves each row exactly by Cholesky (fold-in, partial fits, tests).

Rows run in parallel with ``prange``; each row only writes its own vector, so the result does not
depend on the number of threads. ``cm1`` holds ``c_ui - 1`` for each stored entry (CSR order).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from tastebud.kernels._serial import serial_twin

# rows per parallel task of the exact solver: enough to amortise the scratch buffers
_CHUNK = 64
# Most rows one CG block holds. A block's dense products ``P A0`` are one BLAS matrix product; at
# most 2**18 multiply-adds each, the size below which OpenBLAS keeps a product on the calling
# thread (more would start BLAS threads inside every kernel thread).
_MAX_BLOCK = 32
_BLAS_ONE_THREAD = 1 << 18
# no block holds more than this share of a sweep's work, so that threads taking the next free block
# finish together on skewed rows and busy cores (16 blocks per thread on 16 threads)
_WORK_PARTS = 256


@intrinsic
def _fetch_add(typingctx, counter, delta):  # pragma: no cover - compiled
    """``counter[0] += delta`` atomically; returns the value before (hands out blocks to threads)."""
    sig = types.int64(counter, types.int64)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], arr, [zero])
        return builder.atomic_rmw("add", ptr, args[1], "monotonic")

    return sig, codegen


def block_width(k: int) -> int:
    """Rows per CG block for ``k`` factors (see ``_MAX_BLOCK``)."""
    return int(max(1, min(_MAX_BLOCK, _BLAS_ONE_THREAD // max(1, k * k))))


def cg_plan(indptr: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut the rows into blocks of about equal work; returns ``(bounds, order)``.

    A row costs about ``nnz + k / 4`` units (the sparse products are ``2 k`` flops per stored
    entry, the dense ``A0 p`` ``k^2`` flops at BLAS speed). Blocks hold at most
    :func:`block_width` rows and at most ``1 / _WORK_PARTS`` of the total work (a single heavier
    row gets a block of its own), so threads that take the next free block (largest first) finish
    together even on skewed rows. The plan depends on the data and ``k`` only, never on the
    threads or the machine: BLAS may round a row differently in another block, so a fixed plan is
    what makes the factors the same on any number of threads.
    """
    n = len(indptr) - 1
    if n == 0:
        return np.zeros(1, np.int64), np.zeros(0, np.int64)
    cost = np.diff(indptr).astype(np.float64) + (k / 4.0 + 1.0)
    cum = np.concatenate([[0.0], np.cumsum(cost)])
    by_cost = np.searchsorted(cum, cum[-1] * np.arange(1, _WORK_PARTS) / _WORK_PARTS, side="left")
    by_rows = np.arange(0, n, block_width(k))
    bounds = np.unique(np.concatenate([by_rows, by_cost, [n]])).astype(np.int64)
    bounds = bounds[(bounds >= 0) & (bounds <= n)]
    if bounds[0] != 0:
        bounds = np.concatenate([[0], bounds])
    work = cum[bounds[1:]] - cum[bounds[:-1]]
    order = np.argsort(-work, kind="stable").astype(np.int64)
    return bounds, order


def cg_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    cm1: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    A0: np.ndarray,
    cg_steps: int,
    extra_reg: np.ndarray,
    plan: tuple[np.ndarray, np.ndarray] | None = None,
) -> int:
    """Update every row of ``X`` in place by ``cg_steps`` conjugate-gradient steps.

    ``A0`` is ``Y^T Y + reg I`` (float32); ``extra_reg[u]`` is added to row ``u``'s diagonal on
    top of it (frequency-scaled regularisation; an empty array for none). ``plan`` is
    :func:`cg_plan`'s result (made here when missing; a fit makes it once). Returns the number
    of rows that came out non-finite (divergence), so the caller need not scan ``X`` again.
    """
    k = X.shape[1]
    workers = numba.get_num_threads()
    if plan is None:
        plan = cg_plan(indptr, k)
    bounds, order = plan
    return int(
        _cg_blocks(
            np.asarray(indptr, np.int64),
            np.asarray(indices, np.int32),
            np.asarray(cm1, np.float32),
            X,
            np.ascontiguousarray(Y, np.float32),
            np.ascontiguousarray(A0, np.float32),
            int(cg_steps),
            np.asarray(extra_reg, np.float32),
            bounds,
            order,
            np.zeros(1, np.int64),
            workers,
            block_width(k),
        )
    )


# fastmath without "nnan"/"ninf": the kernel reports non-finite rows, which those flags would hide
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(parallel=True, fastmath=_FAST, cache=True)
def _cg_blocks(
    indptr, indices, cm1, X, Y, A0, cg_steps, extra_reg, bounds, order, counter, workers, width
):  # pragma: no cover - compiled
    """:func:`cg_rows`' kernel: ``workers`` threads take blocks in ``order`` until none is left.

    A block's rows run their CG steps in lockstep, so the dense part ``A0 p`` of all of them is
    one matrix product (BLAS, several times faster than one matrix-vector product per row); the
    sparse part ``sum_i (c_ui - 1) (y_i . p) y_i`` runs row by row, while the row's item vectors
    are in cache. Each row's arithmetic is the same whatever its block, so the result does not
    depend on the schedule.
    """
    k = X.shape[1]
    n_blocks = order.shape[0]
    bad = np.zeros(workers, np.int64)
    for w in prange(workers):
        xb = np.empty((width, k), np.float32)
        rb = np.empty((width, k), np.float32)
        pb = np.empty((width, k), np.float32)
        ab = np.empty((width, k), np.float32)
        rs = np.empty(width, np.float32)
        live = np.empty(width, np.bool_)
        while True:
            j = _fetch_add(counter, 1)
            if j >= n_blocks:
                break
            b = order[j]
            bad[w] += _cg_block(
                indptr, indices, cm1, X, Y, A0, cg_steps, extra_reg, bounds[b], bounds[b + 1],
                xb, rb, pb, ab, rs, live,
            )  # fmt: skip
    return bad.sum()


@njit(fastmath=_FAST, cache=True)
def _cg_block(
    indptr, indices, cm1, X, Y, A0, cg_steps, extra_reg, lo, hi, xb, rb, pb, ab, rs, live
):  # pragma: no cover - compiled
    """CG steps for rows ``lo:hi`` of ``X`` (see :func:`_cg_blocks`); returns the non-finite rows."""
    k = X.shape[1]
    nb = hi - lo
    has_extra = extra_reg.shape[0] > 0
    for j in range(nb):
        for f in range(k):
            xb[j, f] = X[lo + j, f]
    # r = b - A x, with A x = A0 x + sum_i (c-1) (y_i . x) y_i and b = sum_i c y_i
    np.dot(xb[:nb], A0, ab[:nb])
    n_live = 0
    for j in range(nb):
        u = lo + j
        start = indptr[u]
        end = indptr[u + 1]
        live[j] = False
        if start == end:
            for f in range(k):
                xb[j, f] = 0.0
                pb[j, f] = 0.0
            continue
        lam = extra_reg[u] if has_extra else np.float32(0.0)
        for f in range(k):
            rb[j, f] = -ab[j, f] - lam * xb[j, f]
        for idx in range(start, end):
            i = indices[idx]
            c1 = cm1[idx]
            yx = np.float32(0.0)
            for f in range(k):
                yx += Y[i, f] * xb[j, f]
            coef = (c1 + np.float32(1.0)) - c1 * yx
            for f in range(k):
                rb[j, f] += coef * Y[i, f]
        rsold = np.float32(0.0)
        for f in range(k):
            pb[j, f] = rb[j, f]
            rsold += rb[j, f] * rb[j, f]
        rs[j] = rsold
        if rsold < 1e-20:  # already solved (a NaN goes on, so that divergence shows)
            for f in range(k):
                pb[j, f] = 0.0
        else:
            live[j] = True
            n_live += 1
    for _ in range(cg_steps):
        if n_live == 0:
            break
        np.dot(pb[:nb], A0, ab[:nb])
        for j in range(nb):
            if not live[j]:
                continue
            u = lo + j
            lam = extra_reg[u] if has_extra else np.float32(0.0)
            for f in range(k):
                ab[j, f] += lam * pb[j, f]
            for idx in range(indptr[u], indptr[u + 1]):
                i = indices[idx]
                yp = np.float32(0.0)
                for f in range(k):
                    yp += Y[i, f] * pb[j, f]
                coef = cm1[idx] * yp
                for f in range(k):
                    ab[j, f] += coef * Y[i, f]
            pap = np.float32(0.0)
            for f in range(k):
                pap += pb[j, f] * ab[j, f]
            if pap <= 0.0:  # finished rows get a zero direction: no work, no NaN in the product
                live[j] = False
                n_live -= 1
                for f in range(k):
                    pb[j, f] = 0.0
                continue
            step = rs[j] / pap
            rsnew = np.float32(0.0)
            for f in range(k):
                xb[j, f] += step * pb[j, f]
                rb[j, f] -= step * ab[j, f]
                rsnew += rb[j, f] * rb[j, f]
            if rsnew < 1e-20:
                live[j] = False
                n_live -= 1
                for f in range(k):
                    pb[j, f] = 0.0
                continue
            beta = rsnew / rs[j]
            for f in range(k):
                pb[j, f] = rb[j, f] + beta * pb[j, f]
            rs[j] = rsnew
    bad = 0
    for j in range(nb):
        ok = True
        for f in range(k):
            v = xb[j, f]
            X[lo + j, f] = v
            if not np.isfinite(v):
                ok = False
        if not ok:
            bad += 1
    return bad


@njit(fastmath=False, cache=True)
def _solve_one(indptr, indices, cm1, u, Y, A0, A, b, x, lam):  # pragma: no cover - compiled
    """Exact solution of one row's normal equations (Cholesky, float64), into ``x``."""
    k = A0.shape[0]
    for f in range(k):
        b[f] = 0.0
        for g in range(k):
            A[f, g] = A0[f, g]
        A[f, f] += lam
    for idx in range(indptr[u], indptr[u + 1]):
        i = indices[idx]
        c1 = cm1[idx]
        for f in range(k):
            yf = Y[i, f]
            b[f] += (c1 + 1.0) * yf
            w = c1 * yf
            for g in range(f + 1):
                A[f, g] += w * Y[i, g]
    # in-place Cholesky of the lower triangle: A = L L^T
    for j in range(k):
        s = A[j, j]
        for m in range(j):
            s -= A[j, m] * A[j, m]
        if s <= 0.0:
            s = 1e-12
        d = np.sqrt(s)
        A[j, j] = d
        for i in range(j + 1, k):
            t = A[i, j]
            for m in range(j):
                t -= A[i, m] * A[j, m]
            A[i, j] = t / d
    # L z = b, then L^T x = z
    for i in range(k):
        t = b[i]
        for m in range(i):
            t -= A[i, m] * b[m]
        b[i] = t / A[i, i]
    for i in range(k - 1, -1, -1):
        t = b[i]
        for m in range(i + 1, k):
            t -= A[m, i] * x[m]
        x[i] = t / A[i, i]


@njit(parallel=True, cache=True)
def exact_rows(indptr, indices, cm1, rows, X, Y, A0, extra_reg):  # pragma: no cover - compiled
    """Solve the rows listed in ``rows`` exactly; row ``rows[j]`` of the CSR goes to ``X[j]``."""
    k = A0.shape[0]
    n = rows.shape[0]
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for chunk in prange(n_chunks):
        A = np.empty((k, k), np.float64)
        b = np.empty(k, np.float64)
        x = np.empty(k, np.float64)
        for j in range(chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)):
            u = rows[j]
            if indptr[u] == indptr[u + 1]:
                for f in range(k):
                    X[j, f] = 0.0
                continue
            lam = extra_reg[u] if extra_reg.shape[0] > 0 else 0.0
            _solve_one(indptr, indices, cm1, u, Y, A0, A, b, x, lam)
            for f in range(k):
                X[j, f] = x[f]


exact_rows_serial = serial_twin(exact_rows)  # one fold-in per request


def gramian(Y: np.ndarray, reg: float, block: int = 2048) -> np.ndarray:
    """``Y^T Y + reg I`` in float64, for the exact solver (cast down for CG).

    Computed by :func:`_gram_parts` on every thread, in blocks of ``block`` rows summed in a fixed
    order, so it is the same on any number of threads; no float64 copy of ``Y`` is made (a 1M x 64
    factor matrix would be a 512 MB allocation)."""
    n, k = Y.shape
    bounds = np.unique(np.concatenate([np.arange(0, n, max(1, int(block))), [n]])).astype(np.int64)
    parts = _gram_parts(np.ascontiguousarray(Y, np.float32), bounds)
    A0 = parts.sum(axis=0) if len(parts) else np.zeros((k, k), np.float64)
    A0 = np.tril(A0) + np.tril(A0, -1).T
    A0[np.diag_indices_from(A0)] += reg
    return A0


@njit(parallel=True, fastmath={"nsz", "arcp", "contract", "reassoc"}, cache=True)
def _gram_parts(Y, bounds):  # pragma: no cover - compiled
    """The lower triangle of ``Y[lo:hi]^T Y[lo:hi]`` (float64) for each block ``lo:hi`` of rows.

    Four rows per pass, so each update of the triangle adds four products (the triangle stays in
    cache, and the loop runs at several times the speed of one row at a time)."""
    k = Y.shape[1]
    n_parts = bounds.shape[0] - 1
    parts = np.zeros((n_parts, k, k), np.float64)
    for part in prange(n_parts):
        G = parts[part]
        y0 = np.empty(k, np.float64)
        y1 = np.empty(k, np.float64)
        y2 = np.empty(k, np.float64)
        y3 = np.empty(k, np.float64)
        r = bounds[part]
        hi = bounds[part + 1]
        while r + 4 <= hi:
            for f in range(k):
                y0[f] = Y[r, f]
                y1[f] = Y[r + 1, f]
                y2[f] = Y[r + 2, f]
                y3[f] = Y[r + 3, f]
            for f in range(k):
                a0 = y0[f]
                a1 = y1[f]
                a2 = y2[f]
                a3 = y3[f]
                for g in range(f + 1):
                    G[f, g] += a0 * y0[g] + a1 * y1[g] + a2 * y2[g] + a3 * y3[g]
            r += 4
        while r < hi:
            for f in range(k):
                y0[f] = Y[r, f]
            for f in range(k):
                a0 = y0[f]
                for g in range(f + 1):
                    G[f, g] += a0 * y0[g]
            r += 1
    return parts
