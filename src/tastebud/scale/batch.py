"""Batch scoring with Ray Data: top-k for every user and the catalogue's item vectors as Parquet.

Offline serving at scale precomputes: every night the top-k list of every user is written as
Parquet partitions a key-value store or warehouse loads, and the item vectors go to a vector
index for online retrieval. Here Ray Data splits the user (or item) index range into blocks;
a pool of ``workers`` actors holds the fitted model (shipped once through the object store) and
runs the model's own batch path (``rank_rows``: the same scores, exclusions and tie rule as
:meth:`Recommender.recommend`), and the blocks are written as Parquet files under one directory.
:func:`build_index` streams the exported vectors back, fragment by fragment, into a FAISS (or
exact) index from :mod:`tastebud.index`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from tastebud.core.errors import ConfigError, NotSupportedError
from tastebud.scale.session import ray_session

#: Logical CPUs each scoring actor reserves: half a CPU, so the Parquet write tasks (one CPU
#: each) always find room beside ``workers`` actors on a ``workers``-CPU instance instead of
#: waiting forever. The actors still use whole cores when they run (the reservation is logical).
ACTOR_CPUS = 0.5

#: Parquet schema of the top-k output: one row per (user, rank).
TOPK_COLUMNS = ("user", "rank", "item", "score")


def _ids(values: np.ndarray) -> np.ndarray:
    """External ids as an Arrow-friendly array (int64 or str, never object)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    return arr.astype(str)


class _TopK:
    """Ray Data actor: the model's batch top-k for a block of user indices."""

    def __init__(self, model_ref: Any, k: int, exclude_seen: bool) -> None:
        import ray

        self.model = ray.get(model_ref[0]) if isinstance(model_ref, list) else model_ref
        self.k = k
        self.exclude_seen = exclude_seen

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        uidx = np.asarray(batch["data"], np.int64)
        idx, val = self.model.rank_rows(uidx, self.k, self.exclude_seen)
        keep = idx >= 0
        rows, ranks = np.nonzero(keep)
        return {
            "user": _ids(self.model.users_.ids[uidx[rows]]),
            "rank": (ranks + 1).astype(np.int16),
            "item": _ids(self.model.items_.ids[idx[keep]]),
            "score": val[keep].astype(np.float32),
        }


class _Vectors:
    """Ray Data actor: (id, vector) rows for a block of item indices."""

    def __init__(self, ref: Any) -> None:
        import ray

        self.ids, self.vectors = ray.get(ref[0])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        idx = np.asarray(batch["data"], np.int64)
        return {"item": _ids(self.ids[idx]), "vector": np.ascontiguousarray(self.vectors[idx], np.float32)}


