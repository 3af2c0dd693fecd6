"""Hybrid: a blend of fitted models, by weighted score fusion or reciprocal rank fusion.

Blending collaborative models that err differently (a neighbourhood model and a factor model,
say) is the classic hybrid of Burke 2002 ("Hybrid recommender systems: survey and experiments",
the *weighted* hybrid). Two fusions:

* ``method="score"``: each member's scores are standardised per person (z-scores over the
  candidate items, so a model on a 1..5 scale and one on an unbounded scale weigh the same) and
  summed with ``weights``;
* ``method="rrf"``: reciprocal rank fusion (Cormack, Clarke & Buettcher 2009, "Reciprocal rank
  fusion outperforms Condorcet and individual rank learning methods"):
  ``score(i) = sum_m w_m / (rrf_k + rank_m(i))``; it needs no score calibration at all.

The blend is itself a model in the contract: ``fit`` fits every member on the same data, saving
stores every member's state inside the hybrid's folder, and ``recommend_for_history`` blends the
members that can fold a new person in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import Recommender
from tastebud.core.errors import ConfigError, NotSupportedError, UnknownModelError
from tastebud.core.members import load_members, member_files
from tastebud.core.registry import get_model, register
from tastebud.core.results import Explanation
from tastebud.core.space import Categorical, Dist, Int
from tastebud.data.interactions import Interactions


@register("hybrid")
class Hybrid(Recommender):
    """Weighted score fusion or reciprocal rank fusion of several models (Burke 2002; Cormack et al. 2009)."""

    history_preference: ClassVar[int | None] = 10

    fast_params = {"models": ["popular", "bias"], "method": "rrf"}
    docs_page = "serving"
    # which models to blend (and their own parameters) is the user's design; the fusion is searched.
    # ``weights`` is a list per blend, so it is left out: tune the members, then fix the weights.
    search_space: ClassVar[dict[str, Dist]] = {"method": Categorical(["score", "rrf"]), "rrf_k": Int(5, 200, log=True)}

    def __init__(
        self,
        models: Sequence[str] = ("itemknn", "ials"),
        weights: Sequence[float] | None = None,
        method: Literal["score", "rrf"] = "rrf",
        rrf_k: int = 60,
        params: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.models = models
        self.weights = weights
        self.method = method
        self.rrf_k = rrf_k
        self.params = params

    # ------------------------------------------------------------------ params
    def _validate_params(self) -> None:
        names = list(self.models) if isinstance(self.models, (list, tuple)) else None
        if not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"Hybrid: models must be a non-empty list of model names, got {self.models!r}")
        if len(set(names)) != len(names):
            raise ConfigError(f"Hybrid: models has duplicate names: {names}")
        if "hybrid" in names:
            raise ConfigError("Hybrid: models cannot contain 'hybrid' itself")
        if self.weights is not None:
            w = list(self.weights) if isinstance(self.weights, (list, tuple)) else None
            if w is None or len(w) != len(names):
                raise ConfigError(
                    f"Hybrid: weights must have one number per model ({len(names)}), got {self.weights!r}"
                )
            if (
                not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) and x >= 0 for x in w
                )
                or sum(w) <= 0
            ):
                raise ConfigError(
                    f"Hybrid: weights must be finite numbers >= 0 with a positive sum, got {self.weights!r}"
                )
        if self.rrf_k < 1:
            raise ConfigError(f"Hybrid: rrf_k must be >= 1, got {self.rrf_k!r}")
        if self.params is not None:
            if not isinstance(self.params, dict) or not all(isinstance(v, dict) for v in self.params.values()):
                raise ConfigError("Hybrid: params must map a model name to a dict of its hyper-parameters")
            extra = set(self.params) - set(names)
            if extra:
                raise ConfigError(f"Hybrid: params names models not in the blend: {sorted(extra)}")

    def _weights(self) -> np.ndarray:
        return normalised_weights(len(self.models), self.weights)

    # ------------------------------------------------------------------ fit / compose
    def _fit(self, data: Interactions) -> None:
        members = []
        for name in self.models:
            try:
                cls = get_model(name)
            except UnknownModelError as exc:
                raise ConfigError(f"Hybrid: models: {exc}") from None
            try:
                member = cls(**(self.params or {}).get(name, {}))
            except (TypeError, ConfigError) as exc:
                raise ConfigError(f"Hybrid: params for '{name}': {exc}") from None
            members.append(member.fit(data))
        self._attach(members)

    @classmethod
    def from_fitted(
        cls,
        models: Sequence[Recommender],
        weights: Sequence[float] | None = None,
        method: Literal["score", "rrf"] = "rrf",
        rrf_k: int = 60,
    ) -> Hybrid:
        """Blend already fitted models (same users and items) without refitting them."""
        models = list(models)
        if not models:
            raise ConfigError("Hybrid.from_fitted: give at least one fitted model")
        first = models[0]
        first._check_fitted()
        for m in models[1:]:
            m._check_fitted()
            if m.items_ != first.items_ or m.users_ != first.users_:
                raise ConfigError(
                    f"Hybrid.from_fitted: '{m.name}' was fitted on other users or items than '{first.name}'"
                )
        blend = cls(
            models=[m.name for m in models],
            weights=None if weights is None else list(weights),
            method=method,
            rrf_k=rrf_k,
        )
        blend._check_params()
        blend.users_, blend.items_ = first.users_, first.items_
        blend.user_items_ = first.user_items_
        blend.fingerprint_ = getattr(first, "fingerprint_", None)
        blend.rating_scale_ = getattr(first, "rating_scale_", None)
        blend.fit_seconds_ = float(sum(getattr(m, "fit_seconds_", 0.0) for m in models))
        blend._attach(models)
        return blend

    def _attach(self, members: list[Recommender]) -> None:
        self._members = members
        # an instance attribute: the blend folds a person in when any member can
        self.supports_history = any(m.supports_history for m in members)

    @property
    def members(self) -> list[Recommender]:
        """The fitted member models, in the order of ``models``."""
        self._check_fitted()
        return list(self._members)

    # ------------------------------------------------------------------ fusion
    def _fuse(self, blocks: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
        signals = [fusion_signal(block, self.method) for block in blocks]
        return fuse(signals, weights, self.method, self.rrf_k)

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        # the members' public scores (float32), as a fusion search on validation sees them
        blocks = [m.score_rows(user_idx, item_idx) for m in self._members]
        return self._fuse(blocks, self._weights())

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        blocks, weights = [], []
        for m, w in zip(self._members, self._weights(), strict=False):
            if m.supports_history:
                blocks.append(np.asarray(m._score_history(item_idx, values), np.float64).reshape(1, -1))
                weights.append(w)
        if not blocks:
            raise NotSupportedError(f"none of the blended models ({', '.join(self.models)}) recommends from a history")
        return self._fuse(blocks, np.asarray(weights) / sum(weights))[0]

    def _similar(self, item_idx: np.ndarray) -> np.ndarray:
        blocks, weights = [], []
        for m, w in zip(self._members, self._weights(), strict=False):
            try:
                block = np.array(m._similar(item_idx), np.float64, copy=True)
            except NotSupportedError:
                continue
            block[np.arange(len(item_idx)), item_idx] = -np.inf  # the item itself does not count as a rank
            blocks.append(block)
            weights.append(w)
        if not blocks:
            raise NotSupportedError(
                f"none of the blended models ({', '.join(self.models)}) has item-to-item similarity"
            )
        return self._fuse(blocks, np.asarray(weights) / sum(weights))

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        ranks = []
        for m in self._members:
            if user_idx >= 0:
                row = np.asarray(m._score(np.array([user_idx]), None), np.float64)
            elif m.supports_history:
                row = np.asarray(m._score_history(history.indices.astype(np.int64), history.data), np.float64).reshape(
                    1, -1
                )
            else:
                ranks.append(None)
                continue
            ranks.append(member_ranks(row)[0])
        how = "reciprocal rank fusion" if self.method == "rrf" else "score fusion"
        out = []
        for i in item_idx:
            parts = [(m.name, int(r[i])) for m, r in zip(self._members, ranks, strict=False) if r is not None]
            text = f"blend ({how}): " + ", ".join(f"{name} #{rank}" for name, rank in parts)
            out.append(Explanation(text, [(name, float(rank)) for name, rank in parts]))
        return out

    # ------------------------------------------------------------------ persistence
    def _extra_files(self) -> dict[str, bytes]:
        return member_files(self._members)

    def _load_extra(self, files: dict[str, bytes]) -> None:
        self._attach(load_members(self, list(self.models), files))


def normalised_weights(n: int, weights: Sequence[float] | None) -> np.ndarray:
    """The members' shares of the blend: ``weights`` (equal when None) divided by their sum."""
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    return w / w.sum()


