"""Vocabularies: external ids (int or str) <-> dense indices, both ways."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tastebud.core.errors import DataError, UnknownIdError

_FEW = 16  # up to this many ids, lookup() asks the hash table one id at a time


class IdMap:
    """An ordered vocabulary of external ids.

    Ids keep their type: integers stay ``int64`` (a user trained as ``2`` is looked up as ``2``
    or ``"2"``), anything else is stored as ``str``.
    """

    def __init__(self, ids: Sequence[Any] | np.ndarray, name: str = "id") -> None:
        arr = _normalise(np.asarray(ids) if not isinstance(ids, np.ndarray) else ids, name)
        self.name = name
        self.ids: np.ndarray = arr
        self._index = pd.Index(arr)
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()][0]
            raise DataError(f"duplicate {name} id {dup!r} in vocabulary")

    @property
    def is_int(self) -> bool:
        return self.ids.dtype.kind in "iu"

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, value: Any) -> bool:
        return self.lookup([value])[0] >= 0

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, IdMap)
            and self.ids.dtype.kind == other.ids.dtype.kind
            and np.array_equal(self.ids, other.ids)
        )

    def __repr__(self) -> str:
        return f"IdMap({self.name}, n={len(self)})"

    def coerce(self, values: Iterable[Any]) -> np.ndarray:
        """Bring outside ids to the vocabulary's type ("2" -> 2 for integer vocabularies)."""
        return self._coerce(values)[0]

    def coerce_id(self, value: Any) -> Any:
        """One outside id as a plain Python id of the vocabulary's type: ``"2"`` -> ``2`` for
        integer vocabularies when it reads as one (else the text itself, which is unknown), ``str``
        otherwise. The one coercion rule: ``lookup`` and the service's ids (HTTP paths are text)."""
        if self.is_int:
            as_int = _int_id(value)
            if as_int is not None:
                return as_int
        return value if isinstance(value, str) else str(value)

    def _coerce(self, values: Iterable[Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """Coerced ids, and (integer vocabularies) a mask of those that could be converted."""
        vals = list(values) if not isinstance(values, np.ndarray) else values
        if self.is_int and isinstance(vals, np.ndarray) and vals.dtype.kind in "iu":
            if vals.dtype.kind == "i" or not len(vals) or vals.max() <= np.iinfo(np.int64).max:
                return vals.astype(np.int64), np.ones(len(vals), dtype=bool)  # fast path: no loop
        if self.is_int:
            out = np.empty(len(vals), dtype=np.int64)
            ok = np.ones(len(vals), dtype=bool)
            for i, v in enumerate(vals):
                as_int = _int_id(v)
                if as_int is None:
                    ok[i] = False
                    out[i] = np.iinfo(np.int64).min
                else:
                    out[i] = as_int
            return out, ok
        return np.asarray([str(v) for v in vals], dtype=object), None

    def position(self, value: Any) -> int:
        """Index of one already-typed id (``int`` for integer vocabularies), -1 if unknown.

        A hash lookup without the array work of :meth:`lookup`: the per-request path of the service.
        """
        try:
            pos = self._index.get_loc(value)
        except (KeyError, TypeError):
            return -1
        return pos if isinstance(pos, int) else -1

    def lookup(self, values: Iterable[Any]) -> np.ndarray:
        """Indices of ``values``; ``-1`` where an id is unknown."""
        coerced, ok = self._coerce(values)
        if len(coerced) == 0:
            return np.empty(0, dtype=np.int64)
        if len(coerced) <= _FEW:  # a request's handful of ids: hash lookups, no Index built
            idx = np.fromiter((self.position(v) for v in coerced.tolist()), np.int64, len(coerced))
        else:
            idx = self._index.get_indexer(coerced).astype(np.int64)
        if ok is not None:
            idx[~ok] = -1  # not convertible (e.g. "x" or 2**70): unknown, whatever the sentinel hits
        return idx

    def index(self, values: Iterable[Any], what: str | None = None) -> np.ndarray:
        """Indices of ``values``; raises ``UnknownIdError`` naming the unknown ids."""
        values = list(values)
        idx = self.lookup(values)
        if (idx < 0).any():
            missing = [values[i] for i in np.nonzero(idx < 0)[0][:5]]
            more = "" if (idx < 0).sum() <= 5 else f" and {(idx < 0).sum() - 5} more"
            raise UnknownIdError(f"unknown {what or self.name} id(s): {', '.join(map(repr, missing))}{more}")
        return idx

    def to_ids(self, idx: np.ndarray) -> np.ndarray:
        """External ids for indices; ``-1`` maps to ``None``."""
        idx = np.asarray(idx)
        out = (
            self.ids[np.clip(idx, 0, max(len(self.ids) - 1, 0))].astype(object)
            if len(self.ids)
            else np.full(idx.shape, None, dtype=object)
        )
        out[idx < 0] = None
        return out

    def to_array(self) -> np.ndarray:
        """Storable form (int64 or fixed-width unicode, never object)."""
        return self.ids if self.is_int else self.ids.astype(str)

    @classmethod
    def from_array(cls, arr: np.ndarray, name: str = "id") -> IdMap:
        return cls(arr, name)


_DECIMAL = re.compile(r"^\s*[+-]?[0-9]{1,19}\s*$")
_INT64 = (int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max))


def _int_id(value: Any) -> int | None:
    """``value`` as an integer id, or None when it is not one: integers, integral floats and
    decimal text (``" 2"``, ``"-3"``, ``"+4"``) within int64; never booleans."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        out = int(value)
    elif isinstance(value, (float, np.floating)):
        if not np.isfinite(value) or not float(value).is_integer():
            return None
        out = int(value)
    elif isinstance(value, str):
        if not _DECIMAL.match(value):
            return None
        out = int(value)
    else:
        return None
    return out if _INT64[0] <= out <= _INT64[1] else None


def _normalise(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype.kind == "u" and len(arr) and arr.max() > np.iinfo(np.int64).max:
        arr = arr.astype(object)  # beyond int64: kept as decimal strings (below)
    elif arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if np.isfinite(arr).all() and (arr == np.round(arr)).all() and (np.abs(arr) < 2.0**63).all():
            return arr.astype(np.int64)
        raise DataError(f"{name} ids must be integers or strings, got non-integer numbers")
    if arr.dtype.kind == "b":
        raise DataError(f"{name} ids must be integers or strings, got booleans")
    values = arr.tolist()
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        try:
            return np.asarray(values, dtype=np.int64)
        except OverflowError:
            pass  # integers beyond 64 bits: kept as their decimal strings
    if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in values):
        raise DataError(f"{name} ids contain missing values")
    strs = [str(v) for v in values]
    if any("\x00" in v for v in strs):
        raise DataError(f"{name} ids must not contain NUL characters")
    # numpy str scalars, like int64 ids: ``ids[i].item()`` gives a plain Python id either way
    return np.asarray([np.str_(v) for v in strs], dtype=object)