def _index_blocks(n: int, batch_size: int, workers: int) -> list[np.ndarray]:
    """Row indices ``0..n-1`` cut into blocks (the dataset's source; no read tasks needed)."""
    n_blocks = max(1, min(n, max(workers, -(-n // batch_size))))
    return [b.astype(np.int64) for b in np.array_split(np.arange(n, dtype=np.int64), n_blocks)]


def _check(k: int, batch_size: int, workers: int) -> None:
    for name, value in (("k", k), ("batch_size", batch_size), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def recommend_all(
    model: Any,
    out_dir: str | Path,
    k: int = 10,
    *,
    exclude_seen: bool = True,
    batch_size: int = 4096,
    workers: int = 2,
    address: str | None = None,
) -> dict[str, Any]:
    """Write the top-``k`` of every user of a fitted ``model`` as Parquet partitions in ``out_dir``.

    Columns: ``user``, ``rank`` (1 = best), ``item``, ``score``; a user with fewer than ``k``
    eligible items has fewer rows. ``out_dir`` may be any path or URI pyarrow writes
    (``s3://...`` on a cluster). Returns a summary: users, rows, files, seconds, users_per_s.
    """
    model._check_fitted()
    _check(k, batch_size, workers)
    n_users = model.n_users
    with ray_session(address, workers) as ray:
        started = time.perf_counter()
        ref = [ray.put(model)]  # in a list, so the actors receive the reference, not a copy each
        ds = ray.data.from_numpy(_index_blocks(n_users, batch_size, workers))
        ds = ds.map_batches(
            _TopK,
            fn_constructor_args=(ref, int(k), bool(exclude_seen)),
            batch_size=int(batch_size),
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=int(workers)),
            num_cpus=ACTOR_CPUS,
        )
        ds.write_parquet(str(out_dir))
        seconds = time.perf_counter() - started
    files = _parquet_files(out_dir)
    rows = _count_rows(out_dir)
    return {"users": n_users, "rows": rows, "files": len(files), "seconds": seconds, "users_per_s": n_users / seconds}


def export_item_vectors(
    model: Any, out_dir: str | Path, *, batch_size: int = 65536, workers: int = 2, address: str | None = None
) -> dict[str, Any]:
    """Write a factor model's item vectors as Parquet partitions: ``item`` and ``vector`` (list of float32).

    The vectors are the ones whose inner product with the user vectors ranks items as the model
    does (:func:`tastebud.index.factor_view`); models whose scores are not inner products raise
    NotSupportedError.
    """
    from tastebud.index.vectors import factor_view

    model._check_fitted()
    _check(1, batch_size, workers)
    view = factor_view(model)
    if view is None:
        raise NotSupportedError(
            f"{type(model).__name__}: its scores are not inner products of vectors; nothing to export"
        )
    n_items = model.n_items
    with ray_session(address, workers) as ray:
        started = time.perf_counter()
        ref = [ray.put((model.items_.ids, np.asarray(view.item_vectors, np.float32)))]
        ds = ray.data.from_numpy(_index_blocks(n_items, batch_size, workers))
        ds = ds.map_batches(
            _Vectors,
            fn_constructor_args=(ref,),
            batch_size=int(batch_size),
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=int(workers)),
            num_cpus=ACTOR_CPUS,
        )
        ds.write_parquet(str(out_dir))
        seconds = time.perf_counter() - started
    return {"items": n_items, "dim": view.dim, "files": len(_parquet_files(out_dir)), "seconds": seconds}


def read_item_vectors(path: str | Path, filesystem: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Item ids and vectors from a directory written by :func:`export_item_vectors`, fragment by fragment."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    dataset = pads.dataset(str(path), format="parquet", filesystem=filesystem)
    ids, vecs = [], []
    for fragment in dataset.get_fragments():
        table = fragment.to_table(columns=["item", "vector"])
        col = table.column("vector").combine_chunks()
        if isinstance(col.type, (pa.ListType, pa.LargeListType, pa.FixedSizeListType)):
            flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
            vecs.append(flat.reshape(len(table), -1) if len(table) else flat.reshape(0, 0))
        else:  # Ray's tensor extension type
            vecs.append(np.asarray(col.to_numpy_ndarray(), np.float32))
        ids.append(table.column("item").to_numpy(zero_copy_only=False))
    if not ids:
        raise ConfigError(f"{path}: no Parquet files with item vectors")
    return np.concatenate(ids), np.vstack([v for v in vecs if len(v)])


def build_index(
    path: str | Path, spec: str = "HNSW32", metric: str = "ip", filesystem: Any = None, **params: Any
) -> tuple[Any, np.ndarray]:
    """A vector index (FAISS factory string or ``"exact"``) over exported item vectors; returns (index, item ids).

    Row ``j`` of the index is item ``ids[j]``.
    """
    from tastebud.index import make_index

    ids, vectors = read_item_vectors(path, filesystem)
    return make_index(spec, metric=metric, **params).build(vectors), ids  # type: ignore[arg-type]


def read_topk(path: str | Path, filesystem: Any = None) -> Any:
    """The top-k output as one pandas DataFrame sorted by user order of appearance and rank (small outputs, tests)."""
    import pyarrow.dataset as pads

    return pads.dataset(str(path), format="parquet", filesystem=filesystem).to_table().to_pandas()


def _parquet_files(path: str | Path) -> list[Path]:
    p = Path(str(path))
    return sorted(p.rglob("*.parquet")) if p.is_dir() else []


def _count_rows(path: str | Path) -> int:
    import pyarrow.dataset as pads

    return int(pads.dataset(str(path), format="parquet").count_rows())


__all__ = ["build_index", "export_item_vectors", "read_item_vectors", "read_topk", "recommend_all"]
