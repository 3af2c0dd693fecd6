"""RP3beta: item-to-item random walks with a popularity penalty (Paudel et al., TiiS 2017).

"Updatable, Accurate, Diverse, and Scalable Recommendations for Interactive Applications" ranks
items by the probability of a three-step random walk user -> item -> user -> item on the
bipartite interaction graph, re-weighted to lift the long tail. With ``P_ui`` the user-to-item
transition matrix (each user's row of X divided by its sum) and ``P_iu`` the item-to-user one
(each item's binary column divided by the item's degree), the item-to-item weights are

    W_ij = (P_iu^a P_ui^a)_ij / deg(j)^b,     W_ii = 0,

keeping only the ``neighbors`` largest weights of each row; a user's scores are ``x_u W``.
``a`` (``transition_exponent``) sharpens (> 1) or flattens (< 1) the transition probabilities,
element-wise as in the paper's P^alpha walk; ``b`` (``popularity_exponent``, the paper's beta)
divides by the target item's popularity. ``a = 1, b = 0`` is plain P3. Dacrema, Cremonesi and
Jannach (RecSys 2019) found it the strongest simple baseline for top-N on MovieLens-sized data.

The walk is computed in blocks of item rows, each densified to at most 64 MB, so the peak memory
is the sparse result plus one block whatever the catalogue size.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import non_negative, positive
from tastebud.core.ranking import topk
from tastebud.core.registry import register
from tastebud.core.space import Categorical, Dist, Float, Int
from tastebud.data.interactions import Interactions
from tastebud.models._common import check_values
from tastebud.models._item_item import SparseItemItem

_BLOCK_BYTES = 64 << 20


@register("rp3beta")
class RP3beta(SparseItemItem):
    """Graph-walk item-item model with a popularity penalty; no training loop, exact explanations.

    ``neighbors`` caps each item's list of weights (the paper's top-K); ``transition_exponent`` is
    the paper's alpha, ``popularity_exponent`` its beta (0.3 to 0.7 usually helps the long tail);
    ``normalize`` divides each item's kept weights by their sum.
    """

    explain_phrase = "reached from"
    fast_params: ClassVar[dict[str, Any]] = {"neighbors": 20}
    demo_params: ClassVar[dict[str, Any] | None] = {}
    search_space: ClassVar[dict[str, Dist]] = {
        "neighbors": Int(10, 500, log=True),
        "transition_exponent": Float(0.1, 1.5),
        "popularity_exponent": Float(0.0, 1.0),
        "normalize": Categorical([True, False]),
    }

    def __init__(
        self,
        neighbors: int = 342,
        transition_exponent: float = 0.6559,
        popularity_exponent: float = 0.5276,
        normalize: bool = True,
    ) -> None:
        self.neighbors = neighbors
        self.transition_exponent = transition_exponent
        self.popularity_exponent = popularity_exponent
        self.normalize = normalize

    def _validate_params(self) -> None:
        positive("RP3beta", neighbors=self.neighbors, transition_exponent=self.transition_exponent)
        non_negative("RP3beta", popularity_exponent=self.popularity_exponent)

    def _fit(self, data: Interactions) -> None:
        X = sp.csr_matrix(self.user_items_, dtype=np.float32)
        check_values(X.data, "interaction values")
        X.eliminate_zeros()
        n_items = X.shape[1]
        a, b = float(self.transition_exponent), float(self.popularity_exponent)
        # user -> item: each user's row of values, summing to one
        user_sums = np.asarray(X.sum(axis=1)).ravel()
        p_ui = sp.diags(_inverse(user_sums)) @ X
        # item -> user: each item's binary column, summing to one over its users
        binary = X.T.tocsr()
        binary.data[:] = 1.0
        degree = np.asarray(binary.sum(axis=1)).ravel()
        p_iu = sp.diags(_inverse(degree)) @ binary
        if a != 1.0:
            p_ui = p_ui.power(a)
            p_iu = p_iu.power(a)
        p_ui, p_iu = sp.csr_matrix(p_ui, dtype=np.float32), sp.csr_matrix(p_iu, dtype=np.float32)
        penalty = np.zeros(n_items, np.float32)
        nonzero = degree > 0
        penalty[nonzero] = degree[nonzero] ** -b
        k = min(int(self.neighbors), max(1, n_items - 1))
        rows_per_block = max(1, _BLOCK_BYTES // (4 * max(1, n_items)))
        indptr = [np.zeros(1, np.int64)]
        indices, weights = [], []
        for r0 in range(0, n_items, rows_per_block):
            r1 = min(n_items, r0 + rows_per_block)
            block = (p_iu[r0:r1] @ p_ui).toarray()
            block *= penalty[None, :]
            block[np.arange(r1 - r0), np.arange(r0, r1)] = 0.0
            block[block <= 0.0] = -np.inf  # keep only real transitions
            idx, val = topk(block, k)
            keep = idx >= 0
            indices.append(idx[keep])
            weights.append(val[keep].astype(np.float32))
            indptr.append(indptr[-1][-1] + np.cumsum(keep.sum(axis=1)))
        W = sp.csr_matrix(
            (np.concatenate(weights), np.concatenate(indices), np.concatenate(indptr)), shape=(n_items, n_items)
        )
        if self.normalize:
            W = sp.csr_matrix(sp.diags(_inverse(np.asarray(W.sum(axis=1)).ravel())) @ W, dtype=np.float32)
        W.sort_indices()
        self.weights_ = W


def _inverse(values: np.ndarray) -> np.ndarray:
    """1 / values, with 0 where a value is 0 (an empty row stays empty)."""
    out = np.zeros(len(values), np.float64)
    nz = values != 0
    out[nz] = 1.0 / values[nz]
    return out


__all__ = ["RP3beta"]
