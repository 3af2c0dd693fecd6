"""Baselines every other model must beat: random, popularity, and the bias model."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import RatingModel, Recommender, non_negative, positive
from tastebud.core.registry import register
from tastebud.core.results import Explanation
from tastebud.core.space import Categorical, Dist, LogFloat
from tastebud.data.interactions import Interactions


@register("random")
class Random(Recommender):
    """Uniformly random scores, reproducible per (seed, user): the floor of every table."""

    baseline: ClassVar[bool] = True
    history_preference: ClassVar[int | None] = None  # a baseline: never picked by itself
    demo_params: ClassVar[dict[str, Any] | None] = {}

    supports_history = True
    docs_page = "conventions"
    # a floor has nothing to tune: ``random_state`` only reshuffles the noise.
    search_space: ClassVar[dict[str, Dist]] = {}

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def _fit(self, data: Interactions) -> None:
        self.seed_ = int(self.random_state)

    def _row(self, key: int) -> np.ndarray:
        return np.random.default_rng([self.seed_, key + 1]).random(self.n_items, dtype=np.float32)

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        block = (
            np.stack([self._row(int(u)) for u in user_idx])
            if len(user_idx)
            else np.empty((0, self.n_items), np.float32)
        )
        return block if item_idx is None else block[:, item_idx]

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        return self._row(-1)

    def _similar(self, item_idx: np.ndarray) -> np.ndarray:
        return np.stack([self._row(self.n_users + int(i)) for i in item_idx])


@register("popular")
class MostPopular(Recommender):
    """Items ranked by how many people interacted with them.

    ``half_life_days`` weights each interaction by ``0.5 ** (age / half_life)`` relative to the
    newest event, so that what is popular *now* wins (needs timestamps).
    """

    baseline: ClassVar[bool] = True
    history_preference: ClassVar[int | None] = None  # a baseline: never picked by itself
    demo_params: ClassVar[dict[str, Any] | None] = {}
    lab_default: ClassVar[bool] = True

    supports_history = True
    docs_page = "conventions"
    # None counts every interaction alike (and is what data without timestamps gets anyway).
    search_space: ClassVar[dict[str, Dist]] = {"half_life_days": Categorical([None, 7.0, 30.0, 90.0, 365.0, 1825.0])}

    def __init__(self, half_life_days: float | None = None) -> None:
        self.half_life_days = half_life_days

    def _validate_params(self) -> None:
        if self.half_life_days is not None:
            positive("MostPopular", half_life_days=self.half_life_days)

    def _fit(self, data: Interactions) -> None:
        m = data.matrix
        if self.half_life_days is None or data.timestamps is None:
            weights = np.ones(len(m.data), np.float64)
            pop = np.bincount(m.indices, weights=weights, minlength=data.n_items)
        else:
            age_days = (data.timestamps.max() - data.timestamps) / 86400.0
            pop = np.bincount(data.item_idx, weights=0.5 ** (age_days / self.half_life_days), minlength=data.n_items)
        self.popularity_ = pop.astype(np.float32)

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        pop = self.popularity_ if item_idx is None else self.popularity_[item_idx]
        return np.broadcast_to(pop, (len(user_idx), len(pop)))

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        return self.popularity_

    def _similar(self, item_idx: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(item_idx), self.n_items))

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        return [
            Explanation(
                f"popular: {self.popularity_[i]:.0f} interactions", [("popularity", float(self.popularity_[i]))]
            )
            for i in item_idx
        ]


@register("bias")
class Bias(RatingModel):
    """Regularised bias baseline: r_ui = mu + b_u + b_i (Koren 2010, section 2.1).

    Fitted by alternating least squares as Surprise's BaselineOnly does: each step solves the
    biases of one side exactly given the other, with damping ``reg_user_bias`` / ``reg_item_bias``.
    """

    history_preference: ClassVar[int | None] = None  # a baseline: never picked by itself
    demo_params: ClassVar[dict[str, Any] | None] = {}

    supports_history = True
    renamed_params: ClassVar[dict[str, str | tuple[str, ...]]] = {
        "reg_user": "reg_user_bias",
        "reg_item": "reg_item_bias",
    }
    docs_page = "conventions"
    search_space: ClassVar[dict[str, Dist]] = {
        "reg_user_bias": LogFloat(0.1, 100.0),
        "reg_item_bias": LogFloat(0.1, 100.0),
    }

    def __init__(self, reg_user_bias: float = 5.0, reg_item_bias: float = 3.0, epochs: int = 20) -> None:
        self.reg_user_bias = reg_user_bias
        self.reg_item_bias = reg_item_bias
        self.epochs = epochs

    def _validate_params(self) -> None:
        non_negative("Bias", reg_user_bias=self.reg_user_bias, reg_item_bias=self.reg_item_bias)
        positive("Bias", epochs=self.epochs)

    def _fit(self, data: Interactions) -> None:
        m = data.matrix.tocoo()
        u, i, r = m.row, m.col, m.data.astype(np.float64)
        self.global_mean_ = float(r.mean())
        n_u = np.bincount(u, minlength=data.n_users)
        n_i = np.bincount(i, minlength=data.n_items)
        bu = np.zeros(data.n_users)
        bi = np.zeros(data.n_items)
        reg_u, reg_i = self.reg_user_bias, self.reg_item_bias
        for _ in range(self.epochs):
            bi = np.bincount(i, weights=r - self.global_mean_ - bu[u], minlength=data.n_items) / (reg_i + n_i)
            bu = np.bincount(u, weights=r - self.global_mean_ - bi[i], minlength=data.n_users) / (reg_u + n_u)
        self.user_bias_ = bu.astype(np.float32)
        self.item_bias_ = bi.astype(np.float32)

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        bi = self.item_bias_ if item_idx is None else self.item_bias_[item_idx]
        return self.global_mean_ + self.user_bias_[user_idx][:, None] + bi[None, :]

    def _predict_pairs(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        bu = np.where(user_idx >= 0, self.user_bias_[np.clip(user_idx, 0, None)], 0.0)
        bi = np.where(item_idx >= 0, self.item_bias_[np.clip(item_idx, 0, None)], 0.0)
        return self.global_mean_ + bu + bi

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        # a new person's bias is only a constant shift: rank by item bias
        return self.global_mean_ + self.item_bias_

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        return [
            Explanation(
                f"item bias {self.item_bias_[i]:+.2f} over the mean", [("item_bias", float(self.item_bias_[i]))]
            )
            for i in item_idx
        ]
