"""EASE: a shallow linear autoencoder with a closed form (Steck, WWW 2019).

"Embarrassingly Shallow Autoencoders for Sparse Data" learns an item x item weight matrix ``B``
minimising ``|X - X B|_F^2 + lambda |B|_F^2`` subject to ``diag(B) = 0`` (an item may not
predict itself). The solution is closed form:

    P = (X^T X + lambda I)^-1,    B = I - P diag(1 / diag(P))    (so B_ij = -P_ij / P_jj, B_jj = 0)

and a user's scores are ``x_u B``. The price is a dense n_items x n_items matrix, so the fit
checks the memory it needs against a budget before allocating anything.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from tastebud.core.base import Recommender, positive
from tastebud.core.errors import ConfigError
from tastebud.core.registry import register
from tastebud.core.results import Explanation
from tastebud.core.space import Dist, Float, LogFloat
from tastebud.data.interactions import Interactions
from tastebud.models._common import check_values

# dense float64 Gram/inverse (8 bytes) + float32 weights kept (4 bytes) per item pair
_BYTES_PER_PAIR = 12
# the largest matrix side any single BLAS/LAPACK call gets in the fit (see _spd_inverse_upper)
_TILE = 2048


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux, else physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def ease_bytes(n_items: int) -> int:
    """Peak bytes EASE needs for ``n_items`` (dense Gram/inverse in float64 + float32 weights)."""
    return int(n_items) * int(n_items) * _BYTES_PER_PAIR


@register("ease")
class EASE(Recommender):
    """Item-to-item linear model with a closed-form fit; strong on small and medium catalogues.

    ``reg`` is Steck's lambda (the L2 penalty; 100 to 1000 on MovieLens-sized data).
    ``dropout`` > 0 gives the full-rank EDLAE of Steck ("Autoencoders that don't overfit towards
    the identity", NeurIPS 2020): the penalty on item j's weights grows with its frequency,
    ``lambda + p / (1 - p) * (X^T X)_jj``.
    ``max_memory_gb`` caps the dense matrices (None: half the memory available when fitting);
    above it the fit stops with a ConfigError before allocating.
    """

    history_preference: ClassVar[int | None] = 4
    demo_params: ClassVar[dict[str, Any] | None] = {}
    lab_default: ClassVar[bool] = True

    supports_history = True
    fast_params: ClassVar[dict[str, Any]] = {"reg": 50.0}
    search_space: ClassVar[dict[str, Dist]] = {"reg": LogFloat(1.0, 5000.0), "dropout": Float(0.0, 0.5)}

    def __init__(self, reg: float = 300.0, dropout: float = 0.0, max_memory_gb: float | None = None) -> None:
        self.reg = reg
        self.dropout = dropout
        self.max_memory_gb = max_memory_gb

    def _validate_params(self) -> None:
        positive("EASE", reg=self.reg)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"EASE: dropout must be in [0, 1), got {self.dropout!r}")
        if self.max_memory_gb is not None:
            positive("EASE", max_memory_gb=self.max_memory_gb)

    def _budget(self) -> int:
        if self.max_memory_gb is not None:
            return int(float(self.max_memory_gb) * (1 << 30))
        return available_memory() // 2

    def _fit(self, data: Interactions) -> None:
        n = data.n_items
        need, budget = ease_bytes(n), self._budget()
        if need > budget:
            raise ConfigError(
                f"EASE needs about {need / (1 << 30):.1f} GB for a dense {n:,} x {n:,} item matrix, over the "
                f"memory budget of {budget / (1 << 30):.1f} GB (max_memory_gb). Use 'ials' or 'itemknn' for "
                "a catalogue this large, restrict the items (for example to the most popular ones), or raise "
                "max_memory_gb if the machine has the memory"
            )
        X = sp.csr_matrix(self.user_items_, dtype=np.float64)
        check_values(X.data, "interaction values")
        G = _gram(X)
        # EDLAE (Steck 2020): dropout p adds p / (1 - p) * diag(X^T X) to the diagonal penalty
        G[np.diag_indices(n)] += float(self.reg) + self.dropout / (1.0 - self.dropout) * np.diag(G)
        P = _spd_inverse_upper(G, self.reg)
        # the inverse is in the upper triangle only: read each row of the symmetric P from it, in blocks
        diag = np.diag(P).copy()
        B = np.empty((n, n), np.float32)
        step = max(1, (64 << 20) // (8 * max(1, n)))
        cols = np.arange(n)
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            upper = cols[None, :] >= np.arange(r0, r1)[:, None]
            block = np.where(upper, P[r0:r1, :], P[:, r0:r1].T)
            B[r0:r1] = block / -diag[None, :]
        np.fill_diagonal(B, 0.0)
        self.weights_ = B

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        B = self.weights_ if item_idx is None else self.weights_[:, item_idx]
        return np.asarray(self.user_items_[user_idx] @ B)

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, np.float32)
        check_values(values, "history values")
        x = np.zeros(self.n_items, np.float32)
        np.add.at(x, np.asarray(item_idx, np.int64), values)
        return x @ self.weights_

    def _similar(self, item_idx: np.ndarray) -> np.ndarray:
        # row j of B says how much having item j raises every other item's score
        return self.weights_[np.asarray(item_idx, np.int64)]

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        """The score ``sum_j x_uj B_ji`` split into its history items' terms (exact)."""
        history = sp.csr_matrix(history)
        hist, vals = history.indices, history.data.astype(np.float32)
        out = []
        for i in item_idx:
            if len(hist) == 0:
                out.append(Explanation("no history to explain from"))
                continue
            contrib = vals * self.weights_[hist, i]
            top = np.argsort(-contrib, kind="stable")[:5]
            ids = self.items_.to_ids(hist[top])
            out.append(
                Explanation(
                    f"because of {', '.join(map(str, ids[:3]))} in your history (total {contrib.sum():.3f})",
                    [(x, float(w)) for x, w in zip(ids, contrib[top], strict=False)],
                )
            )
        return out


def _gram(X: sp.csr_matrix) -> np.ndarray:
    """Dense ``X^T X`` (float64, Fortran order) as a sparse product, one block of item columns at a time.

    No BLAS: the sparse product costs the sum of squared user history lengths instead of a dense
    n_users x n^2 pass, and a block's sparse result never holds more than n x step entries.
    """
    n = X.shape[1]
    Xt, Xc = X.T.tocsr(), X.tocsc()
    G = np.empty((n, n), np.float64, order="F")
    step = max(1, (64 << 20) // (8 * max(1, n)))
    for c0 in range(0, n, step):
        c1 = min(n, c0 + step)
        G[:, c0:c1] = (Xt @ Xc[:, c0:c1]).toarray()
    return G


def _spd_inverse_upper(A: np.ndarray, reg: float, tile: int = _TILE) -> np.ndarray:
    """Inverse of the symmetric positive definite ``A`` in place, in its upper triangle (the lower one is left as is).

    LAPACK's ``dpotrf`` + ``dpotri`` on the whole matrix, tile by tile: Cholesky ``A = U^T U``, then
    ``V = U^-1``, then ``P = V V^T``, each a loop over ``tile`` x ``tile`` blocks. No BLAS or LAPACK
    call sees a dimension above ``tile``, whatever the catalogue: OpenBLAS's multithreaded level-3
    drivers (syrk, potrf, getrf) overflow a packing buffer on large matrices with its AVX-512 kernels
    and kill the process (docs/ease.md).
    """
    n = A.shape[0]
    bounds = list(range(0, n, tile)) + [n]
    T = len(bounds) - 1
    t = [slice(bounds[i], bounds[i + 1]) for i in range(T)]
    lapack, blas = scipy.linalg.lapack, scipy.linalg.blas
    # 1. Cholesky, right-looking: U_kk = chol(A_kk), U_kj = U_kk^-T A_kj, A_ij -= U_ki^T U_kj
    for k in range(T):
        u, info = lapack.dpotrf(A[t[k], t[k]], lower=False, clean=True)
        if info != 0:
            raise ConfigError(
                f"EASE: X^T X + reg I is not positive definite (LAPACK info {info}); raise reg (now {reg})"
            )
        A[t[k], t[k]] = u
        for j in range(k + 1, T):
            A[t[k], t[j]] = blas.dtrsm(1.0, u, A[t[k], t[j]], side=0, lower=0, trans_a=1)
        for i in range(k + 1, T):
            for j in range(i, T):
                A[t[i], t[j]] -= A[t[k], t[i]].T @ A[t[k], t[j]]
    # 2. V = U^-1 (upper), a block column at a time: V_ij = -(sum_{k=i..j-1} V_ik U_kj) V_jj
    for j in range(T):
        v, info = lapack.dtrtri(A[t[j], t[j]], lower=False)
        if info != 0:
            raise ConfigError(f"EASE: inverting X^T X + reg I failed (LAPACK info {info}); raise reg (now {reg})")
        for i in range(j):  # ascending: W_i reads U_kj for k >= i, not yet overwritten
            w = A[t[i], t[i]] @ A[t[i], t[j]]
            for k in range(i + 1, j):
                w += A[t[i], t[k]] @ A[t[k], t[j]]
            A[t[i], t[j]] = -(w @ v)
        A[t[j], t[j]] = np.triu(v)
    # 3. P = V V^T (upper): P_ij = sum_{k>=j} V_ik V_jk^T, by block rows ascending, columns ascending
    for i in range(T):
        for j in range(i, T):
            p = A[t[i], t[j]] @ A[t[j], t[j]].T
            for k in range(j + 1, T):
                p += A[t[i], t[k]] @ A[t[j], t[k]].T
            A[t[i], t[j]] = p
    return A


__all__ = ["EASE", "available_memory", "ease_bytes"]
