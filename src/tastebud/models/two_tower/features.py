"""What the towers read besides ids: item and user feature tables encoded as padded sparse rows,
and the request context (hour of day, day of week) of a timestamp.

Item features (genres multi-hot, year in bins, TF-IDF or sentence embeddings of a text column) and
user features (age in the MovieLens groups, gender, occupation) go through
:class:`tastebud.data.features.ItemFeatureEncoder`, imported lazily (it pulls in the text stack).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tastebud.core.errors import DataError

TEXT_COLUMNS = ("description", "text", "title")
USER_COLUMNS = ("age", "gender", "occupation")
ML_AGE_EDGES = [18.0, 25.0, 35.0, 45.0, 50.0, 56.0]  # the MovieLens age groups


@dataclass
class FeatureRows:
    """One side's features (the items' or the users'), encoded: padded (index + 1, weight) rows,
    the number of feature columns, and the encoder with the spec and arrays that save it."""

    idx: np.ndarray
    val: np.ndarray
    width: int = 0
    spec: list[dict[str, Any]] | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    encoder: Any = None

    @classmethod
    def empty(cls, n: int) -> FeatureRows:
        """``n`` rows without features (one padding slot each)."""
        return cls(np.zeros((n, 1), np.int64), np.zeros((n, 1), np.float32))

    @classmethod
    def encode(cls, encoder: Any, frame: pd.DataFrame) -> FeatureRows:
        """``frame`` through a fitted ``encoder``."""
        mat = encoder.transform(frame)
        idx, val = padded(mat)
        spec, arrays = encoder.state()
        return cls(idx, val, int(mat.shape[1]), spec, arrays, encoder)


# ---------------------------------------------------------------------- which columns
def item_blocks(frame: pd.DataFrame, columns: Sequence[str] | None, text: str) -> dict[str, Any]:
    """The encoder blocks for the item table: ``columns`` when given, else genres, year and the
    first text column found (unless ``text="none"``)."""
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(
                f"two_tower: item feature column '{missing[0]}' is not in data.item_features; "
                f"columns present: {', '.join(map(str, frame.columns))}"
            )
        cols = list(columns)
    else:
        cols = [c for c in ("genres", "year") if c in frame.columns]
        text_col = next((c for c in TEXT_COLUMNS if c in frame.columns), None)
        if text_col is not None and text != "none":
            cols.append(text_col)
    blocks: dict[str, Any] = {}
    for c in cols:
        spec: dict[str, Any] = {"weight": 1.0}
        if c == "year":
            spec["kind"] = "binned"
        elif c in TEXT_COLUMNS:
            spec["kind"] = "embedding" if text == "embedding" else "text"
        blocks[c] = spec
    return blocks


def user_blocks(frame: pd.DataFrame, columns: Sequence[str] | None) -> dict[str, Any]:
    """The encoder blocks for the user table: ``columns`` when given, else the demographics found."""
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(
                f"two_tower: user feature column '{missing[0]}' is not in data.user_features; "
                f"columns present: {', '.join(map(str, frame.columns))}"
            )
        cols = list(columns)
    else:
        cols = [c for c in USER_COLUMNS if c in frame.columns]
    return {
        c: ({"weight": 1.0, "kind": "binned"} if c == "age" else {"weight": 1.0, "kind": "categorical"}) for c in cols
    }


# ---------------------------------------------------------------------- encoding
def item_feature_rows(frame: pd.DataFrame, items: Any, columns: Sequence[str] | None, text: str) -> FeatureRows | None:
    """The item table encoded in vocabulary order (``items``: the model's item IdMap); None when no
    column is usable."""
    from tastebud.data.features import ItemFeatureEncoder

    blocks = item_blocks(frame, columns, text)
    if not blocks:
        return None
    table = aligned(frame[list(blocks)], items)
    return FeatureRows.encode(ItemFeatureEncoder(blocks).fit(table), table)


def user_feature_rows(frame: pd.DataFrame, users: Any, columns: Sequence[str] | None) -> FeatureRows | None:
    """The user table encoded in vocabulary order, age in the MovieLens groups; None when no column
    is usable."""
    from tastebud.data.features import ItemFeatureEncoder

    blocks = user_blocks(frame, columns)
    if not blocks:
        return None
    table = aligned(frame[list(blocks)], users)
    enc = ItemFeatureEncoder(blocks).fit(table)
    if "age" in blocks:
        j = [b["name"] for b in enc.spec_].index("age")
        enc.arrays_[f"b{j}.edges"] = np.asarray(ML_AGE_EDGES)
    return FeatureRows.encode(enc, table)


def united_user_rows(
    spec: list[dict[str, Any]] | None,
    arrays: dict[str, np.ndarray],
    frame: pd.DataFrame | None,
    users: Any,
    exchange: Callable[[Any], list[Any]],
) -> FeatureRows | None:
    """One rank of several, each fitted on its own block of users: the user-feature vocabularies
    become the union over the ranks' blocks (``exchange``: the feature hook, this rank's
    vocabularies in and every rank's out), so every rank builds the same network. For the
    categorical columns used here (``min_df=1``) that is the vocabulary of the whole table.
    None when this rank has no user features (nor has any other)."""
    from tastebud.data.features import ItemFeatureEncoder

    mine = None if spec is None else {k: v for k, v in arrays.items() if k.endswith(".vocab")}
    every = exchange(mine)
    if spec is None and any(e is not None for e in every):
        raise DataError(
            "user_features: no row for any user of one worker's block while other blocks have some; "
            "give every block users with features, or none"
        )
    if spec is None or mine is None or frame is None:
        return None
    arrays = dict(arrays)
    for key in mine:
        arrays[key] = np.asarray(sorted(set().union(*(set(e.get(key, ()).tolist()) for e in every))), dtype=str)
    enc = ItemFeatureEncoder.from_state(spec, arrays)
    return FeatureRows.encode(enc, aligned(frame[[b["column"] for b in spec]], users))


# ---------------------------------------------------------------------- shapes
def padded(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """CSR rows as padded (index + 1, weight) matrices; index 0 / weight 0 is padding."""
    m = sp.csr_matrix(m, dtype=np.float32)
    counts = np.diff(m.indptr)
    width = max(1, int(counts.max()) if len(counts) else 1)
    idx = np.zeros((m.shape[0], width), np.int64)
    val = np.zeros((m.shape[0], width), np.float32)
    rows = np.repeat(np.arange(m.shape[0]), counts)
    cols = np.arange(m.nnz) - np.repeat(m.indptr[:-1], counts)
    idx[rows, cols] = m.indices + 1
    val[rows, cols] = m.data
    return idx, val


def padded_rows(parts: list[np.ndarray]) -> np.ndarray:
    """Row blocks of padded feature matrices (widths may differ) as one matrix, padded with 0."""
    width = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]))) for p in parts], axis=0)


def aligned(frame: pd.DataFrame, ids: Any) -> pd.DataFrame:
    """``frame`` rows in vocabulary order (ids missing from the frame get an empty row)."""
    pos = ids.lookup(frame.index.to_numpy())
    src = np.full(len(ids), -1, np.int64)
    keep = pos >= 0
    src[pos[keep]] = np.nonzero(keep)[0]
    if len(frame) == 0:
        return pd.DataFrame(index=pd.RangeIndex(len(ids)), columns=frame.columns)
    out = frame.iloc[np.clip(src, 0, None)].reset_index(drop=True)
    absent = np.nonzero(src < 0)[0]
    if len(absent):
        out = out.astype({c: object for c in out.columns if not pd.api.types.is_numeric_dtype(out[c])})
        for col in out.columns:
            out.loc[absent, col] = np.nan if pd.api.types.is_numeric_dtype(out[col]) else None
    return out


def request_context(ts: np.ndarray) -> np.ndarray:
    """(hour of day + 1, day of week + 1) in UTC; 0 marks an unknown time."""
    ts = np.asarray(ts, np.int64)
    hour = (ts // 3600) % 24 + 1
    dow = ((ts // 86400) + 3) % 7 + 1  # 1970-01-01 was a Thursday; Monday = 1
    out = np.stack([hour, dow], axis=1).astype(np.int64)
    out[ts <= 0] = 0
    return out
