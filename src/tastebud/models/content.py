"""Content-based filtering: a person's profile is the weighted mean of the vectors of the items
they liked, and items are ranked by cosine similarity to it (Pazzani & Billsus 2007; Lops, de
Gemmis & Semeraro 2011). Rocchio-style weights: on explicit data each item is weighted by the
rating minus the person's mean rating, so disliked items push the profile away from what they
share; on implicit data by the interaction value.

Item vectors come from :class:`tastebud.data.features.ItemFeatureEncoder` over
``data.item_features``; items that have features but no interactions are scored like any other
item, so they are recommendable from the first day. Explanations name the features that
contributed most to the cosine.

Fallbacks are explicit and reported in ``report_`` (and as a :class:`FeatureWarning`): an item
without any feature scores 0 (no evidence either way); a person whose history gives an empty
profile scores 0 everywhere; exact ties (these included) are broken by popularity.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tastebud.core.base import Recommender
from tastebud.core.errors import ConfigError, DataError
from tastebud.core.registry import register
from tastebud.core.results import Explanation
from tastebud.core.space import Categorical, Dist
from tastebud.data.features import ItemFeatureEncoder, normalize_blocks
from tastebud.data.interactions import Interactions

# popularity tie-break: small enough never to reorder scores that differ by more than this
_TIE = 1e-6


class FeatureWarning(UserWarning):
    """Items or feature rows that do not line up; the model falls back and says so."""


@register("content")
class ContentBased(Recommender):
    """Content-based recommender over item features (see the module docstring).

    ``feature_blocks``: which feature columns to use and their weights, e.g.
    ``{"genres": 1.0, "year": 0.5, "title": {"weight": 1.0, "kind": "text"}}`` (None: every
    column, kinds inferred, weight 1; JSON-serialisable). ``centered``: weight explicit ratings
    by their distance from the person's mean (False: by the rating itself). ``calibrate``: divide
    each block's cosine by its typical spread, so that weights are shares of the signal (dense
    blocks such as genres would otherwise swamp sparse text). ``cache_dir``: where
    sentence embeddings are cached. ``random_state`` is accepted for a uniform interface; the
    model is deterministic.
    """

    history_preference: ClassVar[int | None] = 1
    demo_params: ClassVar[dict[str, Any] | None] = {}
    lab_default: ClassVar[bool] = True
    uses_features: ClassVar[bool] = True

    supports_history = True
    fast_params: ClassVar[dict[str, Any]] = {}
    renamed_params: ClassVar[dict[str, str | tuple[str, ...]]] = {"blocks": "feature_blocks"}
    # ``blocks`` names the user's own feature columns, so only the weighting scheme is searched.
    search_space: ClassVar[dict[str, Dist]] = {
        "centered": Categorical([True, False]),
        "calibrate": Categorical([True, False]),
    }

    def __init__(
        self,
        feature_blocks: dict[str, Any] | None = None,
        centered: bool = True,
        calibrate: bool = True,
        cache_dir: str | None = None,
        random_state: int = 0,
    ) -> None:
        self.feature_blocks = feature_blocks
        self.centered = centered
        self.calibrate = calibrate
        self.cache_dir = cache_dir
        self.random_state = random_state

    def _validate_params(self) -> None:
        blocks = self.feature_blocks
        if blocks is not None and (not isinstance(blocks, dict) or not blocks):
            raise ConfigError("ContentBased: feature_blocks must be None or a non-empty dict of column -> weight")

    # ------------------------------------------------------------------ fit
    def _fit(self, data: Interactions) -> None:
        frame = data.item_features
        if frame is None:
            raise DataError(
                "content: the data has no item_features; pass a DataFrame indexed by item id (item_features=...)"
            )
        if not isinstance(frame, pd.DataFrame) or frame.empty or len(frame.columns) == 0:
            raise DataError("content: the item feature table is empty; it needs at least one row and one column")
        normalize_blocks(self.feature_blocks, frame)  # ConfigError naming a bad block before any work
        # line the feature rows up with the item vocabulary, both ways, and say what did not fit
        pos = data.items.lookup(frame.index.tolist())
        extra = [_plain(frame.index[i]) for i in np.nonzero(pos < 0)[0]]
        report: dict[str, Any] = {"feature_rows": int(len(frame)), "feature_rows_not_in_data": len(extra)}
        messages = []
        if extra:
            messages.append(
                f"{len(extra)} item(s) in the feature table are not in the data and are ignored: "
                + ", ".join(map(repr, extra[:5]))
                + (" ..." if len(extra) > 5 else "")
            )
        if not (pos >= 0).any():
            raise DataError(
                f"content: none of the {len(frame)} feature rows matches an item of the data (feature ids like "
                f"{', '.join(map(repr, list(frame.index[:3])))}; data ids like {', '.join(map(repr, data.items.ids[:3].tolist()))})"
            )
        aligned = frame.iloc[np.nonzero(pos >= 0)[0]]
        aligned.index = pos[pos >= 0]
        aligned = aligned.reindex(np.arange(data.n_items))
        self.encoder_ = ItemFeatureEncoder(self.feature_blocks, self.cache_dir).fit(aligned.dropna(how="all"))
        V = self.encoder_.transform(aligned)
        norms = np.sqrt(np.asarray(V.multiply(V).sum(axis=1)).ravel())
        has = norms > 0
        n_missing = int((~has).sum())
        report["items_without_features"] = n_missing
        if n_missing:
            ids = data.items.to_ids(np.nonzero(~has)[0][:5]).tolist()
            messages.append(
                f"{n_missing} item(s) of the data have no usable features and fall back to score 0 "
                f"(ranked by popularity among themselves): {', '.join(map(repr, ids))}"
                + (" ..." if n_missing > 5 else "")
            )
        # blocks are already unit length times sqrt(weight) (see ItemFeatureEncoder)
        self.item_vectors_ = sp.csr_matrix(V, dtype=np.float32)
        self.block_weights_ = np.array([b["weight"] for b in self.encoder_.spec_], np.float64)
        self.has_features_ = has
        self.explicit_ = bool(data.explicit)
        self.weights_ = self._weights(sp.csr_matrix(data.matrix, dtype=np.float64))
        self.feature_block_ = self.encoder_.block_of_column().astype(np.int64)
        self.block_scale_ = np.ones(len(self.block_weights_), np.float64)
        if self.calibrate:
            self.block_scale_ = self._calibrate()
        pop = np.bincount(data.matrix.indices, minlength=data.n_items).astype(np.float64)
        self.tiebreak_ = (_TIE * pop / max(1.0, pop.max())).astype(np.float32)
        profile_nnz = np.diff((self.weights_ @ self.item_vectors_).tocsr().indptr)
        report["users_without_profile"] = int((profile_nnz == 0).sum())
        self.report_ = report
        self.feature_names_ = np.asarray(self.encoder_.feature_names(), dtype=str)
        self.feature_block_ = self.encoder_.block_of_column().astype(np.int64)
        for msg in messages:
            warnings.warn(f"content: {msg}", FeatureWarning, stacklevel=3)

    def _calibrate(self, n_sample: int = 256) -> np.ndarray:
        """1 / spread of each block's profile-to-item cosines over a fixed sample of people.

        Cosines of dense blocks (genres, a year) spread widely; those of sparse ones (words) sit
        near zero. Dividing by the spread makes a block's weight its share of the ranking signal.
        """
        users = np.nonzero(np.diff(self.weights_.indptr) > 0)[0]
        users = users[np.linspace(0, len(users) - 1, min(n_sample, len(users))).astype(int)] if len(users) else users
        self.block_scale_ = np.ones(len(self.block_weights_), np.float64)
        P = self._profiles(self.weights_[users])
        scale = np.ones(len(self.block_weights_), np.float64)
        blocks = self.feature_block_
        for b in range(len(self.block_weights_)):
            cols = np.nonzero(blocks == b)[0]
            if self.block_weights_[b] == 0 or len(cols) == 0 or len(users) == 0:
                continue
            items = np.nonzero(np.diff(self.item_vectors_[:, cols].tocsr().indptr) > 0)[0]
            if len(items) < 2:
                continue
            scores = (P[:, cols] @ self.item_vectors_[items][:, cols].T).toarray()
            # the profile carries sqrt(w_b) / sum(w) and the item sqrt(w_b): undo it, so the
            # calibration measures the cosines themselves and leaves the weights in charge
            spread = float(scores.std(axis=1).mean()) * self.block_weights_.sum() / self.block_weights_[b]
            if spread > 1e-12:
                scale[b] = 1.0 / spread
        return scale / scale.min()

    def _weights(self, m: sp.csr_matrix) -> sp.csr_matrix:
        """Profile weights per (person, item): centred ratings, or raw values on implicit data."""
        m = m.copy()
        if self.explicit_ and self.centered and m.nnz:
            n = m.shape[0]
            counts = np.diff(m.indptr)
            rows = np.repeat(np.arange(n), counts)
            row_mean = np.bincount(rows, weights=m.data, minlength=n) / np.maximum(counts, 1)
            centred = m.data - row_mean[rows]
            # a person who gave every item the same rating liked them all equally
            flat = np.bincount(rows, weights=np.abs(centred), minlength=n)[rows] < 1e-9
            m.data = np.where(flat, 1.0, centred)
        m.eliminate_zeros()
        return m

    def _weights_history(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, np.float64)
        if self.explicit_ and self.centered and len(v):
            c = v - v.mean()
            return np.ones_like(v) if np.abs(c).sum() < 1e-9 else c
        return v

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, attrs = super()._state()
        spec, enc = self.encoder_.state()
        attrs["encoder_spec_"] = spec
        for key, value in enc.items():
            arrays[f"encoder.{key}"] = value
        return arrays, attrs

    def _set_state(self, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
        enc = {k[len("encoder.") :]: arrays.pop(k) for k in list(arrays) if k.startswith("encoder.")}
        spec = attrs.pop("encoder_spec_", None)
        super()._set_state(arrays, attrs)
        if spec is not None:
            self.encoder_ = ItemFeatureEncoder.from_state(spec, enc, self.cache_dir)

    # ------------------------------------------------------------------ scoring
    def _profiles(self, weights: sp.csr_matrix) -> sp.csr_matrix:
        """Profiles normalised block by block, so that profile . item = sum_b w_b cos_b / sum_b w_b.

        Normalising the whole profile at once would let dense blocks (a year, genres) swamp
        sparse ones (words), whose averaged vectors are short; per block, each counts by its weight.
        """
        P = sp.csr_matrix(weights @ self.item_vectors_, dtype=np.float64)
        P.sort_indices()
        blk = self.feature_block_[P.indices]
        rows = np.repeat(np.arange(P.shape[0]), np.diff(P.indptr))
        n_blocks = int(self.block_weights_.shape[0])
        key = rows * n_blocks + blk
        sq = np.bincount(key, weights=P.data * P.data, minlength=P.shape[0] * n_blocks)
        norm = np.sqrt(sq[key])
        w = self.block_weights_[blk]
        total = self.block_weights_.sum()
        scale = self.block_scale_[blk]
        P.data = np.where(
            norm > 0, P.data / np.where(norm > 0, norm, 1.0) * np.sqrt(w) * scale / max(total, 1e-12), 0.0
        )
        P.eliminate_zeros()
        return P

    def _score_profiles(self, P: sp.csr_matrix, item_idx: np.ndarray | None) -> np.ndarray:
        V = self.item_vectors_ if item_idx is None else self.item_vectors_[item_idx]
        tie = self.tiebreak_ if item_idx is None else self.tiebreak_[item_idx]
        return np.asarray((P @ V.T).toarray(), dtype=np.float64) + tie[None, :]

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        return self._score_profiles(self._profiles(self.weights_[user_idx]), item_idx)

    def _history_weights(self, item_idx: np.ndarray, values: np.ndarray) -> sp.csr_matrix:
        w = self._weights_history(values)
        return sp.csr_matrix((w, (np.zeros(len(item_idx), int), item_idx)), shape=(1, self.n_items))

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        return self._score_profiles(self._profiles(self._history_weights(item_idx, values)), None)[0]

    def _similar(self, item_idx: np.ndarray) -> np.ndarray:
        return (self.item_vectors_[item_idx] @ self.item_vectors_.T).toarray() + self.tiebreak_[None, :]

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        history = sp.csr_matrix(history)
        if user_idx >= 0:
            weights = self.weights_[user_idx]
        else:
            weights = self._history_weights(history.indices, history.data)
        p = self._profiles(weights).toarray()[0]
        names = self.feature_names_
        blocks = self.feature_block_
        spec = getattr(self.encoder_, "spec_", [])
        grouped = {j for j, b in enumerate(spec) if b["kind"] in ("embedding", "numeric")}
        out = []
        for i in item_idx:
            row = self.item_vectors_[int(i)]
            if row.nnz == 0:
                out.append(
                    Explanation(
                        "no features for this item; ranked by popularity",
                        [("popularity", float(self.tiebreak_[i] / _TIE))],
                    )
                )
                continue
            contrib = row.data.astype(np.float64) * p[row.indices]
            agg: dict[str, float] = {}
            for c, w in zip(row.indices, contrib, strict=False):
                b = int(blocks[c])
                key = spec[b]["name"] if b in grouped else str(names[c])
                agg[key] = agg.get(key, 0.0) + float(w)
            top = sorted(((k, w) for k, w in agg.items() if w > 0), key=lambda kw: (-kw[1], kw[0]))[:3]
            if not top:
                out.append(Explanation("no feature in common with what you liked", []))
                continue
            out.append(Explanation("matches " + ", ".join(f"{k} ({w:.2f})" for k, w in top), top))
        return out


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so messages show 1076 rather than np.int64(1076)."""
    return value.item() if isinstance(value, np.generic) else value