def fusion_signal(block: np.ndarray, method: str) -> np.ndarray:
    """What one member's score block adds to the fusion, before weighting: its 1-based ranks per
    row (``rrf``) or its per-row z-scores (``score``), in float64."""
    block = np.asarray(block, np.float64)
    return member_ranks(block) if method == "rrf" else standardise(block)


def fuse(signals: Sequence[np.ndarray], weights: np.ndarray, method: str, rrf_k: int) -> np.ndarray:
    """The blend of the members' :func:`fusion_signal` blocks with normalised ``weights`` (float32).

    One definition for the model and for the fusion search on validation
    (:func:`tastebud.tune.choose_fusion`), so a configuration scores the same in both."""
    out = np.zeros(np.shape(signals[0]), np.float64)
    for signal, w in zip(signals, weights, strict=False):
        out += w / (rrf_k + signal) if method == "rrf" else w * signal
    return out.astype(np.float32)


def member_ranks(block: np.ndarray) -> np.ndarray:
    """1-based rank of each column per row (best = 1); ties break towards the lower column."""
    order = np.argsort(-np.nan_to_num(block, nan=-np.inf), axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, block.shape[1] + 1)[None, :].repeat(block.shape[0], axis=0), axis=1)
    return ranks.astype(np.float64)


def standardise(block: np.ndarray) -> np.ndarray:
    """Per-row z-scores over the finite scores; ``-inf`` stays far below, NaN counts as the mean."""
    finite = np.isfinite(block)
    safe = np.where(finite, block, np.nan)
    with np.errstate(all="ignore"):
        mean = np.nanmean(safe, axis=1, keepdims=True)
        std = np.nanstd(safe, axis=1, keepdims=True)
    mean = np.nan_to_num(mean)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    z = (block - mean) / std
    return np.where(finite, z, np.where(np.isneginf(block), -1e9, 0.0))
