"""Two-tower training examples: one per (user, item) pair of the training matrix, with a sampled
history of the user's other items, in batches whose order, history draws, id dropout, anonymous
rows, context masking and extra negatives are pure functions of (``random_state``, epoch), so a
resumed run replays them exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from tastebud.models._torch import BatchLayout, require_torch
from tastebud.models.two_tower.features import request_context
from tastebud.models.two_tower.loss import StreamingFrequency

if TYPE_CHECKING:
    from tastebud.models.two_tower.estimator import TwoTower


class ExampleRows(BatchLayout):
    """A two-tower batch is a dict of tensors with one row per example, except the batch's extra
    negatives, which every share scores (a rank's share keeps them whole)."""

    SHARED = ("neg", "logq_neg")

    def rows(self, batch: dict[str, Any]) -> int:
        return len(batch["items"])

    def take(self, batch: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
        return {k: (v if k in self.SHARED else v[lo:hi]) for k, v in batch.items()}


def sample_history(
    rng: np.random.Generator,
    indptr: np.ndarray,
    indices: np.ndarray,
    users: np.ndarray,
    target_pos: np.ndarray,
    L: int,
    short_share: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """For each example, up to ``L`` of the user's *other* items (the target left out).

    A ``short_share`` of the examples get a shorter history, its length drawn log-uniformly
    between 1 and what fits, so that the tower learns to serve people with a handful of items.
    """
    b = len(users)
    m = np.diff(indptr)[users] - 1  # number of other items
    cap = np.minimum(m, L)
    short = rng.random(b) < short_share
    drawn = np.floor(np.exp(rng.random(b) * np.log(np.maximum(cap, 1) + 1.0))).astype(np.int64)
    length = np.where(short, np.clip(drawn, 1, None), cap)
    length = np.minimum(length, cap)
    j = np.arange(L)[None, :]
    small = (m <= L)[:, None]
    cand = np.where(small, j, np.floor(rng.random((b, L)) * np.maximum(m, 1)[:, None]).astype(np.int64))
    valid = cand < m[:, None]
    keys = rng.random((b, L))
    keys[~valid] = np.inf
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    mask = valid & (rank < length[:, None])
    pos = cand + (cand >= target_pos[:, None])
    flat = np.clip(indptr[users][:, None] + pos, 0, max(len(indices) - 1, 0))
    hist = np.where(mask, indices[flat] if len(indices) else 0, 0)
    return hist.astype(np.int64), mask


def cosine_rate(learning_rate: float, step: int, n_steps: int) -> float:
    """Cosine annealing to zero over ``n_steps`` (Loshchilov, Hutter. "SGDR: Stochastic Gradient
    Descent with Warm Restarts." ICLR 2017, without restarts)."""
    return 0.5 * float(learning_rate) * (1.0 + np.cos(np.pi * step / n_steps))


class TrainingBatches:
    """``batches(epoch)``: the epoch's batches as dicts of tensors on ``device`` (see
    :class:`ExampleRows`), for :meth:`TrainLoop.run`.

    ``train`` is the training matrix (validation pairs held out), ``last_ts`` each of its pairs'
    latest timestamp (None: no request context). With ``lr_schedule="cosine"`` the optimizer's
    learning rate is set before each batch is handed out, a pure function of the step.
    """

    def __init__(
        self, model: TwoTower, train: sp.csr_matrix, last_ts: np.ndarray | None, device: Any, optimizer: Any
    ) -> None:
        self.model = model
        self.last_ts = last_ts
        self.device = device
        self.optimizer = optimizer
        self.seed = int(model.random_state)
        self.indptr, self.indices = train.indptr.astype(np.int64), train.indices.astype(np.int64)
        self.example_user = np.repeat(np.arange(model.n_users, dtype=np.int64), np.diff(self.indptr))
        self.n_examples, self.batch_size = len(self.indices), int(model.batch_size)
        self.steps_per_epoch = -(-self.n_examples // self.batch_size)
        self.n_steps = max(1, self.steps_per_epoch) * int(model.epochs)
        self._frequency: StreamingFrequency | None = None
        self._frequency_epoch = -1  # the last epoch the estimator has seen whole

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's permutation of the training examples."""
        return np.random.default_rng([self.seed, epoch, 0]).permutation(self.n_examples)

    def frequency_at(self, epoch: int) -> StreamingFrequency:
        """The logQ estimator as it stands at the start of ``epoch``: it is a pure function of the
        batch order, so a resumed run replays the epochs before it."""
        if self._frequency_epoch != epoch - 1 or self._frequency is None:
            m = self.model
            prior = max(1.0, m.n_items / self.batch_size)
            est = StreamingFrequency(int(m.freq_buckets), float(m.freq_alpha), int(m.freq_hashes), prior, self.seed)
            for e in range(epoch):
                order = self.order(e)
                for s in range(0, self.n_examples, self.batch_size):
                    est.update(self.indices[order[s : s + self.batch_size]])
            self._frequency = est
        return self._frequency

    def __call__(self, epoch: int) -> Iterator[dict[str, Any]]:
        torch = require_torch()
        m, device, bs = self.model, self.device, self.batch_size
        indptr, indices = self.indptr, self.indices
        use_item_drop = m.n_item_features_ > 0 and m.id_dropout > 0
        n_neg = int(m.negatives)
        est = self.frequency_at(epoch)
        order = self.order(epoch)
        rng = np.random.default_rng([self.seed, epoch, 1])
        for s in range(0, self.n_examples, bs):
            if m.lr_schedule == "cosine":
                rate = cosine_rate(m.learning_rate, epoch * self.steps_per_epoch + s // bs, self.n_steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = rate
            ex = order[s : s + bs]
            users, items = self.example_user[ex], indices[ex]
            hist, mask = sample_history(
                rng, indptr, indices, users, ex - indptr[users], int(m.max_history), float(m.short_history)
            )
            est.update(items)
            b = len(ex)
            keep_id = (rng.random(b) >= m.id_dropout).astype(np.float32) if use_item_drop else np.ones(b, np.float32)
            keep_user = (rng.random(b) >= 0.5).astype(np.float32)
            ctx = np.zeros((b, 2), np.int64)
            if self.last_ts is not None:
                ctx = request_context(self.last_ts[ex])
                ctx[rng.random(b) < 0.5] = 0  # learn the "unknown request time" slot too
            neg = rng.integers(0, m.n_items, size=n_neg) if n_neg else np.empty(0, np.int64)
            logq = np.log(est.probability(items)) if m.logq else np.zeros(b)
            logq_neg = np.full(n_neg, np.log(n_neg / m.n_items)) if (m.logq and n_neg) else np.zeros(n_neg)
            yield {
                "users": torch.as_tensor(users, device=device),
                "items": torch.as_tensor(items, device=device),
                "hist": torch.as_tensor(hist, device=device),
                "mask": torch.as_tensor(mask, device=device),
                "keep_id": torch.as_tensor(keep_id, device=device),
                "keep_user": torch.as_tensor(keep_user, device=device),
                "ctx": torch.as_tensor(ctx, device=device),
                "neg": torch.as_tensor(neg, device=device),
                "logq": torch.as_tensor(logq, dtype=torch.float32, device=device),
                "logq_neg": torch.as_tensor(logq_neg, dtype=torch.float32, device=device),
            }
        self._frequency_epoch = epoch
