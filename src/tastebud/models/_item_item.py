"""Scoring shared by the models whose state is a sparse item x item matrix ``weights_``.

RP3beta and SLIM both score a person as ``x_u W``: the same product serves known users, a history
(fold-in), item-to-item similarity (row j of W: how much having item j raises every other item)
and an exact explanation (the score split into its history items' terms ``x_uj W_ji``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import Recommender
from tastebud.core.results import Explanation
from tastebud.models._common import check_values


class SparseItemItem(Recommender):
    """Base of models that learn a sparse item x item ``weights_`` (CSR) and score ``x_u W``."""

    supports_history = True
    #: How an explanation names the items behind a score ("because of", "reached from", ...).
    explain_phrase: ClassVar[str] = "because of"

    weights_: sp.csr_matrix

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        W = self.weights_ if item_idx is None else self.weights_[:, item_idx]
        return (self.user_items_[user_idx] @ W).toarray()

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, np.float32)
        check_values(values, "history values")
        x = np.zeros(self.n_items, np.float32)
        np.add.at(x, np.asarray(item_idx, np.int64), values)
        return np.asarray(self.weights_.T @ x).ravel()

    def _similar(self, item_idx: np.ndarray) -> np.ndarray:
        return self.weights_[np.asarray(item_idx, np.int64)].toarray()

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        """The score ``sum_j x_uj W_ji`` split into its history items' terms (exact)."""
        history = sp.csr_matrix(history)
        hist, vals = history.indices, history.data.astype(np.float32)
        out = []
        for i in item_idx:
            contrib = vals * self.weights_[hist, int(i)].toarray().ravel() if len(hist) else np.zeros(0)
            if not (contrib > 0).any():
                out.append(Explanation("no item of the history leads to it"))
                continue
            top = np.argsort(-contrib, kind="stable")[:5]
            top = top[contrib[top] > 0]
            ids = self.items_.to_ids(hist[top])
            out.append(
                Explanation(
                    f"{self.explain_phrase} {', '.join(map(str, ids[:3]))} in your history (total {contrib.sum():.4g})",
                    [(x, float(w)) for x, w in zip(ids, contrib[top], strict=False)],
                )
            )
        return out
