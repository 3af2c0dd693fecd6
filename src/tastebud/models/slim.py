"""SLIM: sparse linear item-item model learned by elastic net (Ning & Karypis, ICDM 2011).

"SLIM: Sparse Linear Methods for Top-N Recommender Systems" learns an item x item matrix ``W``
with a zero diagonal and non-negative entries such that ``X W`` reconstructs ``X``:

    min_W  1/2 |X - X W|_F^2 + l2/2 |W|_F^2 + l1 |W|_1,    W >= 0,  diag(W) = 0.

The problem splits into one elastic net per item (column of W), solved here by coordinate
descent on the Gram matrix ``X^T X`` (``kernels.slim``), items in parallel on every core. Each
column keeps its ``neighbors`` largest weights, as in Dacrema et al.'s reference evaluation. A
user's scores are ``x_u W``; a person outside the model is scored from a history by the same
product (fold-in), and an explanation splits the score exactly into its history items' terms.

The dense Gram costs ``8 n_items^2`` bytes, so the fit checks its memory budget before
allocating, like EASE.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import non_negative, positive
from tastebud.core.errors import ConfigError
from tastebud.core.registry import register
from tastebud.core.space import Dist, Int, LogFloat
from tastebud.data.interactions import Interactions
from tastebud.models._common import check_values, numba_threads
from tastebud.models._item_item import SparseItemItem
from tastebud.models.ease import available_memory

# items fitted per call of the compiled kernel (progress and memory of the output stay bounded)
_ITEMS_PER_CALL = 512


def slim_bytes(n_items: int) -> int:
    """Peak bytes of the fit: the dense float64 Gram matrix."""
    return int(n_items) * int(n_items) * 8


@register("slim")
class SLIM(SparseItemItem):
    """Sparse item-item regression with an elastic net; strong top-N baseline, exact explanations.

    ``reg`` is the L2 penalty (the paper's beta), ``l1_penalty`` the L1 penalty (lambda) that makes W
    sparse; ``neighbors`` caps each item's kept weights; ``epochs`` bounds the coordinate-descent
    sweeps per item, which stop earlier once no weight moves by more than ``tol`` of the largest.
    ``max_memory_gb`` caps the dense Gram (None: half the memory available when fitting).
    """

    fast_params: ClassVar[dict[str, Any]] = {"neighbors": 20, "epochs": 20}
    search_space: ClassVar[dict[str, Dist]] = {
        "reg": LogFloat(1e-3, 100.0),
        "l1_penalty": LogFloat(1e-4, 10.0),
        "neighbors": Int(20, 500, log=True),
    }

    def __init__(
        self,
        reg: float = 1.0,
        l1_penalty: float = 0.5,
        neighbors: int = 100,
        epochs: int = 50,
        tol: float = 1e-4,
        threads: int = 0,
        max_memory_gb: float | None = None,
    ) -> None:
        self.reg = reg
        self.l1_penalty = l1_penalty
        self.neighbors = neighbors
        self.epochs = epochs
        self.tol = tol
        self.threads = threads
        self.max_memory_gb = max_memory_gb

    def _validate_params(self) -> None:
        positive("SLIM", neighbors=self.neighbors, epochs=self.epochs, tol=self.tol)
        non_negative("SLIM", reg=self.reg, l1_penalty=self.l1_penalty, threads=self.threads)
        if self.reg == 0 and self.l1_penalty == 0:
            raise ConfigError("SLIM: reg and l1_penalty are both 0; W = I minus its diagonal is not unique, set one > 0")
        if self.max_memory_gb is not None:
            positive("SLIM", max_memory_gb=self.max_memory_gb)

    def _fit(self, data: Interactions) -> None:
        from tastebud.kernels.slim import slim_columns  # numba: compiled on first use

        n = data.n_items
        need = slim_bytes(n)
        budget = (
            int(float(self.max_memory_gb) * (1 << 30)) if self.max_memory_gb is not None else available_memory() // 2
        )
        if need > budget:
            raise ConfigError(
                f"SLIM needs about {need / (1 << 30):.1f} GB for a dense {n:,} x {n:,} Gram matrix, over the memory "
                f"budget of {budget / (1 << 30):.1f} GB (max_memory_gb). Use 'rp3beta', 'itemknn' or 'ials' for a "
                "catalogue this large, or raise max_memory_gb if the machine has the memory"
            )
        X = sp.csr_matrix(self.user_items_, dtype=np.float64)
        check_values(X.data, "interaction values")
        G = np.ascontiguousarray((X.T @ X).toarray())
        keep = min(int(self.neighbors), max(1, n - 1))
        idx = np.empty((n, keep), np.int64)
        val = np.empty((n, keep), np.float64)
        with numba_threads(int(self.threads)):
            for s in range(0, n, _ITEMS_PER_CALL):
                targets = np.arange(s, min(n, s + _ITEMS_PER_CALL), dtype=np.int64)
                slim_columns(
                    G,
                    targets,
                    float(self.l1_penalty),
                    float(self.reg),
                    int(self.epochs),
                    float(self.tol),
                    keep,
                    idx[s : s + len(targets)],
                    val[s : s + len(targets)],
                )
        # row t of idx holds column t of W: build W^T as CSR, then transpose to W (item -> item)
        mask = idx >= 0
        columns = np.repeat(np.arange(n), mask.sum(axis=1))
        W = sp.csr_matrix((val[mask].astype(np.float32), (idx[mask], columns)), shape=(n, n))
        W.sort_indices()
        self.weights_ = W


__all__ = ["SLIM", "slim_bytes"]
