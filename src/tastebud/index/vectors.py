"""Which models can be served from a vector index, and with which vectors.

A model is index-servable when its score is an inner product: ``score(u, i) = <p_u, q_i> (+ b_i)``
(plus any per-user constant, which does not change a ranking). A model says so by storing factors
under a conventional name: ``user_factors_`` / ``item_factors_`` (also ``user_vectors_`` /
``item_vectors_``, ``user_embeddings_`` / ``item_embeddings_``), with an optional item bias
``item_bias_`` (or ``item_biases_``) folded in as one extra dimension; a model that also defines
``history_vector(item_idx, values) -> vector`` answers a person not in the model from the index.

The claim is *checked*: the model's own scores (:meth:`Recommender.score_rows`) for a sample of
users must equal the inner products up to a per-user constant, else the model is served by exact
scoring instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

_PAIRS = (
    ("user_factors_", "item_factors_"),
    ("user_vectors_", "item_vectors_"),
    ("user_embeddings_", "item_embeddings_"),
)
_BIASES = ("item_bias_", "item_biases_")


@dataclass
class FactorView:
    """User and item vectors whose inner products rank items the way the model does."""

    user_vectors: np.ndarray
    item_vectors: np.ndarray
    history_vector: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    source: str = ""

    @property
    def dim(self) -> int:
        return int(self.item_vectors.shape[1])


def factor_view(model: Any, check_users: int = 8, check_items: int = 2000, rtol: float = 1e-3) -> FactorView | None:
    """The verified :class:`FactorView` of a fitted model, or None if its scores are not inner products."""
    candidates: list[tuple[np.ndarray, np.ndarray, str]] = []
    for uname, iname in _PAIRS:
        u, v = getattr(model, uname, None), getattr(model, iname, None)
        if (
            isinstance(u, np.ndarray)
            and isinstance(v, np.ndarray)
            and u.ndim == 2
            and v.ndim == 2
            and u.shape[1] == v.shape[1]
        ):
            for bname in _BIASES:
                b = getattr(model, bname, None)
                if isinstance(b, np.ndarray) and b.shape == (v.shape[0],):
                    candidates.append(
                        (
                            np.hstack([u, np.ones((len(u), 1), u.dtype)]).astype(np.float32),
                            np.hstack([v, b[:, None]]).astype(np.float32),
                            f"{uname} . {iname} + {bname}",
                        )
                    )
            candidates.append(
                (u.astype(np.float32, copy=False), v.astype(np.float32, copy=False), f"{uname} . {iname}")
            )
    for users, items, source in candidates:
        if users.shape[0] != model.n_users or items.shape[0] != model.n_items:
            continue
        if _matches(model, users, items, check_users, check_items, rtol):
            hist = getattr(model, "history_vector", None)
            return FactorView(
                np.ascontiguousarray(users), np.ascontiguousarray(items), hist if callable(hist) else None, source
            )
    return None


def _matches(model: Any, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, rtol: float) -> bool:
    rng = np.random.default_rng(0)
    uidx = np.sort(rng.choice(model.n_users, min(n_users, model.n_users), replace=False)).astype(np.int64)
    iidx = np.sort(rng.choice(model.n_items, min(n_items, model.n_items), replace=False)).astype(np.int64)
    try:
        scores = np.asarray(model.score_rows(uidx, iidx), dtype=np.float64)
    except Exception:  # noqa: BLE001
        return False
    dots = users[uidx].astype(np.float64) @ items[iidx].astype(np.float64).T
    if scores.shape != dots.shape or not np.isfinite(scores).all():
        return False
    resid = scores - dots
    spread = np.abs(resid - resid.mean(axis=1, keepdims=True)).max()
    scale = max(1e-6, float(np.abs(dots).max()))
    return bool(spread <= rtol * scale)
