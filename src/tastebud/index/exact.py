"""Exact search by BLAS matrix products over item chunks: the reference every ANN is measured by.

Memory stays bounded for any catalogue that fits in RAM: scores are materialised one chunk of
items at a time (at most ``block`` floats) and merged into a running top-k.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tastebud.core import ranking
from tastebud.core.errors import ConfigError
from tastebud.index.base import Metric, VectorIndex


class ExactIndex(VectorIndex):
    """Brute-force inner product (or cosine) search; exact, deterministic, ties to the lower index."""

    backend = "exact"

    def __init__(self, metric: Metric = "ip", block: int = 16_000_000) -> None:
        super().__init__(metric)
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ConfigError(f"block must be a positive integer, got {block!r}")
        self.block = block

    def _build(self, vectors: np.ndarray) -> None:
        self.vectors_ = vectors

    def _search(
        self, queries: np.ndarray, k: int, exclude: list[np.ndarray], allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return exact_search(self.vectors_, queries, k, exclude, allowed, self.block)

    def _payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
        return {"block": self.block}, {"vectors": self.vectors_}, {}

    @classmethod
    def _from_payload(
        cls, manifest: dict[str, Any], arrays: dict[str, np.ndarray], extra: dict[str, bytes | Path]
    ) -> ExactIndex:
        index = cls(metric=manifest["metric"], block=int(manifest.get("block", 16_000_000)))
        index.vectors_ = np.ascontiguousarray(arrays["vectors"], dtype=np.float32)
        return index


def exact_search(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    exclude: list[np.ndarray],
    allowed: np.ndarray | None,
    block: int = 16_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of ``queries @ vectors.T`` restricted to ``allowed`` (sorted) and without ``exclude``.

    Each chunk of items is ranked with its exclusions fused in and merged into the running best
    (:mod:`tastebud.core.ranking`); chunks go in index order, so ties go to the lower index.
    """
    n_q = len(queries)
    ids = np.arange(len(vectors), dtype=np.int64) if allowed is None else allowed
    best_i = np.full((n_q, k), -1, np.int64)
    best_v = np.full((n_q, k), np.nan, np.float32)
    chunk = max(1, block // max(1, n_q))
    for start in range(0, len(ids), chunk):
        sel = ids[start : start + chunk]
        sub = vectors[sel] if allowed is not None else vectors[start : start + chunk]
        li, lv = ranking.rank(queries @ sub.T, k, exclude=exclude, columns=sel)
        best_i, best_v = ranking.merge(best_i, best_v, li, lv, k)
    return best_i, best_v
