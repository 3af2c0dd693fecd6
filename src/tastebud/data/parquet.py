"""Interactions from Parquet partitions, on local disk or any filesystem pyarrow reads.

A data lake holds events as many Parquet files (``events/date=2026-11-30/part-0.parquet``...).
:func:`read_interactions` never materialises the whole table: it reads one fragment at a time,
only the needed columns, and keeps 4-byte indices per event (the ids live once in the
vocabularies), so memory is about ``n_events x 12-20 bytes`` instead of a DataFrame of strings.
Two passes: the first builds the sorted user and item vocabularies from each fragment's distinct
ids, the second encodes each fragment against them. ``shard=(i, n)`` reads every ``n``-th
fragment only, so ``n`` workers can each load a share of a data set no process could hold.

For training on Ray (:mod:`tastebud.scale.sharded`) the driver makes only the first pass
(:func:`scan`: vocabularies and events per user and per item, no events kept), and each worker
reads the events of *its* block of users (or items) with ``user_range`` / ``item_range``,
filtering every fragment as it streams, so a worker holds about ``1/W`` of the events.
:class:`ParquetSource` names the files and their columns once and makes those reads (events of a
block, and the catalogue's feature tables) for whichever process holds it; none of this needs Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tastebud.core.errors import ConfigError, DataError
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions


def _dataset(path: str | Path, filesystem: Any = None, partitioning: Any = "hive") -> Any:
    import pyarrow.dataset as pads

    try:
        return pads.dataset(str(path), format="parquet", filesystem=filesystem, partitioning=partitioning)
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"{path}: cannot open Parquet data ({exc})") from None


def fragments(path: str | Path, filesystem: Any = None, shard: tuple[int, int] | None = None) -> list[Any]:
    """The Parquet fragments (files) under ``path``, or every ``n``-th from ``i`` with ``shard=(i, n)``."""
    frags = sorted(_dataset(path, filesystem).get_fragments(), key=lambda f: f.path)
    if shard is not None:
        i, n = shard
        if not (isinstance(n, int) and n >= 1 and isinstance(i, int) and 0 <= i < n):
            raise DataError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
        frags = frags[i::n]
    if not frags:
        raise DataError(f"{path}: no Parquet files found")
    return frags


def _column(table: Any, name: str, source: str) -> np.ndarray:
    if name not in table.column_names:
        raise DataError(f"{source}: missing column '{name}'; columns present: {', '.join(table.column_names)}")
    col = table.column(name)
    if col.null_count:
        raise DataError(f"{source}: column '{name}' has {col.null_count} empty value(s)")
    arr = col.to_numpy(zero_copy_only=False)
    return arr.astype(str) if arr.dtype.kind in "OUS" else arr


def read_interactions(
    path: str | Path,
    user: str = "user",
    item: str = "item",
    rating: str | None = None,
    time: str | None = None,
    *,
    filesystem: Any = None,
    shard: tuple[int, int] | None = None,
    users: IdMap | None = None,
    items: IdMap | None = None,
    scale: tuple[float, float] | None = None,
    duplicates: str = "last",
    user_range: tuple[int, int] | None = None,
    item_range: tuple[int, int] | None = None,
) -> Interactions:
    """Interactions from every Parquet file under ``path`` (a directory, file or ``s3://`` URI).

    ``filesystem`` is any ``pyarrow.fs.FileSystem`` (S3, GCS, HDFS; None infers it from the
    path). Without ``rating`` the data are implicit (value 1 per event). ``users`` / ``items``
    reuse existing vocabularies (then one pass suffices and unknown ids are an error).
    ``user_range=(lo, hi)`` / ``item_range``: keep only the events whose user (item) index is in
    ``[lo, hi)`` (needs ``users`` and ``items``); the vocabularies stay whole, so the matrix has
    the full shape with only those rows (columns) filled.
    """
    frags = fragments(path, filesystem, shard)
    wanted = [c for c in (user, item, rating, time) if c is not None]
    _check_columns(frags, wanted)
    if (user_range is not None or item_range is not None) and (users is None or items is None):
        raise DataError("user_range / item_range need the vocabularies: pass users= and items= (see scan())")
    if users is None or items is None:
        found = _vocabularies(frags, user, item)
        users = users or found[0]
        items = items or found[1]
    uidx, iidx, vals, stamps = [], [], [], []
    for frag in frags:
        t = frag.to_table(columns=wanted)
        u = users.lookup(_column(t, user, frag.path))
        i = items.lookup(_column(t, item, frag.path))
        for what, idx, name in (("user", u, user), ("item", i, item)):
            if (idx < 0).any():
                bad = _column(t, name, frag.path)[np.argmax(idx < 0)]
                raise DataError(f"{frag.path}: {what} id {bad!r} is not in the given vocabulary")
        keep = None
        for rng_, idx in ((user_range, u), (item_range, i)):
            if rng_ is not None:
                inside = (idx >= rng_[0]) & (idx < rng_[1])
                keep = inside if keep is None else keep & inside
        if keep is not None:  # only this worker's block: the rest of the fragment is dropped now
            rows = np.nonzero(keep)[0]
            t, u, i = t.take(rows), u[rows], i[rows]
        uidx.append(u.astype(np.int32))
        iidx.append(i.astype(np.int32))
        if rating is not None:
            v = np.asarray(_column(t, rating, frag.path), np.float64)
            if not np.isfinite(v).all():
                raise DataError(
                    f"{frag.path}: column '{rating}' has a non-finite value at row {int(np.argmax(~np.isfinite(v)))}"
                )
            vals.append(v.astype(np.float32))
        if time is not None:
            ts = _column(t, time, frag.path)
            if ts.dtype.kind == "M":
                ts = ts.astype("datetime64[s]").astype(np.int64)
            stamps.append(np.asarray(ts, np.int64))
    values = np.concatenate(vals) if rating is not None else None
    if values is not None and scale is None and len(values):
        scale = (float(values.min()), float(values.max()))
    return Interactions(
        users,
        items,
        np.concatenate(uidx),
        np.concatenate(iidx),
        values,
        np.concatenate(stamps) if time is not None else None,
        explicit=rating is not None,
        rating_scale=scale if rating is not None else None,
        duplicates=duplicates,  # type: ignore[arg-type]
    )


def _check_columns(frags: list[Any], wanted: list[str]) -> None:
    for frag in frags:
        missing = [c for c in wanted if c not in frag.physical_schema.names]
        if missing:
            raise DataError(
                f"{frag.path}: missing column(s) {', '.join(map(repr, missing))}; "
                f"columns present: {', '.join(frag.physical_schema.names)}"
            )


def _vocabularies(frags: list[Any], user: str, item: str) -> tuple[IdMap, IdMap]:
    u_parts, i_parts = [], []
    for frag in frags:
        t = frag.to_table(columns=[user, item])
        u_parts.append(np.unique(_column(t, user, frag.path)))
        i_parts.append(np.unique(_column(t, item, frag.path)))
    return IdMap(np.unique(np.concatenate(u_parts)), "user"), IdMap(np.unique(np.concatenate(i_parts)), "item")


@dataclass
class Scan:
    """What the driver learns from one pass over the files, without keeping any event."""

    users: IdMap
    items: IdMap
    user_events: np.ndarray  # events per user index (before duplicates are resolved)
    item_events: np.ndarray
    events: int
    rating_scale: tuple[float, float] | None
    files: list[tuple[str, int]]  # (path, rows): identifies the data

    def fingerprint(self) -> str:
        """Short SHA-256 of the file list, row counts and vocabulary sizes (names the training data)."""
        import hashlib
        import json

        h = hashlib.sha256(json.dumps([self.files, len(self.users), len(self.items)]).encode())
        return "parquet-" + h.hexdigest()[:16]


def scan(
    path: str | Path,
    user: str = "user",
    item: str = "item",
    rating: str | None = None,
    *,
    filesystem: Any = None,
) -> Scan:
    """Vocabularies, events per user and per item, and the rating range, streaming fragment by fragment.

    Memory is the distinct ids of one fragment plus the vocabularies: the events are counted,
    never kept, so a driver can plan a job on data it could not load.
    """
    frags = fragments(path, filesystem)
    cols = [user, item] + ([rating] if rating is not None else [])
    _check_columns(frags, cols)
    users, items = _vocabularies(frags, user, item)
    u_count = np.zeros(len(users), np.int64)
    i_count = np.zeros(len(items), np.int64)
    lo, hi = np.inf, -np.inf
    files = []
    for frag in frags:
        t = frag.to_table(columns=cols)
        for vocab, counts, name in ((users, u_count, user), (items, i_count, item)):
            ids, n = np.unique(_column(t, name, frag.path), return_counts=True)
            counts[vocab.lookup(ids)] += n
        if rating is not None and len(t):
            v = np.asarray(_column(t, rating, frag.path), np.float64)
            if not np.isfinite(v).all():
                raise DataError(f"{frag.path}: column '{rating}' has a non-finite value")
            lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
        files.append((str(frag.path), len(t)))
    scale = (lo, hi) if rating is not None and np.isfinite(lo) else None
    return Scan(users, items, u_count, i_count, int(u_count.sum()), scale, files)


@dataclass(frozen=True)
class ParquetSource:
    """Where the events are: a directory, file or URI of Parquet files, and its column names."""

    path: str
    user: str = "user"
    item: str = "item"
    rating: str | None = None
    time: str | None = None
    filesystem: Any = None
    duplicates: str = "last"
    #: Catalogue tables (two-tower): a DataFrame indexed by id, or a Parquet file / directory with
    #: an id column named like ``item`` (``user``) and one column per feature.
    item_features: Any = None
    user_features: Any = None

    def scan(self) -> Scan:
        return scan(self.path, self.user, self.item, self.rating, filesystem=self.filesystem)

    def read(
        self,
        plan: Scan,
        user_range: tuple[int, int] | None = None,
        item_range: tuple[int, int] | None = None,
    ) -> Any:
        """The events of one block (whole vocabularies, only the block's rows filled)."""
        return read_interactions(
            self.path,
            self.user,
            self.item,
            self.rating,
            self.time,
            filesystem=self.filesystem,
            users=plan.users,
            items=plan.items,
            scale=plan.rating_scale,
            duplicates=self.duplicates,
            user_range=user_range,
            item_range=item_range,
        )

    def read_features(self, plan: Scan, user_range: tuple[int, int] | None = None) -> tuple[Any, Any]:
        """(item features, user features) for a worker: the item table whole (catalogue data: items x
        features, not events), the user table only for the users of ``user_range``."""
        items = _feature_table(self.item_features, self.item, plan.items, None, self.filesystem)
        users = _feature_table(self.user_features, self.user, plan.users, user_range, self.filesystem)
        return items, users


def _feature_table(
    spec: Any, id_col: str, vocab: Any, index_range: tuple[int, int] | None, filesystem: Any
) -> pd.DataFrame | None:
    """A feature table indexed by external id, keeping only the ids whose index is in ``index_range``."""
    if spec is None:
        return None

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        if index_range is None:
            return frame
        pos = vocab.lookup(frame.index.to_numpy())
        return frame[(pos >= index_range[0]) & (pos < index_range[1])]

    if isinstance(spec, pd.DataFrame):
        return keep(spec)
    if not isinstance(spec, (str, Path)):
        raise ConfigError(
            f"feature tables must be a DataFrame indexed by id or a Parquet path, got {type(spec).__name__}"
        )
    parts = []
    for frag in fragments(spec, filesystem):  # streamed: a worker keeps only its block's rows
        if id_col not in frag.physical_schema.names:
            raise DataError(
                f"{frag.path}: missing id column '{id_col}'; columns present: {', '.join(frag.physical_schema.names)}"
            )
        frame = frag.to_table().to_pandas()
        ids = frame.pop(id_col).to_numpy()
        frame.index = pd.Index(ids.astype(str) if ids.dtype.kind in "OUS" else ids, name=id_col)
        parts.append(keep(frame))
    out = pd.concat(parts) if parts else pd.DataFrame()
    if not out.index.is_unique:
        raise DataError(f"{spec}: the feature table has duplicate '{id_col}' ids")
    return out if len(out) else None


def as_source(source: ParquetSource | str | Path) -> ParquetSource:
    """``source`` itself, or a :class:`ParquetSource` with the default column names for a path."""
    if isinstance(source, ParquetSource):
        return source
    if isinstance(source, (str, Path)):
        return ParquetSource(str(source))
    raise ConfigError(f"source must be a ParquetSource or a path, got {type(source).__name__}")


def write_interactions(data: Interactions, path: str | Path, partitions: int = 4, filesystem: Any = None) -> list[str]:
    """Write ``data`` as ``partitions`` Parquet files (user, item, value[, timestamp]), split by event position."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise DataError(f"partitions must be a positive integer, got {partitions!r}")
    if filesystem is None:
        Path(str(path)).mkdir(parents=True, exist_ok=True)
    else:
        filesystem.create_dir(str(path), recursive=True)
    n = len(data)
    cuts = np.linspace(0, n, partitions + 1).astype(np.int64)
    written = []
    for p in range(partitions):
        s = slice(cuts[p], cuts[p + 1])
        cols = {
            "user": _arrow_ids(data.users.ids[data.user_idx[s]]),
            "item": _arrow_ids(data.items.ids[data.item_idx[s]]),
            "value": data.values[s],
        }
        if data.timestamps is not None:
            cols["timestamp"] = data.timestamps[s]
        target = f"{path}/part-{p:05d}.parquet"
        pq.write_table(pa.table(cols), target, filesystem=filesystem)
        written.append(target)
    return written


def _arrow_ids(values: np.ndarray) -> np.ndarray:
    return values.astype(np.int64) if values.dtype.kind in "iu" else values.astype(str)


__all__ = ["ParquetSource", "Scan", "as_source", "fragments", "read_interactions", "scan", "write_interactions"]
