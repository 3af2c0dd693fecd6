"""Vector indexes: exact (BLAS, chunked) and FAISS (HNSW, IVF-PQ), one interface with filters."""

from __future__ import annotations

from tastebud.index.base import Metric, VectorIndex, load_index, make_index
from tastebud.index.exact import ExactIndex
from tastebud.index.vectors import FactorView, factor_view

__all__ = ["ExactIndex", "FactorView", "Metric", "VectorIndex", "factor_view", "load_index", "make_index"]
