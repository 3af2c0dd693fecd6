"""Results as external-id item lists, batch-shaped."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


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
    """Top-k lists for a batch of users.

    ``items`` and ``scores`` have shape (n_users, k); a list shorter than k (too few candidates)
    is padded with ``None`` items and NaN scores, which ``to_frame`` and iteration drop.
    """

    users: list[Any]
    items: np.ndarray
    scores: np.ndarray
    explanations: list[list[Explanation]] | None = None
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.users)

    def __iter__(self) -> Iterator[tuple[Any, list[Any], list[float]]]:
        for row, user in enumerate(self.users):
            yield user, self.items_of(row), self.scores_of(row)

    def _valid(self, row: int) -> np.ndarray:
        return ~np.isnan(self.scores[row])

    def items_of(self, row: int) -> list[Any]:
        return [_py(i) for i in self.items[row][self._valid(row)]]

    def scores_of(self, row: int) -> list[float]:
        return [float(s) for s in self.scores[row][self._valid(row)]]

    def to_frame(self) -> pd.DataFrame:
        """Tidy frame with columns user, item, score, rank (rank starts at 1)."""
        n, k = self.scores.shape if self.scores.ndim == 2 else (0, 0)
        valid = ~np.isnan(self.scores)
        frame = pd.DataFrame(
            {
                "user": np.repeat(np.asarray(self.users, dtype=object), k)[valid.ravel()] if n else [],
                "item": self.items[valid] if n else [],
                "score": self.scores[valid] if n else [],
                "rank": np.tile(np.arange(1, k + 1), n)[valid.ravel()] if n else [],
            }
        )
        if self.explanations is not None and n:
            flat = [e.text for row in self.explanations for e in row]
            frame["explanation"] = flat
        return frame

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready list, one entry per user: {user, items: [{item, score, rank, explanation?}]}."""
        out = []
        for row, user in enumerate(self.users):
            valid = np.nonzero(self._valid(row))[0]
            entries = []
            for rank, col in enumerate(valid, start=1):
                entry: dict[str, Any] = {
                    "item": _py(self.items[row, col]),
                    "score": float(self.scores[row, col]),
                    "rank": rank,
                }
                if self.explanations is not None:
                    entry["explanation"] = self.explanations[row][col].to_dict()
                entries.append(entry)
            out.append({"user": _py(user), "items": entries})
        return out


def as_list(values: Any) -> Sequence[Any]:
    """Accept one id or a sequence of ids."""
    if isinstance(values, (str, bytes)) or np.isscalar(values):
        return [values]
    return list(values)
