"""The two-tower loss: in-batch sampled softmax with the logQ correction, and the streaming
estimate of each item's in-batch probability that the correction subtracts.

Yi, Yang, Hong, Cheng, Heldt, Kumthekar, Zhao, Wei, Chi. "Sampling-Bias-Corrected Neural
Modeling for Large Corpus Item Recommendations." RecSys 2019 (eq. 3-4 and Algorithm 2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tastebud.models._torch import require_torch


class StreamingFrequency:
    """Yi et al. 2019, Algorithm 2: estimate how often each item appears in a batch.

    ``A[h(y)]`` is the last step at which item y was seen and ``B[h(y)]`` a moving average (rate
    ``alpha``) of the number of steps between two sightings, so ``p(y) = 1 / B[h(y)]``. With
    several hash functions the largest B (the smallest, least collided probability) is used.
    """

    PRIME = 2_147_483_647

    def __init__(self, buckets: int, alpha: float, hashes: int = 2, prior: float = 1.0, seed: int = 0) -> None:
        rng = np.random.default_rng([int(seed), 104729])
        self.buckets = int(buckets)
        self.alpha = float(alpha)
        self.a_coef = rng.integers(1, self.PRIME, size=hashes, dtype=np.int64)
        self.b_coef = rng.integers(0, self.PRIME, size=hashes, dtype=np.int64)
        self.A = np.zeros((hashes, self.buckets), np.float64)
        self.B = np.full((hashes, self.buckets), float(prior), np.float64)
        self.step = 0

    def _hash(self, items: np.ndarray) -> np.ndarray:
        x = np.asarray(items, np.int64)[None, :]
        return ((self.a_coef[:, None] * x + self.b_coef[:, None]) % self.PRIME) % self.buckets

    def update(self, items: np.ndarray) -> None:
        """One training step that saw ``items`` (each distinct item counts once per step)."""
        self.step += 1
        uniq = np.unique(np.asarray(items, np.int64))
        h = self._hash(uniq)
        rows = np.arange(h.shape[0])[:, None]
        seen = self.A[rows, h] > 0
        gap = np.where(seen, self.step - self.A[rows, h], self.B[rows, h])
        self.B[rows, h] = (1.0 - self.alpha) * self.B[rows, h] + self.alpha * gap
        self.A[rows, h] = self.step

    def probability(self, items: np.ndarray) -> np.ndarray:
        h = self._hash(items)
        rows = np.arange(h.shape[0])[:, None]
        return 1.0 / np.maximum(self.B[rows, h].max(axis=0), 1.0)


def sampled_softmax_loss(
    u: Any,
    v: Any,
    items: Any,
    logq: Any,
    temperature: float,
    neg_v: Any = None,
    neg_items: Any = None,
    logq_neg: Any = None,
) -> Any:
    """In-batch sampled softmax (Yi et al. 2019, eq. 3 with the correction of eq. 4).

    Row i's positive is column i. Logits are ``<u_i, v_j> / temperature - logq_j``; a column
    holding row i's own item anywhere but on the diagonal (an accidental hit) is masked out, as
    is an extra negative equal to it. Pass ``logq`` zeros to switch the correction off.
    """
    return softmax_rows(u, v, items, items, logq, 0, temperature, neg_v, neg_items, logq_neg)


def softmax_rows(
    u: Any,
    v_all: Any,
    items: Any,
    items_all: Any,
    logq_all: Any,
    offset: int,
    temperature: float,
    neg_v: Any = None,
    neg_items: Any = None,
    logq_neg: Any = None,
) -> Any:
    """Rows ``offset .. offset + len(u)`` of the in-batch sampled softmax (Yi et al. 2019, eq. 3-4).

    Row ``i``'s positive is column ``offset + i``; any other column holding the same item is
    masked out, as is an extra negative equal to it; the mean is over these rows.
    """
    torch = require_torch()
    logits = u @ v_all.T / temperature - logq_all[None, :]
    same = items[:, None] == items_all[None, :]
    own = torch.arange(len(items), device=items.device) + offset
    same[torch.arange(len(items), device=items.device), own] = False
    logits = logits.masked_fill(same, float("-inf"))
    if neg_v is not None and len(neg_items):
        ln = u @ neg_v.T / temperature - logq_neg[None, :]
        ln = ln.masked_fill(items[:, None] == neg_items[None, :], float("-inf"))
        logits = torch.cat([logits, ln], dim=1)
    return torch.nn.functional.cross_entropy(logits, own)
