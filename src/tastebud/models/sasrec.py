"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

A person is the ordered list of what they interacted with; a causal Transformer reads it and
predicts the next item at every position. As in the paper: item embeddings (scaled by
sqrt(factors)) plus learned positional embeddings, ``transformer_blocks`` self-attention blocks with
``x + Dropout(f(LayerNorm(x)))`` residuals around causal attention and a point-wise feed-forward
layer, a final layer norm, and the *same* item embedding matrix as the output layer (the score of
item i after prefix t is ``F_t . M_i``). Sequences are left-padded to ``maxlen``; longer
histories keep their most recent ``maxlen`` items.

Losses (``loss``):

* ``"ce"`` (default): full softmax cross-entropy over the catalogue at every position.
  Klenitskiy & Vasilev (RecSys 2023, "Turning Dross Into Gold Loss: is BERT4Rec really better than
  SASRec?") show it is much stronger than the paper's loss; it wins on both MovieLens sets here too
  (see BENCHMARKS.md).
* ``"bce"``: the paper's binary cross-entropy with one negative per position, drawn uniformly from
  items the person never interacted with.
* ``"sampled_softmax"``: softmax over the positive and ``negatives`` uniform negatives shared by
  the batch (accidental hits masked), for catalogues too large for the full softmax.

By default (``patience=5``) each person's last training item is held out as the validation target
(the paper's protocol: the item before the test item), NDCG@10 over all items is measured every
epoch, training stops after ``patience`` epochs without gain and the best weights are kept, so
``epochs`` is a ceiling rather than a cost; recommendations still read the whole training
sequence. ``patience=None`` trains every epoch on every item. Training goes through the shared
:class:`~tastebud.models._torch.TrainLoop` (progress, checkpoints, resume, NaN guard).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch  # without torch this ImportError makes get_model say which extra to install

from tastebud.core.base import non_negative, positive
from tastebud.core.errors import ConfigError, DataError
from tastebud.core.registry import register
from tastebud.core.results import Recommendations, as_list
from tastebud.core.space import Dist, Float, Int, LogFloat
from tastebud.data.interactions import Interactions
from tastebud.models._torch import (
    BatchLayout,
    TorchModel,
    adam,
    module_from_bytes,
    module_to_bytes,
    pick_device,
    seed_everything,
)

nn = torch.nn
F = torch.nn.functional

WEIGHTS_FILE = "sasrec.safetensors"
SCORE_BATCH = 512


class _Block(nn.Module):
    """One self-attention block: causal attention and a point-wise feed-forward layer (eq. 4-6)."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln_attn = nn.LayerNorm(d, eps=1e-8)
        self.qkv = nn.Linear(d, 3 * d)
        self.ln_ffn = nn.LayerNorm(d, eps=1e-8)
        self.ffn1 = nn.Linear(d, d)
        self.ffn2 = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Any, allowed: Any, keep: Any) -> Any:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln_attn(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        x = x + self.drop(att.transpose(1, 2).reshape(b, n, d))
        x = x + self.drop(self.ffn2(self.drop(F.relu(self.ffn1(self.ln_ffn(x))))))
        return x * keep


class _SASRecNet(nn.Module):
    """Embeddings, blocks, final layer norm. Item index 0 is padding; item i is row i + 1."""

    def __init__(self, n_items: int, d: int, blocks: int, heads: int, maxlen: int, dropout: float) -> None:
        super().__init__()
        self.scale = math.sqrt(d)
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(maxlen, d)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([_Block(d, heads, dropout) for _ in range(blocks)])
        self.ln_out = nn.LayerNorm(d, eps=1e-8)
        for emb in (self.item_emb, self.pos_emb):
            nn.init.xavier_normal_(emb.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, seq: Any) -> Any:
        """Hidden states (B, L, d) for left-padded item sequences (B, L <= maxlen) (0 = padding).

        Sequences end at the last column, which is position ``maxlen - 1``; a batch whose
        sequences are all shorter than ``maxlen`` may be passed with the all-padding columns on
        the left cut off (padding neither attends nor is attended to, so the result is the same).
        """
        n = seq.shape[1]
        valid = seq != 0
        keep = valid.unsqueeze(-1).to(self.item_emb.weight.dtype)
        pos = torch.arange(self.pos_emb.num_embeddings - n, self.pos_emb.num_embeddings, device=seq.device)
        x = self.item_emb(seq) * self.scale + self.pos_emb(pos)
        x = self.drop(x) * keep
        causal = torch.ones(n, n, dtype=torch.bool, device=seq.device).tril()
        # a real position sees the real positions up to itself; a padding position only itself
        # (so no row is fully masked and no NaN appears)
        allowed = (causal & valid[:, None, :]) | torch.eye(n, dtype=torch.bool, device=seq.device)
        allowed = allowed.unsqueeze(1)
        for block in self.blocks:
            x = block(x, allowed, keep)
        return self.ln_out(x)

    def items(self) -> Any:
        return self.item_emb.weight[1:]


def _ordered_sequences(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Each user's items ordered by time, ties by input order: (indptr, items)."""
    n = len(data.user_idx)
    keys = (np.arange(n), data.user_idx) if data.timestamps is None else (np.arange(n), data.timestamps, data.user_idx)
    order = np.lexsort(keys)
    items = data.item_idx[order].astype(np.int32)
    indptr = np.zeros(data.n_users + 1, np.int64)
    np.cumsum(np.bincount(data.user_idx, minlength=data.n_users), out=indptr[1:])
    return indptr, items


def _pad_left(seqs: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Left-padded matrix of the last ``length`` items (+1, 0 = padding)."""
    out = np.zeros((len(seqs), length), np.int64)
    for row, s in enumerate(seqs):
        tail = s[-length:] if length else s[:0]
        if len(tail):
            out[row, length - len(tail) :] = np.asarray(tail, np.int64) + 1
    return out


def _trim(padded: np.ndarray) -> np.ndarray:
    """Drop the left columns that are padding in every row (exact: see ``_SASRecNet.forward``)."""
    used = np.nonzero((padded != 0).any(axis=0))[0]
    return padded[:, used[0] :] if len(used) else padded[:, -1:]


def _sample_unseen(rng: np.random.Generator, users: np.ndarray, seen_keys: np.ndarray, n_items: int) -> np.ndarray:
    """One uniform item per entry of ``users`` that the user never interacted with (rejection)."""
    out = rng.integers(0, n_items, size=len(users))
    for _ in range(50):
        keys = users.astype(np.int64) * n_items + out
        pos = np.searchsorted(seen_keys, keys)
        pos[pos == len(seen_keys)] = 0
        bad = seen_keys[pos] == keys if len(seen_keys) else np.zeros(len(keys), bool)
        if not bad.any():
            break
        out[bad] = rng.integers(0, n_items, size=int(bad.sum()))
    return out


class SequenceRows(BatchLayout):
    """A SASRec batch: (inputs[B, L], targets[N], mask[B, L], negatives). Targets (and ``bce``
    negatives) are one per real position, row-major, so a block of rows owns a contiguous segment
    of them; the loss is a mean over the N positions, so a share weighs its positions."""

    def __init__(self, per_position_negatives: bool) -> None:
        self.per_position_negatives = per_position_negatives

    def rows(self, batch: tuple[Any, ...]) -> int:
        return int(batch[0].shape[0])

    def terms(self, batch: tuple[Any, ...], cuts: np.ndarray) -> list[int]:
        ends = self._ends(batch[2])
        return [int(ends[b] - ends[a]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]

    def take(self, batch: tuple[Any, ...], lo: int, hi: int) -> tuple[Any, ...]:
        inp, tgt, mask, neg = batch
        ends = self._ends(mask)
        plo, phi = int(ends[lo]), int(ends[hi])
        if neg is not None and self.per_position_negatives:
            neg = neg[plo:phi]
        # the columns are not re-trimmed: every row is computed exactly as in the whole batch
        return inp[lo:hi], tgt[plo:phi], mask[lo:hi], neg

    @staticmethod
    def _ends(mask: Any) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(mask.sum(dim=1).cpu().numpy())]).astype(np.int64)


@register("sasrec")
class SASRec(TorchModel):
    """Self-attentive sequential recommendation (Kang & McAuley 2018); see the module docstring.

    ``recommend`` reads each known user's training sequence; ``recommend_for_history`` takes an
    ordered session (oldest first) and predicts what comes next without retraining.
    """

    supports_history: ClassVar[bool] = True
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("torch", "neural"),)
    history_preference: ClassVar[int | None] = 3
    demo_params: ClassVar[dict[str, Any] | None] = {"epochs": 5}
    fast_params: ClassVar[dict[str, Any]] = {
        "factors": 8,
        "transformer_blocks": 1,
        "maxlen": 12,
        "epochs": 2,
        "batch_size": 64,
        "device": "cpu",
    }
    renamed_params: ClassVar[dict[str, str | tuple[str, ...]]] = {
        "blocks": "transformer_blocks",
        "n_negatives": "negatives",
    }
    search_space: ClassVar[dict[str, Dist]] = {
        "factors": Int(16, 128, log=True),
        "transformer_blocks": Int(1, 3),
        "maxlen": Int(10, 200, log=True),
        "dropout": Float(0.0, 0.5),
        "learning_rate": LogFloat(1e-4, 1e-2),
    }
    sequential: ClassVar[bool] = True

    def __init__(
        self,
        factors: int = 64,
        transformer_blocks: int = 2,
        heads: int = 1,
        maxlen: int = 50,
        dropout: float = 0.2,
        loss: Literal["ce", "bce", "sampled_softmax"] = "ce",
        negatives: int = 256,
        epochs: int = 200,
        batch_size: int = 128,
        learning_rate: float = 0.001,
        reg: float = 0.0,
        patience: int | None = 5,
        checkpoint_dir: str | None = None,
        resume: bool = False,
        progress: bool = False,
        device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.transformer_blocks = transformer_blocks
        self.heads = heads
        self.maxlen = maxlen
        self.dropout = dropout
        self.loss = loss
        self.negatives = negatives
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.reg = reg
        self.patience = patience
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.progress = progress
        self.device = device
        self.random_state = random_state

    def _validate_params(self) -> None:
        owner = "SASRec"
        positive(
            owner,
            factors=self.factors,
            transformer_blocks=self.transformer_blocks,
            heads=self.heads,
            maxlen=self.maxlen,
            negatives=self.negatives,
            learning_rate=self.learning_rate,
        )
        super()._validate_params()  # the shared training settings (epochs, batch_size, patience, ...)
        non_negative(owner, reg=self.reg)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{owner}: dropout must be in [0, 1), got {self.dropout!r}")
        if self.factors % self.heads:
            raise ConfigError(f"{owner}: factors ({self.factors}) must be divisible by heads ({self.heads})")

    # ------------------------------------------------------------------ training
    def _new_net(self) -> _SASRecNet:
        return _SASRecNet(self.n_items, self.factors, self.transformer_blocks, self.heads, self.maxlen, self.dropout)

    def batch_layout(self) -> BatchLayout:
        return SequenceRows(per_position_negatives=self.loss == "bce")

    def _fit(self, data: Interactions) -> None:
        device = pick_device(self.device)
        seed_everything(self.random_state)
        indptr, items = _ordered_sequences(data)
        lengths = np.diff(indptr)
        n_items = self.n_items
        seqs = [items[indptr[u] : indptr[u + 1]] for u in range(self.n_users)]

        # validation: the last training item of each user with >= 3 items (the paper's protocol)
        val_users = np.nonzero(lengths >= 3)[0] if self.patience is not None else np.empty(0, np.int64)
        train_seqs = list(seqs)
        for u in val_users:
            train_seqs[u] = seqs[u][:-1]
        train_users = np.array([u for u in range(self.n_users) if len(train_seqs[u]) >= 2], np.int64)
        if len(train_users) == 0:
            raise DataError("SASRec needs at least one user with two or more interactions to learn a sequence")
        padded = _pad_left([train_seqs[u] for u in train_users], self.maxlen + 1)
        seen = data.matrix
        seen_keys = np.unique(
            np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(seen.indptr)) * n_items + seen.indices
        )

        net = self._new_net().to(device)
        optimizer = adam(net.parameters(), lr=self.learning_rate, betas=(0.9, 0.98), weight_decay=self.reg)
        seed = int(self.random_state)
        loss_kind = self.loss
        n_neg = int(self.negatives)

        def batches(epoch: int):  # type: ignore[no-untyped-def]
            rng = np.random.default_rng([seed, epoch, 7])  # epoch-seeded: resume replays exactly
            order = rng.permutation(len(train_users))
            for s in range(0, len(order), self.batch_size):
                rows = order[s : s + self.batch_size]
                block = padded[rows]
                inp, tgt = _trim(block[:, :-1]), block[:, 1:]
                tgt = tgt[:, tgt.shape[1] - inp.shape[1] :]
                mask = inp != 0
                neg = None
                if loss_kind == "bce":
                    users = np.broadcast_to(train_users[rows][:, None], inp.shape)[mask]
                    neg = _sample_unseen(rng, users, seen_keys, n_items) + 1
                elif loss_kind == "sampled_softmax":
                    neg = rng.integers(0, n_items, size=n_neg) + 1
                yield (
                    torch.from_numpy(inp).to(device),
                    torch.from_numpy(tgt[mask]).to(device),
                    torch.from_numpy(mask).to(device),
                    None if neg is None else torch.from_numpy(neg).to(device),
                )

        def step(batch: Any) -> Any:
            inp, tgt, mask, neg = batch
            hidden = net(inp)[mask]  # (N, d): one prediction per real position
            emb = net.item_emb.weight
            if loss_kind == "ce":
                return F.cross_entropy(hidden @ net.items().T, tgt - 1)
            pos_logit = (hidden * emb[tgt]).sum(-1)
            if loss_kind == "bce":
                neg_logit = (hidden * emb[neg]).sum(-1)
                return F.binary_cross_entropy_with_logits(
                    torch.cat([pos_logit, neg_logit]),
                    torch.cat([torch.ones_like(pos_logit), torch.zeros_like(neg_logit)]),
                )
            neg_logit = hidden @ emb[neg].T
            neg_logit = neg_logit.masked_fill(neg[None, :] == tgt[:, None], float("-inf"))
            logits = torch.cat([pos_logit[:, None], neg_logit], dim=1)
            return F.cross_entropy(logits, torch.zeros(len(tgt), dtype=torch.long, device=tgt.device))

        validate = None
        if len(val_users):
            val_inp = _pad_left([train_seqs[u] for u in val_users], self.maxlen)
            val_target = np.array([seqs[u][-1] for u in val_users], np.int64)
            val_seen = [train_seqs[u] for u in val_users]

            def validate() -> float:
                # NDCG@10 over all items, a block of users at a time: memory stays at block x catalogue
                gains = []
                for lo in range(0, len(val_users), SCORE_BATCH):
                    scores = self._forward_scores(net, val_inp[lo : lo + SCORE_BATCH], device)
                    for row, s in enumerate(val_seen[lo : lo + SCORE_BATCH]):
                        scores[row, s] = -np.inf
                    target = scores[np.arange(len(scores)), val_target[lo : lo + SCORE_BATCH]]
                    rank = (scores > target[:, None]).sum(axis=1)
                    gains.append(np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0))
                return float(np.mean(np.concatenate(gains)))

        loop = self._train_loop("sasrec")
        history = loop.run(
            net,
            optimizer,
            batches,
            step,
            validate,
            examples_per_batch=lambda b: int(b[1].shape[0]),
            steps_per_epoch=-(-len(train_users) // self.batch_size),
            layout=self.batch_layout(),
        )
        self._net = net.eval()
        self._device = device
        self.history_ = history
        self.best_epoch_ = loop.best_epoch
        self.seq_indptr_ = np.concatenate([[0], np.cumsum(np.minimum(lengths, self.maxlen))]).astype(np.int64)
        self.seq_items_ = (
            np.concatenate([s[-self.maxlen :] for s in seqs]).astype(np.int32) if len(seqs) else np.empty(0, np.int32)
        )
        self.popularity_ = np.bincount(data.item_idx, minlength=n_items).astype(np.float32)
        if self._hooks.finish is not None:  # the scale layer merges the per-user state of its blocks
            self._hooks.finish(self)

    def merge_user_blocks(
        self, lo: int, hi: int, gather: Callable[[Any], list[Any] | None], total: Callable[[np.ndarray], np.ndarray]
    ) -> None:
        """Popularity summed; each block's (complete) sequences and seen rows to rank 0."""
        self.popularity_ = total(self.popularity_)
        seen = self.user_items_
        # outside its block a rank's sequences are empty, so its seq_items_ are its block's, in user order
        every = gather((seen[lo:hi], np.diff(self.seq_indptr_)[lo:hi], self.seq_items_))
        if every is None:
            return
        self.user_items_ = sp.vstack([p[0] for p in every], format="csr")
        lengths = np.concatenate([p[1] for p in every])
        self.seq_indptr_ = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.seq_items_ = np.concatenate([p[2] for p in every]).astype(np.int32)

    # ------------------------------------------------------------------ scoring
    def _forward_scores(self, net: _SASRecNet, padded: np.ndarray, device: Any) -> np.ndarray:
        """Scores of every item after each padded sequence (the last position's hidden state)."""
        out = np.empty((len(padded), self.n_items), np.float32)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            items = net.items()
            for s in range(0, len(padded), SCORE_BATCH):
                inp = torch.from_numpy(_trim(padded[s : s + SCORE_BATCH])).to(device)
                last = net(inp)[:, -1, :]
                out[s : s + SCORE_BATCH] = (last @ items.T).cpu().numpy()
        net.train(was_training)
        return out

    def _score_sequences(self, seqs: Sequence[np.ndarray], item_idx: np.ndarray | None) -> np.ndarray:
        scores = self._forward_scores(self._net, _pad_left(seqs, self.maxlen), self._device)
        for row, s in enumerate(seqs):
            if len(s) == 0:  # nothing to read: fall back to popularity
                scores[row] = self.popularity_
        return scores if item_idx is None else scores[:, item_idx]

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        seqs = [self.seq_items_[self.seq_indptr_[u] : self.seq_indptr_[u + 1]] for u in user_idx]
        return self._score_sequences(seqs, item_idx)

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        return self._score_sequences([np.asarray(item_idx, np.int64)], None)[0]

    def _similar(self, item_idx: np.ndarray) -> np.ndarray:
        """Cosine similarity of the (shared input/output) item embeddings."""
        with torch.no_grad():
            emb = self._net.items().cpu().numpy().astype(np.float32)
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb[item_idx] @ emb.T

    def recommend_for_history(
        self,
        items: Sequence[Any],
        values: Sequence[float] | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        candidates: Sequence[Any] | None = None,
        explain: bool = False,
    ) -> Recommendations:
        """Next items after an ordered session (oldest first); ``values`` are not used (order is).

        An empty session (or one with only unknown items) gets the most popular items; a session
        longer than ``maxlen`` is read from its last ``maxlen`` items. Both are reported in
        ``warnings``.
        """
        recs = super().recommend_for_history(items, values, k, exclude_seen, candidates, explain)
        known = int((self.items_.lookup(as_list(items)) >= 0).sum())
        if known > self.maxlen:  # an empty one is the base class's popularity fallback, already reported
            recs.warnings.append(f"history has {known} known items; SASRec read the last {self.maxlen} (maxlen)")
        return recs

    # ------------------------------------------------------------------ persistence
    def _extra_files(self) -> dict[str, bytes]:
        return {WEIGHTS_FILE: module_to_bytes(self._net)}

    def _load_extra(self, files: dict[str, bytes]) -> None:
        if WEIGHTS_FILE not in files:
            raise KeyError(WEIGHTS_FILE)
        self._device = pick_device(self.device)
        self._net = module_from_bytes(self._new_net(), files[WEIGHTS_FILE]).to(self._device).eval()
