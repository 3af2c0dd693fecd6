"""The vector index protocol: nearest item vectors for a query vector, with filters.

"Precompute the item vectors, store them in a vector index, encode the user at query time, look
up the nearest items." Every backend answers the same call::

    idx, scores = index.search(queries, k, exclude=seen_per_query, allowed=subset)

``exclude`` drops items per query (the person's seen items); ``allowed`` restricts every query to
a subset of the catalogue (a category, what is in stock). Filters never cost results: when an
approximate backend returns fewer than ``k`` eligible items it searches wider and finally falls
back to an exact scan of the eligible items, so a query gets ``min(k, n_eligible)`` results.

Metrics: ``"ip"`` (inner product, what factor models score with) and ``"cosine"`` (vectors and
queries are normalised for you; FAISS users otherwise have to remember to).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from tastebud.core import persist
from tastebud.core.errors import ConfigError, DataError, ModelFormatError, NotFittedError

Metric = Literal["ip", "cosine"]
INDEX_KIND = "tastebud-vector-index"


class VectorIndex(ABC):
    """Base of every index backend: build from item vectors, search with filters, save, load."""

    backend: ClassVar[str] = ""
    mapped_files: ClassVar[tuple[str, ...]] = ()  # saved files the backend maps from disk, not reads

    def __init__(self, metric: Metric = "ip") -> None:
        if metric not in ("ip", "cosine"):
            raise ConfigError(f"metric must be 'ip' or 'cosine', got {metric!r}")
        self.metric = metric
        self.dim_: int | None = None
        self.n_: int = 0

    # ------------------------------------------------------------------ building
    def build(self, vectors: np.ndarray) -> VectorIndex:
        """Index ``vectors`` (n_items x dim); row ``i`` is item index ``i``. Returns self."""
        vecs = self._prepare(vectors, "vectors")
        if vecs.shape[0] == 0:
            raise DataError("vectors: cannot index an empty catalogue")
        self.dim_ = int(vecs.shape[1])
        self.n_ = int(vecs.shape[0])
        self._build(vecs)
        return self

    @abstractmethod
    def _build(self, vectors: np.ndarray) -> None: ...

    def _prepare(self, vectors: Any, what: str) -> np.ndarray:
        arr = np.asarray(vectors)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise DataError(f"{what} must be a 2-D array (rows x dim), got shape {arr.shape}")
        if arr.dtype.kind not in "fiu":
            raise DataError(f"{what} must be numeric, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise DataError(f"{what} contain NaN or infinite values")
        if self.metric == "cosine":
            norms = np.linalg.norm(arr, axis=1, keepdims=True)
            arr = arr / np.where(norms > 0, norms, 1.0)
            arr = np.ascontiguousarray(arr, dtype=np.float32)
        return arr

    def __len__(self) -> int:
        return self.n_

    @property
    def dim(self) -> int:
        self._check_built()
        return int(self.dim_)  # type: ignore[arg-type]

    def _check_built(self) -> None:
        if self.dim_ is None:
            raise NotFittedError(f"{type(self).__name__} is empty; call build(vectors) or load(dir) first")

    # ------------------------------------------------------------------ search
    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        exclude: Sequence[Any] | sp.spmatrix | np.ndarray | None = None,
        allowed: Sequence[int] | np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores per query, best first.

        ``exclude``: per-query item indices to drop (a list of arrays, a CSR matrix with one row
        per query, or one 1-D array applied to every query). ``allowed``: item indices every
        query is restricted to. Short rows are padded with index -1 and score NaN.
        """
        self._check_built()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        q = self._prepare(queries, "queries")
        if q.shape[1] != self.dim_:
            raise DataError(f"queries have dimension {q.shape[1]}, the index has {self.dim_}")
        excl = _exclusions(exclude, len(q), self.n_)
        allow = None
        if allowed is not None:
            allow = np.unique(np.asarray(allowed, dtype=np.int64).ravel())
            if len(allow) and (allow[0] < 0 or allow[-1] >= self.n_):
                raise DataError(f"allowed holds item indices outside 0..{self.n_ - 1}")
        return self._search(q, int(k), excl, allow)

    @abstractmethod
    def _search(
        self, queries: np.ndarray, k: int, exclude: list[np.ndarray], allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    # ------------------------------------------------------------------ persistence
    @abstractmethod
    def _payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
        """(manifest fields, arrays, extra files) that describe the built index."""

    @classmethod
    @abstractmethod
    def _from_payload(
        cls, manifest: dict[str, Any], arrays: dict[str, np.ndarray], extra: dict[str, bytes | Path]
    ) -> VectorIndex:
        """The index from its saved parts; files named in ``mapped_files`` come as their path."""

    def save(self, directory: str | Path) -> Path:
        """Write the index to ``directory`` atomically (npz / raw bytes + JSON manifest; no pickle)."""
        self._check_built()
        fields, arrays, extra = self._payload()
        manifest = {
            "kind": INDEX_KIND,
            "backend": self.backend,
            "metric": self.metric,
            "dim": self.dim_,
            "n": self.n_,
            **fields,
        }
        return persist.write_bundle(directory, manifest, arrays, extra)


def load_index(directory: str | Path, *, verify: bool = True) -> VectorIndex:
    """Load an index saved by :meth:`VectorIndex.save` (backend from the manifest).

    ``verify=False`` skips the files' SHA-256 check (see :func:`persist.read_bundle`)."""
    directory = Path(directory)
    manifest = persist.read_manifest(directory)
    if manifest.get("kind") != INDEX_KIND:
        raise ModelFormatError(f"{directory}: not a tastebud vector index folder")
    backend = manifest.get("backend")
    cls: type[VectorIndex]
    if backend == "exact":
        from tastebud.index.exact import ExactIndex

        cls = ExactIndex
    elif backend == "faiss":
        from tastebud.index.faiss import FaissIndex

        cls = FaissIndex
    else:
        raise ModelFormatError(f"{directory}: unknown index backend {backend!r}")
    manifest, arrays, extra = persist.read_bundle(directory, verify=verify, unread=cls.mapped_files)
    listed = manifest.get("files", {})
    files: dict[str, bytes | Path] = {**extra, **{n: directory / n for n in cls.mapped_files if n in listed}}
    index = cls._from_payload(manifest, arrays, files)
    index.dim_ = int(manifest["dim"])
    index.n_ = int(manifest["n"])
    return index


def make_index(spec: str = "HNSW32", metric: Metric = "ip", **params: Any) -> VectorIndex:
    """An index from a short description: ``"exact"`` or a FAISS factory string.

    ``"HNSW32"`` (the default: graph search, no training), ``"IVF4096,PQ16"`` (inverted lists
    with product quantisation, for tens of millions of items), ``"Flat"`` (FAISS brute force).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"index spec must be a non-empty string, got {spec!r}")
    if spec.strip().lower() == "exact":
        from tastebud.index.exact import ExactIndex

        return ExactIndex(metric=metric, **params)
    from tastebud.index.faiss import FaissIndex

    return FaissIndex(spec.strip(), metric=metric, **params)


def _exclusions(exclude: Any, n_queries: int, n_items: int) -> list[np.ndarray]:
    """Normalise the ``exclude`` argument to one sorted unique int64 array per query."""
    empty = np.empty(0, np.int64)
    if exclude is None:
        return [empty] * n_queries
    if sp.issparse(exclude):
        csr = sp.csr_matrix(exclude)
        if csr.shape[0] != n_queries:
            raise DataError(f"exclude has {csr.shape[0]} rows for {n_queries} queries")
        rows = [np.unique(csr.indices[csr.indptr[r] : csr.indptr[r + 1]].astype(np.int64)) for r in range(n_queries)]
    elif isinstance(exclude, np.ndarray) and exclude.ndim == 1 and exclude.dtype.kind in "iu":
        rows = [np.unique(exclude.astype(np.int64))] * n_queries
    else:
        rows = list(exclude)
        if len(rows) != n_queries:
            raise DataError(f"exclude has {len(rows)} entries for {n_queries} queries")
        rows = [np.unique(np.asarray(r, dtype=np.int64).ravel()) if r is not None else empty for r in rows]
    for r in rows:
        if len(r) and (r[0] < 0 or r[-1] >= n_items):
            raise DataError(f"exclude holds item indices outside 0..{n_items - 1}")
    return rows
