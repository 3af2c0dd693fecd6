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

import numpy as np
from numba import njit, prange

from tastebud.kernels._serial import serial_twin

# rows per parallel task: enough to amortise the scratch buffers, small enough to balance
_CHUNK = 64


@njit(parallel=True, fastmath=True, cache=True)
def cg_rows(indptr, indices, cm1, X, Y, A0, cg_steps, extra_reg):  # pragma: no cover - compiled
    """Update every row of ``X`` in place by ``cg_steps`` conjugate-gradient steps.

    ``extra_reg[u]`` is added to row ``u``'s diagonal on top of ``A0`` (frequency-scaled
    regularisation; an empty array for none).
    """
    n, k = X.shape
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for chunk in prange(n_chunks):
        x = np.empty(k, np.float32)
        r = np.empty(k, np.float32)
        p = np.empty(k, np.float32)
        ap = np.empty(k, np.float32)
        for u in range(chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)):
            start = indptr[u]
            end = indptr[u + 1]
            if start == end:
                for f in range(k):
                    X[u, f] = 0.0
                continue
            for f in range(k):
                x[f] = X[u, f]
            lam = extra_reg[u] if extra_reg.shape[0] > 0 else np.float32(0.0)
            # r = b - A x, with A x = A0 x + sum_i (c-1) (y_i . x) y_i and b = sum_i c y_i
            for f in range(k):
                acc = np.float32(0.0)
                for g in range(k):
                    acc += A0[f, g] * x[g]
                r[f] = -acc - lam * x[f]
            for idx in range(start, end):
                i = indices[idx]
                c1 = cm1[idx]
                yx = np.float32(0.0)
                for f in range(k):
                    yx += Y[i, f] * x[f]
                coef = (c1 + np.float32(1.0)) - c1 * yx
                for f in range(k):
                    r[f] += coef * Y[i, f]
            rsold = np.float32(0.0)
            for f in range(k):
                p[f] = r[f]
                rsold += r[f] * r[f]
            if rsold < 1e-20:
                continue
            for _ in range(cg_steps):
                for f in range(k):
                    acc = np.float32(0.0)
                    for g in range(k):
                        acc += A0[f, g] * p[g]
                    ap[f] = acc + lam * p[f]
                for idx in range(start, end):
                    i = indices[idx]
                    yp = np.float32(0.0)
                    for f in range(k):
                        yp += Y[i, f] * p[f]
                    coef = cm1[idx] * yp
                    for f in range(k):
                        ap[f] += coef * Y[i, f]
                pap = np.float32(0.0)
                for f in range(k):
                    pap += p[f] * ap[f]
                if pap <= 0.0:
                    break
                step = rsold / pap
                rsnew = np.float32(0.0)
                for f in range(k):
                    x[f] += step * p[f]
                    r[f] -= step * ap[f]
                    rsnew += r[f] * r[f]
                if rsnew < 1e-20:
                    break
                beta = rsnew / rsold
                for f in range(k):
                    p[f] = r[f] + beta * p[f]
                rsold = rsnew
            for f in range(k):
                X[u, f] = x[f]


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


def gramian(Y: np.ndarray, reg: float, block: int = 32_768) -> np.ndarray:
    """``Y^T Y + reg I`` by BLAS, in float64 for the exact solver (cast down for CG).

    Summed over blocks of rows cast into one small float64 buffer: a whole float64 copy of a
    1M x 64 factor matrix would be a 512 MB allocation, paid again at every model load."""
    k = Y.shape[1]
    A0 = np.zeros((k, k), np.float64)
    buf = np.empty((min(block, len(Y)), k), np.float64)
    for start in range(0, len(Y), block):
        part = buf[: min(block, len(Y) - start)]
        np.copyto(part, Y[start : start + block])
        A0 += part.T @ part
    A0[np.diag_indices_from(A0)] += reg
    return A0
