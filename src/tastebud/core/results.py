"""Results as external-id item lists, batch-shaped."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tastebud.data.idmap import IdMap


@dataclass
class Explanation:
    """Why an item was recommended: a short sentence and the contributions behind it.

    ``contributions`` pairs an external id (an item in the person's history, a neighbour user,
    or a feature name) with its weight in the score.
    """

    text: str
    contributions: list[tuple[Any, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "contributions": [[_py(c), float(w)] for c, w in self.contributions]}


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass
class Recommendations:
    """Top-k lists for a batch of queries (users, or items for ``similar_items``).

    ``items[row]`` and ``scores[row]`` hold one list each: at most k entries, fewer when there
    were fewer candidates, never padded. Item ids keep the vocabulary's type (an ``int64``
    array for integer ids, ``str`` otherwise); ``query`` names what the rows are for (``user``
    or ``query_item``), which is the first column of ``to_frame`` and the key of ``to_records``.
    """

    users: list[Any]
    items: list[np.ndarray]
    scores: list[np.ndarray]
    explanations: list[list[Explanation]] | None = None
    warnings: list[str] = field(default_factory=list)
    query: str = "user"

    @classmethod
    def from_topk(
        cls,
        users: Sequence[Any],
        vocabulary: IdMap,
        idx: np.ndarray,
        scores: np.ndarray,
        explanations: list[list[Explanation]] | None = None,
        warnings: list[str] | None = None,
        query: str = "user",
    ) -> Recommendations:
        """From padded (n, k) top-k blocks of item indices (-1 and NaN pad a short row): each row
        is cut to its real entries and indices become the vocabulary's ids."""
        idx, scores = np.atleast_2d(idx), np.atleast_2d(scores)
        keep = [np.asarray(row >= 0) for row in idx]
        item_rows = [_id_array(vocabulary.ids[row[mask]]) for row, mask in zip(idx, keep, strict=True)]
        score_rows = [np.asarray(v[mask], np.float32) for v, mask in zip(scores, keep, strict=True)]
        if explanations is not None:
            explanations = [list(e[: int(mask.sum())]) for e, mask in zip(explanations, keep, strict=True)]
        return cls(list(users), item_rows, score_rows, explanations, list(warnings or []), query)

    def __len__(self) -> int:
        return len(self.users)

    def __iter__(self) -> Iterator[tuple[Any, list[Any], list[float]]]:
        for row, user in enumerate(self.users):
            yield user, self.items_of(row), self.scores_of(row)

    def items_of(self, row: int) -> list[Any]:
        return self.items[row].tolist()

    def scores_of(self, row: int) -> list[float]:
        return [float(s) for s in self.scores[row]]

    def to_frame(self) -> pd.DataFrame:
        """Tidy frame with columns ``query`` (user or query_item), item, score, rank (from 1).

        Ids keep their type: ``int64`` columns for integer vocabularies, strings otherwise.
        """
        lengths = [len(row) for row in self.items]
        queries = [_py(u) for u, n in zip(self.users, lengths, strict=True) for _ in range(n)]
        items = np.concatenate(self.items) if self.items else np.empty(0, object)
        frame = pd.DataFrame(
            {
                self.query: pd.Series(queries, dtype=_query_dtype(queries)),
                "item": pd.Series(items, dtype=np.int64 if items.dtype.kind in "iu" else None),
                "score": np.concatenate(self.scores) if self.scores else np.empty(0, np.float32),
                "rank": np.concatenate([np.arange(1, n + 1) for n in lengths]) if lengths else np.empty(0, np.int64),
            }
        )
        if self.explanations is not None:
            frame["explanation"] = [e.text for row in self.explanations for e in row]
        return frame

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready list, one entry per query: {user (or query_item), items: [{item, score, rank, explanation?}]}."""
        out = []
        for row, user in enumerate(self.users):
            entries = []
            for col, (item, score) in enumerate(zip(self.items_of(row), self.scores_of(row), strict=True)):
                entry: dict[str, Any] = {"item": item, "score": score, "rank": col + 1}
                if self.explanations is not None:
                    entry["explanation"] = self.explanations[row][col].to_dict()
                entries.append(entry)
            out.append({self.query: _py(user), "items": entries})
        return out


def _id_array(ids: np.ndarray) -> np.ndarray:
    """Ids of one list: ``int64`` for integer vocabularies, an object array of ``str`` otherwise."""
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64, copy=False)
    return np.asarray([str(i) for i in ids], dtype=object)


def _query_dtype(values: Sequence[Any]) -> Any:
    """``int64`` when every query id is an integer (a user trained as ``2``); else pandas infers."""
    ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
    return np.int64 if ints and len(values) else None


def as_list(values: Any) -> Sequence[Any]:
    """Accept one id or a sequence of ids."""
    if isinstance(values, (str, bytes)) or np.isscalar(values):
        return [values]
    return list(values)
