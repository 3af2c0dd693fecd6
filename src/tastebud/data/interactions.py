"""`Interactions`: the data model every model, split and metric works on."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tastebud.core.errors import DataError
from tastebud.data.idmap import IdMap

DuplicatePolicy = Literal["last", "sum", "mean", "error"]


@dataclass
class Summary:
    """What happened while building the data: counts that must add up."""

    rows_read: int = 0
    rows_kept: int = 0
    duplicate_pairs: int = 0
    duplicate_policy: str = "last"
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Interactions:
    """Who interacted with what: external ids mapped to dense indices, events and a CSR matrix.

    * ``users`` / ``items``: :class:`IdMap` vocabularies (external id <-> index).
    * ``user_idx``, ``item_idx``, ``values``, ``timestamps``: one entry per event, in input order
      (sequence models read these; duplicates are kept here).
    * ``matrix``: user x item CSR (float32), duplicates resolved by the declared policy.
    * ``item_features`` / ``user_features``: optional DataFrames indexed by external id.
    """

    def __init__(
        self,
        users: IdMap,
        items: IdMap,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        values: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
        *,
        explicit: bool = True,
        rating_scale: tuple[float, float] | None = None,
        duplicates: DuplicatePolicy = "last",
        item_features: pd.DataFrame | None = None,
        user_features: pd.DataFrame | None = None,
        summary: Summary | None = None,
    ) -> None:
        n = len(user_idx)
        self.users = users
        self.items = items
        self.user_idx = np.ascontiguousarray(user_idx, dtype=np.int32)
        self.item_idx = np.ascontiguousarray(item_idx, dtype=np.int32)
        self.values = (
            np.ones(n, dtype=np.float32) if values is None else np.ascontiguousarray(values, dtype=np.float32)
        )
        self.timestamps = None if timestamps is None else np.ascontiguousarray(timestamps, dtype=np.int64)
        self.explicit = explicit
        self.rating_scale = rating_scale
        self.duplicates = duplicates
        self.item_features = item_features
        self.user_features = user_features
        self.summary = summary or Summary(rows_read=n, rows_kept=n, duplicate_policy=duplicates)
        if len(self.item_idx) != n or len(self.values) != n or (self.timestamps is not None and len(self.timestamps) != n):
            raise DataError("event arrays must all have the same length")
        if n and (self.user_idx.min() < 0 or self.user_idx.max() >= len(users)):
            raise DataError("user index out of range of the user vocabulary")
        if n and (self.item_idx.min() < 0 or self.item_idx.max() >= len(items)):
            raise DataError("item index out of range of the item vocabulary")

    # ------------------------------------------------------------------ building
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        user: str = "user",
        item: str = "item",
        rating: str | None = None,
        time: str | None = None,
        *,
        scale: tuple[float, float] | None = None,
        duplicates: DuplicatePolicy = "last",
        item_features: pd.DataFrame | None = None,
        user_features: pd.DataFrame | None = None,
        users: IdMap | None = None,
        items: IdMap | None = None,
        source: str = "frame",
        line_offset: int | None = None,
    ) -> Interactions:
        """Build from a DataFrame with a column mapping.

        Without ``rating`` every row counts as one implicit interaction (value 1). ``users`` /
        ``items`` reuse an existing vocabulary (ids outside it are an error). ``line_offset`` turns
        a row position into a file line number in error messages (2 for a CSV with a header).
        """
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
        wanted = {"user": user, "item": item, "rating": rating, "time": time}
        missing = [f"'{col}' ({role})" for role, col in wanted.items() if col is not None and col not in df.columns]
        if missing:
            raise DataError(
                f"{source}: missing column(s) {', '.join(missing)}; columns present: {', '.join(map(str, df.columns))}"
            )
        if len(df) == 0:
            raise DataError(f"{source}: no interactions (the input is empty)")
        if duplicates not in ("last", "sum", "mean", "error"):
            raise DataError(f"duplicates must be one of last, sum, mean, error; got {duplicates!r}")

        lines = df.attrs.get("lines")

        def where(pos: int) -> str:
            if lines is not None:
                return f"line {lines[pos]}"
            return f"line {pos + line_offset}" if line_offset is not None else f"row {pos}"

        for col in (user, item):
            nulls = df[col].isna().to_numpy()
            if nulls.any():
                raise DataError(f"{source}: {where(int(np.argmax(nulls)))}: empty value in column '{col}'")
            if not pd.api.types.is_numeric_dtype(df[col]):  # object or str dtype
                empty = (df[col].astype(str).str.strip() == "").to_numpy()
                if empty.any():
                    raise DataError(f"{source}: {where(int(np.argmax(empty)))}: empty value in column '{col}'")

        values = None
        if rating is not None:
            values = _numeric(df[rating], rating, source, where)
            huge = np.abs(values) > np.finfo(np.float32).max  # ratings are kept as float32: this would be inf
            if huge.any():
                pos = int(np.argmax(huge))
                raise DataError(
                    f"{source}: {where(pos)}: rating {values[pos]:g} in column '{rating}' is too large "
                    f"(at most {np.finfo(np.float32).max:.4g} in magnitude)"
                )
            if scale is not None:
                lo, hi = scale
                out = (values < lo) | (values > hi)
                if out.any():
                    pos = int(np.argmax(out))
                    raise DataError(
                        f"{source}: {where(pos)}: rating {values[pos]:g} in column '{rating}' is outside "
                        f"the declared scale {lo:g}..{hi:g}"
                    )
        timestamps = None
        if time is not None:
            tcol = df[time]
            if pd.api.types.is_datetime64_any_dtype(tcol):
                if tcol.isna().any():
                    raise DataError(f"{source}: {where(int(np.argmax(tcol.isna().to_numpy())))}: empty value in column '{time}'")
                timestamps = (tcol.astype("datetime64[s]").astype("int64")).to_numpy()
            else:
                tv = _numeric(tcol, time, source, where)
                timestamps = tv.astype(np.int64)

        user_map = users or IdMap(pd.unique(df[user].to_numpy()), "user")
        item_map = items or IdMap(pd.unique(df[item].to_numpy()), "item")
        uidx = user_map.lookup(df[user].to_numpy())
        iidx = item_map.lookup(df[item].to_numpy())
        for idx, col, what in ((uidx, user, "user"), (iidx, item, "item")):
            if (idx < 0).any():
                pos = int(np.argmax(idx < 0))
                raise DataError(f"{source}: {where(pos)}: {what} id {df[col].iloc[pos]!r} is not in the given vocabulary")

        summary = Summary(rows_read=len(df), rows_kept=len(df), duplicate_policy=duplicates, source=source)
        pair = uidx * len(item_map) + iidx
        n_dup = len(pair) - len(np.unique(pair))
        summary.duplicate_pairs = int(n_dup)
        if n_dup and duplicates == "error":
            raise DataError(f"{source}: {n_dup} duplicate (user, item) pairs and duplicates='error'")
        out = cls(
            user_map,
            item_map,
            uidx,
            iidx,
            values,
            timestamps,
            explicit=rating is not None,
            rating_scale=scale if scale is not None else ((float(values.min()), float(values.max())) if values is not None else None),
            duplicates=duplicates,
            item_features=_features(item_features, "item"),
            user_features=_features(user_features, "user"),
            summary=summary,
        )
        return out

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        user: str = "user",
        item: str = "item",
        rating: str | None = None,
        time: str | None = None,
        *,
        sep: str | None = None,
        **kwargs: Any,
    ) -> Interactions:
        """Read CSV / TSV, Parquet or JSON-lines (by extension). Bad lines are named by number."""
        from tastebud.data.io import read_table

        df, offset = read_table(path, sep=sep)
        return cls.from_frame(df, user, item, rating, time, source=str(path), line_offset=offset, **kwargs)

    # ------------------------------------------------------------------ views
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def __len__(self) -> int:
        return len(self.user_idx)

    def __repr__(self) -> str:
        kind = "ratings" if self.explicit else "implicit"
        return f"Interactions({len(self)} {kind}, {self.n_users} users x {self.n_items} items)"

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """User x item CSR (float32) with duplicates resolved by the declared policy."""
        n = len(self)
        shape = (self.n_users, self.n_items)
        if n == 0:
            return sp.csr_matrix(shape, dtype=np.float32)
        if self.duplicates in ("sum", "mean"):
            m = sp.csr_matrix((self.values.astype(np.float64), (self.user_idx, self.item_idx)), shape=shape)
            m.sum_duplicates()
            if self.duplicates == "mean":
                c = sp.csr_matrix((np.ones(n), (self.user_idx, self.item_idx)), shape=shape)
                c.sum_duplicates()
                m.data /= c.data
            m = m.astype(np.float32)
        else:  # last (by time, then input order)
            order = np.arange(n) if self.timestamps is None else np.argsort(self.timestamps, kind="stable")
            pair = self.user_idx[order].astype(np.int64) * self.n_items + self.item_idx[order]
            _, last_rev = np.unique(pair[::-1], return_index=True)
            keep = order[n - 1 - last_rev]
            m = sp.csr_matrix(
                (self.values[keep], (self.user_idx[keep], self.item_idx[keep])), shape=shape, dtype=np.float32
            )
        m.sort_indices()
        return m

    def user_counts(self) -> np.ndarray:
        return np.diff(self.matrix.indptr)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.matrix.indices, minlength=self.n_items)

    def to_frame(self) -> pd.DataFrame:
        """Events with external ids: columns user, item, value (and timestamp)."""
        frame = pd.DataFrame(
            {
                "user": self.users.to_ids(self.user_idx),
                "item": self.items.to_ids(self.item_idx),
                "value": self.values,
            }
        )
        if self.timestamps is not None:
            frame["timestamp"] = self.timestamps
        return frame

    def subset(self, mask: np.ndarray, source: str | None = None) -> Interactions:
        """Events selected by a boolean mask or index array, same vocabularies and features."""
        sel = np.asarray(mask)
        out = Interactions(
            self.users,
            self.items,
            self.user_idx[sel],
            self.item_idx[sel],
            self.values[sel],
            None if self.timestamps is None else self.timestamps[sel],
            explicit=self.explicit,
            rating_scale=self.rating_scale,
            duplicates=self.duplicates,
            item_features=self.item_features,
            user_features=self.user_features,
        )
        out.summary.source = source or self.summary.source
        pair = out.user_idx.astype(np.int64) * out.n_items + out.item_idx
        out.summary.duplicate_pairs = int(len(pair) - len(np.unique(pair)))
        return out

    def fingerprint(self) -> str:
        """Short SHA-256 of the events and vocabularies: identifies the training data."""
        h = hashlib.sha256()
        for arr in (self.user_idx, self.item_idx, self.values):
            h.update(np.ascontiguousarray(arr).tobytes())
        if self.timestamps is not None:
            h.update(self.timestamps.tobytes())
        h.update(json.dumps([str(x) for x in self.users.ids[:1000]]).encode())
        h.update(json.dumps([str(x) for x in self.items.ids[:1000]]).encode())
        h.update(f"{self.n_users}x{self.n_items}".encode())
        return h.hexdigest()[:16]

    def info(self) -> dict[str, Any]:
        """Numbers a person wants to see first."""
        n = len(self)
        density = n / max(1, self.n_users * self.n_items)
        info: dict[str, Any] = {
            "interactions": n,
            "users": self.n_users,
            "items": self.n_items,
            "density": round(density, 6),
            "kind": "explicit" if self.explicit else "implicit",
            "duplicate_pairs": self.summary.duplicate_pairs,
            "duplicate_policy": self.duplicates,
        }
        if self.explicit and n:
            info["rating_scale"] = self.rating_scale
            info["mean_rating"] = round(float(self.values.mean()), 4)
        if self.timestamps is not None and n:
            info["time_range"] = (int(self.timestamps.min()), int(self.timestamps.max()))
        if self.item_features is not None:
            info["item_features"] = list(map(str, self.item_features.columns))
        if self.user_features is not None:
            info["user_features"] = list(map(str, self.user_features.columns))
        return info

    def with_vocabulary(self, users: IdMap, items: IdMap) -> Interactions:
        """Re-express these events in other (larger) vocabularies."""
        frame = self.to_frame()
        return Interactions.from_frame(
            frame.rename(columns={"value": "rating"}) if self.explicit else frame,
            "user",
            "item",
            "rating" if self.explicit else None,
            "timestamp" if self.timestamps is not None else None,
            scale=self.rating_scale if self.explicit else None,
            duplicates=self.duplicates,
            item_features=self.item_features,
            user_features=self.user_features,
            users=users,
            items=items,
            source=self.summary.source,
        )


def _numeric(col: pd.Series, name: str, source: str, where: Any) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col):
        raise DataError(f"{source}: column '{name}' must be numeric, got booleans")
    num = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(num)
    if bad.any():
        pos = int(np.argmax(bad))
        value = col.iloc[pos]
        value = value.item() if isinstance(value, np.generic) else value  # 'nan', not np.float64(nan)
        raise DataError(f"{source}: {where(pos)}: column '{name}' needs a finite number, got {value!r}")
    return num


def _features(frame: pd.DataFrame | None, what: str) -> pd.DataFrame | None:
    if frame is None:
        return None
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{what}_features must be a DataFrame indexed by {what} id")
    if frame.empty:
        raise DataError(f"{what}_features is empty; pass None for no features")
    if not frame.index.is_unique:
        raise DataError(f"{what}_features has duplicate {what} ids in its index")
    return frame
