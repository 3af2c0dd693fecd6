"""Exact search by BLAS matrix products over item chunks: the reference every ANN is measured by.

Memory stays bounded for any catalogue that fits in RAM: scores are materialised one chunk of
items at a time (at most ``block`` floats) and merged into a running top-k.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tastebud.core.errors import ConfigError
from tastebud.core.topk import topk
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
    """Top-k of ``queries @ vectors.T`` restricted to ``allowed`` and without ``exclude``."""
    n_q = len(queries)
    ids = np.arange(len(vectors), dtype=np.int64) if allowed is None else allowed
    best_i = np.full((n_q, k), -1, np.int64)
    best_v = np.full((n_q, k), -np.inf, np.float32)
    chunk = max(1, block // max(1, n_q))
    for start in range(0, len(ids), chunk):
        sel = ids[start : start + chunk]
        sub = vectors[sel] if allowed is not None else vectors[start : start + chunk]
        scores = queries @ sub.T
        for row, ex in enumerate(exclude):
            if len(ex):
                pos = np.searchsorted(sel, ex)
                hit = (pos < len(sel)) & (sel[np.clip(pos, 0, len(sel) - 1)] == ex)
                scores[row, pos[hit]] = -np.inf
        li, lv = topk(scores, k)
        li = np.where(li >= 0, sel[np.clip(li, 0, None)], -1)
        lv = np.where(li >= 0, lv, -np.inf).astype(np.float32)
        merged_i = np.concatenate([best_i, li], axis=1)
        merged_v = np.concatenate([best_v, lv], axis=1)
        mi, mv = topk(np.where(merged_i >= 0, merged_v, -np.inf), k)
        best_i = np.where(mi >= 0, np.take_along_axis(merged_i, np.clip(mi, 0, None), axis=1), -1)
        best_v = np.where(mi >= 0, mv, -np.inf).astype(np.float32)
    scores_out = np.where(best_i >= 0, best_v, np.nan).astype(np.float32)
    return best_i, scores_out
