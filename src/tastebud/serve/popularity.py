"""Popularity for people with no history, optionally by demographics or context.

For each categorical user feature (at most ``max_values`` distinct values, e.g. age group,
country, occupation) the item counts of every segment are kept. A request that gives
``context={"country": "FR"}`` is ranked by the share of each item within the matching segments;
no match (or no context) falls back to global popularity: the library's own fallback
(``Recommender.popular_items``), which the engine calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tastebud.core import persist
from tastebud.core.errors import ModelFormatError
from tastebud.data.interactions import Interactions

KIND = "tastebud-popularity"


class Popularity:
    """Global and per-segment item counts over one item vocabulary."""

    def __init__(self, counts: np.ndarray, segments: dict[tuple[str, str], np.ndarray] | None = None) -> None:
        self.counts = np.asarray(counts, np.float64)
        self.segments = segments or {}

    @classmethod
    def from_interactions(cls, data: Interactions, max_values: int = 50) -> Popularity:
        m = data.matrix
        counts = np.bincount(m.indices, minlength=data.n_items).astype(np.float64)
        segments: dict[tuple[str, str], np.ndarray] = {}
        feats = data.user_features
        if feats is not None:
            user_ids = pd.Index(data.users.ids)
            per_user = np.diff(m.indptr)
            rows = np.repeat(np.arange(data.n_users), per_user)
            for col in feats.columns:
                series = feats[col]
                if pd.api.types.is_float_dtype(series) or series.nunique(dropna=True) > max_values:
                    continue
                aligned = series.reindex(user_ids)
                values = aligned.astype(str).where(aligned.notna(), None).to_numpy(dtype=object)
                for value in pd.unique(values[pd.notna(values)]):
                    users = values == value
                    mask = users[rows]
                    segments[(str(col), str(value))] = np.bincount(m.indices[mask], minlength=data.n_items).astype(
                        np.float64
                    )
        return cls(counts, segments)

    def scores(self, context: dict[str, Any] | None = None) -> tuple[np.ndarray, list[str]]:
        """Scores over items and the segments that matched."""
        matched = []
        if context:
            for key, value in context.items():
                if (str(key), str(value)) in self.segments:
                    matched.append((str(key), str(value)))
        if not matched:
            return self.counts, []
        share = np.zeros_like(self.counts)
        for seg in matched:
            c = self.segments[seg]
            share += c / max(1.0, c.sum())
        # global popularity breaks ties among items no one in the segment has touched
        share = share / len(matched) + 1e-9 * self.counts / max(1.0, self.counts.sum())
        return share, [f"{k}={v}" for k, v in matched]

    def save(self, directory: str | Path) -> Path:
        keys = sorted(self.segments)
        arrays = {"counts": self.counts}
        arrays.update({f"seg{j}": self.segments[key] for j, key in enumerate(keys)})
        return persist.write_bundle(directory, {"kind": KIND, "segments": [list(k) for k in keys]}, arrays)

    @classmethod
    def load(cls, directory: str | Path) -> Popularity:
        manifest, arrays, _ = persist.read_bundle(directory)
        if manifest.get("kind") != KIND:
            raise ModelFormatError(f"{directory}: not a popularity table")
        segs = {tuple(key): arrays[f"seg{j}"] for j, key in enumerate(manifest.get("segments", []))}
        return cls(arrays["counts"], segs)  # type: ignore[arg-type]
