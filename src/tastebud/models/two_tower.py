"""The two-tower retrieval model (Covington et al. 2016; Yi et al. 2019).

Covington, Adams, Sargin. "Deep Neural Networks for YouTube Recommendations." RecSys 2016.
Yi, Yang, Hong, Cheng, Heldt, Kumthekar, Zhao, Wei, Chi. "Sampling-Bias-Corrected Neural
Modeling for Large Corpus Item Recommendations." RecSys 2019.

* **User tower**: the pooled item-tower vectors of the person's recent items (mean, or additive
  attention pooling; the item tower is shared, so history and candidates live in one space); an
  optional user-id embedding; demographics from ``data.user_features`` (age in bins, gender,
  occupation, ...); the request context (hour of day, day of week) when the data has timestamps.
  An MLP maps the concatenation to a correction that is added to the pooled vector (a residual
  that starts near zero), then the sum is L2-normalised: a person with a handful of items starts
  from "the mean of your items' vectors", which needs no training row.
* **Item tower**: the item-id embedding plus the item's feature vector from
  :class:`tastebud.data.features.ItemFeatureEncoder` (genres multi-hot, year in bins, TF-IDF of
  the title or description, or sentence embeddings with ``text="embedding"``), projected and
  passed through an MLP to a unit vector of the same dimension. The id part is dropped at random
  while training (``id_dropout``) so that the tower also works from features alone, which is how
  items without interactions get their vectors.
* **Loss**: in-batch sampled softmax over cosine scores divided by ``temperature``, each logit
  corrected by ``-log p_j``, the probability that item j is in a batch, estimated by streaming
  (Yi et al. 2019, Algorithm 2: hashed arrays A (last step seen) and B (moving average of the
  gap), ``p = 1 / B``; the maximum over ``freq_hashes`` hash functions of B guards against
  collisions). Accidental hits (the same item elsewhere in the batch) are masked out; optional
  ``negatives`` extra uniformly sampled items join every row's candidates.
* **Item bias** (``item_bias=True``, off by default): a learned scalar per item added to the
  cosine score, ``(<u, v_j> + c_j) / temperature``, the item bias of biased matrix factorisation
  (Koren, Bell, Volinsky. "Matrix Factorization Techniques for Recommender Systems." IEEE
  Computer 2009). With the logQ correction the logits estimate the full softmax, whose
  popularity part the bounded cosine can only hold in its geometry; the bias holds it as one
  number per item, which matters for people known by a handful of items (for them "popular"
  is much of what is known). Served as ``<u, v_j> + item_bias_[j]``; items without training
  interactions get the lowest learned bias.
* **Schedule**: ``lr_schedule="cosine"`` anneals Adam's learning rate to zero over ``epochs``
  (Loshchilov, Hutter. "SGDR: Stochastic Gradient Descent with Warm Restarts." ICLR 2017, without
  restarts), so the last epoch is a settled model instead of one point of a noisy trajectory.

Serving: after ``fit`` the whole catalogue's vectors are in ``item_factors_`` (for an ANN index);
:meth:`TwoTower.encode_items` turns a feature table of new items into vectors; the user tower runs
at query time on a live history (:meth:`TwoTower.encode_history`, ``recommend_for_history``),
so a person with no training row is served without retraining.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tastebud.core.base import non_negative, positive
from tastebud.core.errors import ConfigError, DataError, ModelFormatError
from tastebud.core.registry import register
from tastebud.core.results import Explanation
from tastebud.core.space import Dist, Float, Int, LogFloat
from tastebud.data.interactions import Interactions
from tastebud.models._torch import (
    BatchLayout,
    TorchModel,
    module_from_bytes,
    module_to_bytes,
    pick_device,
    require_torch,
    seed_everything,
)
from tastebud.models.ncf import hit_rate, holdout

WEIGHTS = "weights.safetensors"
TEXT_COLUMNS = ("description", "text", "title")
USER_COLUMNS = ("age", "gender", "occupation")
ML_AGE_EDGES = [18.0, 25.0, 35.0, 45.0, 50.0, 56.0]  # the MovieLens age groups


# ---------------------------------------------------------------------- streaming frequencies
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


class ExampleRows(BatchLayout):
    """A two-tower batch is a dict of tensors with one row per example, except the batch's extra
    negatives, which every share scores (a rank's share keeps them whole)."""

    SHARED = ("neg", "logq_neg")

    def rows(self, batch: dict[str, Any]) -> int:
        return len(batch["items"])

    def take(self, batch: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
        return {k: (v if k in self.SHARED else v[lo:hi]) for k, v in batch.items()}


# ---------------------------------------------------------------------- feature encoding
def _padded(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """CSR rows as padded (index + 1, weight) matrices; index 0 / weight 0 is padding."""
    m = sp.csr_matrix(m, dtype=np.float32)
    counts = np.diff(m.indptr)
    width = max(1, int(counts.max()) if len(counts) else 1)
    idx = np.zeros((m.shape[0], width), np.int64)
    val = np.zeros((m.shape[0], width), np.float32)
    rows = np.repeat(np.arange(m.shape[0]), counts)
    cols = np.arange(m.nnz) - np.repeat(m.indptr[:-1], counts)
    idx[rows, cols] = m.indices + 1
    val[rows, cols] = m.data
    return idx, val


def _padded_rows(parts: list[np.ndarray]) -> np.ndarray:
    """Row blocks of padded feature matrices (widths may differ) as one matrix, padded with 0."""
    width = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]))) for p in parts], axis=0)


def _aligned(frame: pd.DataFrame, ids: Any, what: str) -> pd.DataFrame:
    """``frame`` rows in vocabulary order (ids missing from the frame get an empty row)."""
    pos = ids.lookup(frame.index.to_numpy())
    src = np.full(len(ids), -1, np.int64)
    keep = pos >= 0
    src[pos[keep]] = np.nonzero(keep)[0]
    if len(frame) == 0:
        return pd.DataFrame(index=pd.RangeIndex(len(ids)), columns=frame.columns)
    out = frame.iloc[np.clip(src, 0, None)].reset_index(drop=True)
    absent = np.nonzero(src < 0)[0]
    if len(absent):
        out = out.astype({c: object for c in out.columns if not pd.api.types.is_numeric_dtype(out[c])})
        for col in out.columns:
            out.loc[absent, col] = np.nan if pd.api.types.is_numeric_dtype(out[col]) else None
    return out


def _encoder_state(enc: Any, prefix: str) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    spec, arrays = enc.state()
    return spec, {f"{prefix}/{k}": v for k, v in arrays.items()}


# ---------------------------------------------------------------------- torch modules
_NETS: dict[str, Any] = {}


def _nets() -> dict[str, Any]:
    if _NETS:
        return _NETS
    torch = require_torch()
    nn = torch.nn
    F = torch.nn.functional

    def mlp(in_dim: int, widths: Sequence[int]) -> Any:
        mods: list[Any] = []
        for j, w in enumerate(widths):
            mods.append(nn.Linear(in_dim, int(w)))
            if j < len(widths) - 1:
                mods.append(nn.ReLU())
            in_dim = int(w)
        return nn.Sequential(*mods)

    class Bag(nn.Module):
        """A sparse feature vector (padded index / weight) times a learned matrix."""

        def __init__(self, n_features: int, dim: int) -> None:
            super().__init__()
            self.emb = nn.Embedding(n_features + 1, dim, padding_idx=0)
            nn.init.normal_(self.emb.weight, std=0.05)
            with torch.no_grad():
                self.emb.weight[0].zero_()

        def forward(self, idx: Any, val: Any) -> Any:
            return F.embedding_bag(idx, self.emb.weight, per_sample_weights=val, mode="sum")

    class ItemTower(nn.Module):
        def __init__(self, n_items: int, dim: int, n_features: int, layers: Sequence[int], bias: bool = False) -> None:
            super().__init__()
            self.ids = nn.Embedding(n_items, dim)
            nn.init.normal_(self.ids.weight, std=0.05)
            # a learned per-item scalar in cosine units (item_bias); starts at zero
            self.bias = nn.Embedding(n_items, 1) if bias else None
            if self.bias is not None:
                nn.init.zeros_(self.bias.weight)
            self.features = Bag(n_features, dim) if n_features else None
            self.mlp = mlp(dim * (2 if n_features else 1), layers)
            self.out_dim = int(layers[-1])

        def forward(self, items: Any, keep_id: Any, f_idx: Any, f_val: Any) -> Any:
            parts = [self.ids(items) * keep_id.unsqueeze(-1)]
            if self.features is not None:
                parts.append(self.features(f_idx, f_val))
            return F.normalize(self.mlp(torch.cat(parts, dim=-1)), dim=-1)

    class UserTower(nn.Module):
        def __init__(
            self,
            n_users: int,
            dim: int,
            n_features: int,
            layers: Sequence[int],
            pooling: str,
            user_ids: bool,
            context: bool,
            pool_dim: int | None = None,
        ) -> None:
            super().__init__()
            self.pooling = pooling
            # the pooled history lives in the item tower's output space (pool_dim = its width)
            pool_dim = int(layers[-1]) if pool_dim is None else int(pool_dim)
            if pooling == "attention":
                self.att = nn.Sequential(nn.Linear(pool_dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
            self.user = nn.Embedding(n_users, dim) if user_ids else None
            if self.user is not None:
                nn.init.normal_(self.user.weight, std=0.05)
            self.features = Bag(n_features, dim) if n_features else None
            # hour of day (24) and day of week (7); row 0 is "unknown"
            self.hour = nn.Embedding(25, dim, padding_idx=0) if context else None
            self.dow = nn.Embedding(8, dim, padding_idx=0) if context else None
            width = pool_dim + dim * ((user_ids is True) + (n_features > 0) + 2 * (context is True))
            self.mlp = mlp(width, layers)
            self.out_dim = int(layers[-1])
            # residual: the tower starts as "the mean of your items' vectors" (an item-to-item
            # retriever that needs no training row) and the MLP learns a correction on top
            with torch.no_grad():
                self.mlp[-1].weight.mul_(0.1)
                self.mlp[-1].bias.zero_()

        def pool(self, table: Any, hist: Any, mask: Any) -> Any:
            m = mask.to(table.dtype)
            if self.pooling == "mean":
                w = m / m.sum(1, keepdim=True).clamp(min=1.0)
                return F.embedding_bag(hist, table, per_sample_weights=w, mode="sum")
            emb = F.embedding(hist, table)
            logits = self.att(emb).squeeze(-1).masked_fill(~mask, float("-inf"))
            w = torch.softmax(logits, dim=1)
            w = torch.nan_to_num(w, nan=0.0)  # an empty history pools to zero
            return (emb * w.unsqueeze(-1)).sum(1)

        def forward(
            self, item_table: Any, hist: Any, mask: Any, users: Any, keep_user: Any, f_idx: Any, f_val: Any, ctx: Any
        ) -> Any:
            pooled = self.pool(item_table, hist, mask)
            parts = [pooled]
            if self.user is not None:
                parts.append(self.user(users) * keep_user.unsqueeze(-1))
            if self.features is not None:
                parts.append(self.features(f_idx, f_val))
            if self.hour is not None:
                parts += [self.hour(ctx[:, 0]), self.dow(ctx[:, 1])]
            return F.normalize(pooled + self.mlp(torch.cat(parts, dim=-1)), dim=-1)

    class TwoTowerNet(nn.Module):
        def __init__(self, user_tower: Any, item_tower: Any) -> None:
            super().__init__()
            if user_tower.out_dim != item_tower.out_dim:
                raise ConfigError(
                    f"two_tower: the user tower ends in {user_tower.out_dim} dimensions but the item tower in "
                    f"{item_tower.out_dim}; both towers must end in the same dimension (user_layers[-1] == item_layers[-1])"
                )
            self.user_tower = user_tower
            self.item_tower = item_tower

    _NETS.update(ItemTower=ItemTower, UserTower=UserTower, TwoTowerNet=TwoTowerNet)
    return _NETS


# ---------------------------------------------------------------------- the model
@register("two_tower")
class TwoTower(TorchModel):
    """Two-tower retrieval: user and item towers to unit vectors, in-batch softmax with logQ
    correction (Covington et al. 2016; Yi et al. 2019). See the module docstring."""

    supports_history = True
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("torch", "neural"),)
    uses_features: ClassVar[bool] = True
    history_preference: ClassVar[int | None] = 2
    demo_params: ClassVar[dict[str, Any] | None] = {"epochs": 3}
    fast_params: ClassVar[dict[str, Any]] = {
        "factors": 8,
        "epochs": 1,
        "batch_size": 512,
        "validation": 0.0,
        "device": "cpu",
        "max_history": 20,
    }
    renamed_params: ClassVar[dict[str, str | tuple[str, ...]]] = {"embedding_dim": "input_dim"}
    #: models saved by tastebud 0.1.0 name the towers' output vectors ``user_vectors_`` / ``item_vectors_``
    renamed_attrs: ClassVar[dict[str, str]] = {"user_vectors_": "user_factors_", "item_vectors_": "item_factors_"}
    search_space: ClassVar[dict[str, Dist]] = {
        "factors": Int(16, 128, log=True),
        "temperature": LogFloat(0.01, 0.5),
        "learning_rate": LogFloat(3e-4, 1e-2),
        "id_dropout": Float(0.0, 0.5),
        "max_history": Int(10, 100, log=True),
    }

    def __init__(
        self,
        factors: int = 64,
        input_dim: int | None = None,
        user_layers: Sequence[int] | None = None,
        item_layers: Sequence[int] | None = None,
        pooling: Literal["mean", "attention"] = "mean",
        max_history: int = 50,
        short_history: float = 0.5,
        user_ids: bool = False,
        features: bool = True,
        item_columns: Sequence[str] | None = None,
        user_columns: Sequence[str] | None = None,
        text: Literal["tfidf", "embedding", "none"] = "tfidf",
        context: bool = True,
        temperature: float = 0.05,
        logq: bool = True,
        negatives: int = 0,
        id_dropout: float = 0.2,
        item_bias: bool = False,
        freq_alpha: float = 0.05,
        freq_buckets: int = 1 << 16,
        freq_hashes: int = 2,
        epochs: int = 20,
        learning_rate: float = 0.003,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        batch_size: int = 512,
        reg: float = 0.0,
        validation: float = 0.2,
        validation_history: int | None = None,
        patience: int | None = 3,
        checkpoint_dir: str | None = None,
        resume: bool = False,
        progress: bool = False,
        device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.input_dim = input_dim
        self.user_layers = user_layers
        self.item_layers = item_layers
        self.pooling = pooling
        self.max_history = max_history
        self.short_history = short_history
        self.user_ids = user_ids
        self.features = features
        self.item_columns = item_columns
        self.user_columns = user_columns
        self.text = text
        self.context = context
        self.temperature = temperature
        self.logq = logq
        self.negatives = negatives
        self.id_dropout = id_dropout
        self.item_bias = item_bias
        self.freq_alpha = freq_alpha
        self.freq_buckets = freq_buckets
        self.freq_hashes = freq_hashes
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.batch_size = batch_size
        self.reg = reg
        self.validation = validation
        self.validation_history = validation_history
        self.patience = patience
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.progress = progress
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------------ params
    def _layers(self, which: str) -> list[int]:
        given = self.user_layers if which == "user" else self.item_layers
        if given is None:
            return [2 * int(self.factors), int(self.factors)]
        return [int(w) for w in given]

    def _dim(self) -> int:
        return int(self.input_dim if self.input_dim is not None else self.factors)

    def _validate_params(self) -> None:
        name = "TwoTower"
        positive(name, factors=self.factors, max_history=self.max_history, temperature=self.temperature,
                 learning_rate=self.learning_rate, freq_alpha=self.freq_alpha,
                 freq_buckets=self.freq_buckets, freq_hashes=self.freq_hashes)  # fmt: skip
        super()._validate_params()  # the shared training settings (epochs, batch_size, validation, ...)
        non_negative(name, negatives=self.negatives, reg=self.reg)
        if self.input_dim is not None:
            positive(name, input_dim=self.input_dim)
        for which in ("user_layers", "item_layers"):
            value = getattr(self, which)
            if value is not None and (
                isinstance(value, (str, bytes))
                or len(value) == 0
                or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 for w in value)
            ):
                raise ConfigError(f"{name}: {which} must be a non-empty list of positive layer widths, got {value!r}")
        u, i = self._layers("user"), self._layers("item")
        if u[-1] != i[-1]:
            raise ConfigError(
                f"{name}: user_layers ends in {u[-1]} but item_layers in {i[-1]}; both towers must end in the same dimension"
            )
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"{name}: lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not 0.0 <= self.short_history <= 1.0:
            raise ConfigError(f"{name}: short_history must be in [0, 1], got {self.short_history!r}")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ConfigError(f"{name}: id_dropout must be in [0, 1), got {self.id_dropout!r}")
        if not 0.0 < self.freq_alpha <= 1.0:
            raise ConfigError(f"{name}: freq_alpha must be in (0, 1], got {self.freq_alpha!r}")
        if self.validation_history is not None:
            positive(name, validation_history=self.validation_history)
        for which in ("item_columns", "user_columns"):
            value = getattr(self, which)
            if value is not None and (isinstance(value, (str, bytes)) or not all(isinstance(c, str) for c in value)):
                raise ConfigError(f"{name}: {which} must be a list of column names, got {value!r}")

    # ------------------------------------------------------------------ features
    def _item_blocks(self, frame: pd.DataFrame) -> dict[str, Any]:
        if self.item_columns is not None:
            missing = [c for c in self.item_columns if c not in frame.columns]
            if missing:
                raise DataError(
                    f"two_tower: item feature column '{missing[0]}' is not in data.item_features; "
                    f"columns present: {', '.join(map(str, frame.columns))}"
                )
            cols = list(self.item_columns)
        else:
            cols = [c for c in ("genres", "year") if c in frame.columns]
            text_col = next((c for c in TEXT_COLUMNS if c in frame.columns), None)
            if text_col is not None and self.text != "none":
                cols.append(text_col)
        blocks: dict[str, Any] = {}
        for c in cols:
            spec: dict[str, Any] = {"weight": 1.0}
            if c == "year":
                spec["kind"] = "binned"
            elif c in TEXT_COLUMNS:
                spec["kind"] = "embedding" if self.text == "embedding" else "text"
            blocks[c] = spec
        return blocks

    def _user_blocks(self, frame: pd.DataFrame) -> dict[str, Any]:
        if self.user_columns is not None:
            missing = [c for c in self.user_columns if c not in frame.columns]
            if missing:
                raise DataError(
                    f"two_tower: user feature column '{missing[0]}' is not in data.user_features; "
                    f"columns present: {', '.join(map(str, frame.columns))}"
                )
            cols = list(self.user_columns)
        else:
            cols = [c for c in USER_COLUMNS if c in frame.columns]
        return {
            c: ({"weight": 1.0, "kind": "binned"} if c == "age" else {"weight": 1.0, "kind": "categorical"})
            for c in cols
        }

    def _fit_features(self, data: Interactions) -> None:
        from tastebud.data.features import ItemFeatureEncoder

        self.item_feature_spec_: list[dict[str, Any]] | None = None
        self.user_feature_spec_: list[dict[str, Any]] | None = None
        self._item_enc_arrays: dict[str, np.ndarray] = {}
        self._user_enc_arrays: dict[str, np.ndarray] = {}
        self.item_feat_idx_ = np.zeros((self.n_items, 1), np.int64)
        self.item_feat_val_ = np.zeros((self.n_items, 1), np.float32)
        self.user_feat_idx_ = np.zeros((self.n_users, 1), np.int64)
        self.user_feat_val_ = np.zeros((self.n_users, 1), np.float32)
        self.n_item_features_ = 0
        self.n_user_features_ = 0
        if not self.features:
            if self.item_columns or self.user_columns:
                raise ConfigError("TwoTower: item_columns / user_columns given but features=False")
            return
        if data.item_features is not None:
            blocks = self._item_blocks(data.item_features)
            if blocks:
                frame = _aligned(data.item_features[list(blocks)], self.items_, "item")
                enc = ItemFeatureEncoder(blocks).fit(frame)
                self._item_encoder = enc
                mat = enc.transform(frame)
                self.item_feat_idx_, self.item_feat_val_ = _padded(mat)
                self.n_item_features_ = int(mat.shape[1])
                self.item_feature_spec_, self._item_enc_arrays = enc.state()
        elif self.item_columns:
            raise DataError(f"two_tower: item_columns={list(self.item_columns)} but the data has no item_features")
        if data.user_features is not None:
            blocks = self._user_blocks(data.user_features)
            if blocks:
                frame = _aligned(data.user_features[list(blocks)], self.users_, "user")
                enc = ItemFeatureEncoder(blocks)
                if "age" in blocks:
                    enc.fit(frame)
                    j = [b["name"] for b in enc.spec_].index("age")
                    enc.arrays_[f"b{j}.edges"] = np.asarray(ML_AGE_EDGES)
                else:
                    enc.fit(frame)
                mat = enc.transform(frame)
                self.user_feat_idx_, self.user_feat_val_ = _padded(mat)
                self.n_user_features_ = int(mat.shape[1])
                self.user_feature_spec_, self._user_enc_arrays = enc.state()
        elif self.user_columns:
            raise DataError(f"two_tower: user_columns={list(self.user_columns)} but the data has no user_features")

    def _unite_user_features(self, data: Interactions, exchange: Any) -> None:
        """One rank of several, each fitted on its own block of users: the user-feature vocabularies
        become the union over the ranks' blocks (``exchange``: the feature hook, this rank's
        vocabularies in and every rank's out), so every rank builds the same network. For the
        categorical columns used here (``min_df=1``) that is the vocabulary of the whole table."""
        from tastebud.data.features import ItemFeatureEncoder

        spec = self.user_feature_spec_
        mine = None if spec is None else {k: v for k, v in self._user_enc_arrays.items() if k.endswith(".vocab")}
        every = exchange(mine)
        if spec is None and any(e is not None for e in every):
            raise DataError(
                "user_features: no row for any user of one worker's block while other blocks have some; "
                "give every block users with features, or none"
            )
        if spec is None or mine is None:
            return
        arrays = dict(self._user_enc_arrays)
        for key in mine:
            arrays[key] = np.asarray(sorted(set().union(*(set(e.get(key, ()).tolist()) for e in every))), dtype=str)
        enc = ItemFeatureEncoder.from_state(spec, arrays)
        mat = enc.transform(_aligned(data.user_features[[b["column"] for b in spec]], self.users_, "user"))
        self.user_feat_idx_, self.user_feat_val_ = _padded(mat)
        self.n_user_features_ = int(mat.shape[1])
        self.user_feature_spec_, self._user_enc_arrays = enc.state()

    # ------------------------------------------------------------------ network
    def _build(self) -> Any:
        nets = _nets()
        d = self._dim()
        item = nets["ItemTower"](
            self.n_items, d, int(self.n_item_features_), self._layers("item"), bias=bool(self.item_bias)
        )
        user = nets["UserTower"](
            self.n_users,
            d,
            int(self.n_user_features_),
            self._layers("user"),
            self.pooling,
            bool(self.user_ids),
            bool(self.context_),
        )
        return nets["TwoTowerNet"](user, item)

    # ------------------------------------------------------------------ fit
    def batch_layout(self) -> BatchLayout:
        return ExampleRows()

    def _fit(self, data: Interactions) -> None:
        torch = require_torch()
        hooks = self._hooks  # the scale layer's injection points; TrainHooks() for one process
        seed_everything(self.random_state)
        device = pick_device(self.device)
        seed = int(self.random_state)
        self._fit_features(data)
        if hooks.features is not None:  # one rank of several, each on its own users
            self._unite_user_features(data, hooks.features)
        self.context_ = bool(self.context and data.timestamps is not None)
        net = self._build().to(device)

        train, val_users, val_items = holdout(self.user_items_, self.validation, seed)
        self.item_counts_ = np.bincount(train.indices, minlength=self.n_items).astype(np.int64)
        last_ts = self._pair_times(data, train) if self.context_ else None
        self.recent_ = self._recent_order(data)

        ifi = torch.as_tensor(self.item_feat_idx_, device=device)
        ifv = torch.as_tensor(self.item_feat_val_, device=device)
        ufi = torch.as_tensor(self.user_feat_idx_, device=device)
        ufv = torch.as_tensor(self.user_feat_val_, device=device)
        indptr, indices = train.indptr.astype(np.int64), train.indices.astype(np.int64)
        counts = np.diff(indptr)
        ex_user = np.repeat(np.arange(self.n_users, dtype=np.int64), counts)
        n_ex, bs, L = len(indices), int(self.batch_size), int(self.max_history)
        use_item_drop = self.n_item_features_ > 0 and self.id_dropout > 0
        n_neg = int(self.negatives)
        prior = max(1.0, self.n_items / bs)
        freq = {"est": None, "epoch": -1}

        def order_of(epoch: int) -> np.ndarray:
            return np.random.default_rng([seed, epoch, 0]).permutation(n_ex)

        def estimator_at(epoch: int) -> StreamingFrequency:
            # the estimator is a pure function of the batch order, so a resumed run replays it
            if freq["epoch"] != epoch - 1 or freq["est"] is None:
                est = StreamingFrequency(
                    int(self.freq_buckets), float(self.freq_alpha), int(self.freq_hashes), prior, seed
                )
                for e in range(epoch):
                    order = order_of(e)
                    for s in range(0, n_ex, bs):
                        est.update(indices[order[s : s + bs]])
                freq["est"] = est
            return freq["est"]

        n_steps = max(1, -(-n_ex // bs)) * int(self.epochs)

        def batches(epoch: int) -> Any:
            est = estimator_at(epoch)
            order = order_of(epoch)
            rng = np.random.default_rng([seed, epoch, 1])
            for s in range(0, n_ex, bs):
                if self.lr_schedule == "cosine":
                    # cosine annealing to zero over all epochs (Loshchilov & Hutter 2017, without
                    # restarts); a pure function of the step, so a resumed run follows it too
                    t = epoch * -(-n_ex // bs) + s // bs
                    for group in optimizer.param_groups:
                        group["lr"] = 0.5 * float(self.learning_rate) * (1.0 + np.cos(np.pi * t / n_steps))
                ex = order[s : s + bs]
                users, items = ex_user[ex], indices[ex]
                hist, mask = self._sample_history(
                    rng, indptr, indices, users, ex - indptr[users], L, float(self.short_history)
                )
                est.update(items)
                b = len(ex)
                keep_id = (
                    (rng.random(b) >= self.id_dropout).astype(np.float32) if use_item_drop else np.ones(b, np.float32)
                )
                keep_user = (rng.random(b) >= 0.5).astype(np.float32)
                ctx = np.zeros((b, 2), np.int64)
                if last_ts is not None:
                    ctx = _context(last_ts[ex])
                    ctx[rng.random(b) < 0.5] = 0  # learn the "unknown request time" slot too
                neg = rng.integers(0, self.n_items, size=n_neg) if n_neg else np.empty(0, np.int64)
                logq = np.log(est.probability(items)) if self.logq else np.zeros(b)
                logq_neg = np.full(n_neg, np.log(n_neg / self.n_items)) if (self.logq and n_neg) else np.zeros(n_neg)
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
            freq["epoch"] = epoch

        tau = float(self.temperature)
        # the in-batch softmax; data-parallel ranks score their rows against the whole global batch
        softmax_loss = hooks.softmax_loss or sampled_softmax_loss

        def step(b: dict[str, Any]) -> Any:
            it, ut = net.item_tower, net.user_tower
            users, items = b["users"], b["items"]
            # the history is pooled from the item tower's own output vectors (ids + features)
            uniq, inv = torch.unique(b["hist"], return_inverse=True)
            table = it(uniq, torch.ones(len(uniq), device=uniq.device), ifi[uniq], ifv[uniq])
            u = ut(
                table,
                inv,
                b["mask"],
                users,
                b["keep_user"],
                ufi[users],
                # an anonymous example (keep_user 0) has neither id nor demographics, exactly
                # like a person served from a live history without a training row
                ufv[users] * b["keep_user"].unsqueeze(-1),
                b["ctx"],
            )
            v = it(items, b["keep_id"], ifi[items], ifv[items])
            vn = None
            if n_neg:
                neg = b["neg"]
                vn = it(neg, torch.ones(len(neg), device=neg.device), ifi[neg], ifv[neg])
            if it.bias is not None:
                # (<u, v> + c) / tau as one inner product: u gets a 1, v its item's bias c, so the
                # loss (and its data-parallel form) sees plain vectors
                u = torch.cat([u, u.new_ones((len(u), 1))], dim=1)
                v = torch.cat([v, it.bias(items)], dim=1)
                if vn is not None:
                    vn = torch.cat([vn, it.bias(b["neg"])], dim=1)
            return softmax_loss(u, v, items, b["logq"], tau, vn, b["neg"], b["logq_neg"])

        def bias_now() -> np.ndarray | float:
            c = net.item_tower.bias
            return 0.0 if c is None else c.weight.detach().cpu().numpy()[:, 0]

        validate = None
        if len(val_users):
            seen = train[val_users]

            def validate() -> float:
                iv = self._item_vectors(net, device)
                uv = self._user_vectors(net, device, val_users, train, table=iv)
                return hit_rate(uv @ iv.T + bias_now(), seen, val_items)

            if self.validation_history is not None:
                # select the epoch for people served from a few items: each validation user is
                # anonymous (no id, demographics or request time) with a fixed random sub-history
                vrng = np.random.default_rng([seed, 6007])
                short_rows = [
                    vrng.permutation(seen.indices[seen.indptr[r] : seen.indptr[r + 1]]) for r in range(len(val_users))
                ]
                short_rows = [r[: int(self.validation_history)] for r in short_rows]
                vh = np.zeros((len(val_users), max(1, max(map(len, short_rows)))), np.int64)
                vm = np.zeros(vh.shape, bool)
                for r, items in enumerate(short_rows):
                    vh[r, : len(items)], vm[r, : len(items)] = items, True
                anon = np.full(len(val_users), -1, np.int64)

                def validate() -> float:
                    iv = self._item_vectors(net, device)
                    uv = self._run_user_tower(net, device, vh, vm, anon, np.zeros(len(anon), np.float32), None, iv)
                    return hit_rate(uv @ iv.T + bias_now(), seen, val_items)

        params = [p for p in net.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=float(self.learning_rate), weight_decay=float(self.reg))
        loop = self._train_loop("two_tower")
        self.history_ = loop.run(
            net,
            optimizer,
            batches,
            step,
            validate,
            examples_per_batch=lambda b: int(len(b["items"])),
            steps_per_epoch=-(-n_ex // bs),
            layout=self.batch_layout(),
        )
        self.best_epoch_ = loop.best_epoch
        self._net = net.cpu().eval()
        if hooks.finish is None:
            self._finish(self.user_items_)
        else:  # the scale layer computes each block's user vectors on its own rank and merges them
            hooks.finish(self)

    def _finish(self, full: sp.csr_matrix) -> None:
        """Precompute the catalogue's item vectors and every known user's vector."""
        torch = require_torch()
        with torch.no_grad():
            self.item_factors_ = self._item_vectors(self._net, torch.device("cpu"))
            self.user_factors_ = self._user_vectors(
                self._net, torch.device("cpu"), np.arange(self.n_users), full, table=self.item_factors_
            )
        self.item_bias_ = self._learned_bias(self._net)

    def merge_user_blocks(
        self, lo: int, hi: int, gather: Callable[[Any], list[Any] | None], total: Callable[[np.ndarray], np.ndarray]
    ) -> None:
        """Item counts summed; item vectors (identical on every rank); this block's user vectors;
        the block's rows of the per-user state to rank 0."""
        torch = require_torch()
        self.item_counts_ = total(self.item_counts_)
        with torch.no_grad():
            iv = self._item_vectors(self._net, _cpu())
            uv = self._user_vectors(self._net, _cpu(), np.arange(lo, hi), self.user_items_, table=iv)
        seen = self.user_items_
        recent = None if self.recent_ is None else self.recent_[seen.indptr[lo] : seen.indptr[hi]]
        every = gather((seen[lo:hi], recent, self.user_feat_idx_[lo:hi], self.user_feat_val_[lo:hi], uv))
        if every is None:
            return
        self.user_items_ = sp.vstack([p[0] for p in every], format="csr")
        self.recent_ = None if recent is None else np.concatenate([p[1] for p in every])
        self.user_feat_idx_ = _padded_rows([p[2] for p in every])
        self.user_feat_val_ = _padded_rows([p[3] for p in every])
        self.item_factors_ = iv
        self.user_factors_ = np.concatenate([p[4] for p in every], axis=0)
        self.item_bias_ = self._learned_bias(self._net)  # unseen items get the lowest bias, by the summed counts

    def softmax_frequency(self, n_items: int, batch_size: int, seed: int) -> StreamingFrequency | None:
        """The logQ estimator over the global batches (Yi et al. 2019, Algorithm 2), as one process
        builds it; None when ``logq`` is off."""
        if not self.logq:
            return None
        prior = max(1.0, n_items / batch_size)
        return StreamingFrequency(
            int(self.freq_buckets), float(self.freq_alpha), int(self.freq_hashes), prior, int(seed)
        )

    def _learned_bias(self, net: Any) -> np.ndarray | None:
        """The per-item bias in cosine units (``item_bias``), or None; items never seen in
        training (an untrained bias) get the lowest learned one."""
        if getattr(net.item_tower, "bias", None) is None:
            return None
        c = net.item_tower.bias.weight.detach().cpu().numpy()[:, 0].astype(np.float32)
        seen = self.item_counts_ > 0
        if seen.any() and not seen.all():
            c[~seen] = c[seen].min()
        return c

    # ------------------------------------------------------------------ sampling
    @staticmethod
    def _sample_history(
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

    def _pair_times(self, data: Interactions, train: sp.csr_matrix) -> np.ndarray:
        """The timestamp of each training pair (its latest event), aligned with ``train``'s entries."""
        n_items = self.n_items
        key = data.user_idx.astype(np.int64) * n_items + data.item_idx
        order = np.lexsort((data.timestamps, key))
        key_s, ts_s = key[order], data.timestamps[order]
        last = np.r_[key_s[1:] != key_s[:-1], True]
        key_s, ts_s = key_s[last], ts_s[last]
        rows = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
        probe = rows * n_items + train.indices
        pos = np.clip(np.searchsorted(key_s, probe), 0, len(key_s) - 1)
        return np.where(key_s[pos] == probe, ts_s[pos], 0).astype(np.int64)

    def _recent_order(self, data: Interactions) -> np.ndarray | None:
        """Per-pair recency rank within each user's training row (larger = more recent)."""
        if data.timestamps is None:
            return None
        m = self.user_items_
        ts = self._pair_times(data, m)
        return ts.astype(np.int64)

    def _inference_history(self, users: np.ndarray, matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """Each user's most recent ``max_history`` items (by time; all items, up to 10 x, without times)."""
        cap = (
            int(self.max_history)
            if self.recent_ is not None and matrix is self.user_items_
            else 10 * int(self.max_history)
        )
        rows = []
        for u in users:
            s, e = matrix.indptr[u], matrix.indptr[u + 1]
            items = matrix.indices[s:e]
            if len(items) > cap:
                if self.recent_ is not None and matrix is self.user_items_:
                    items = items[np.argsort(self.recent_[s:e], kind="stable")[-cap:]]
                else:
                    rng = np.random.default_rng([int(self.random_state), int(u), 3])
                    items = np.sort(rng.choice(items, size=cap, replace=False))
            rows.append(items)
        width = max(1, max((len(r) for r in rows), default=1))
        hist = np.zeros((len(rows), width), np.int64)
        mask = np.zeros((len(rows), width), bool)
        for r, items in enumerate(rows):
            hist[r, : len(items)] = items
            mask[r, : len(items)] = True
        return hist, mask

    # ------------------------------------------------------------------ vectors
    def _item_vectors(self, net: Any, device: Any, items: np.ndarray | None = None, ids: bool = True) -> np.ndarray:
        torch = require_torch()
        idx = np.arange(self.n_items) if items is None else np.asarray(items, np.int64)
        out = []
        for s in range(0, len(idx), 4096):
            sel = idx[s : s + 4096]
            t = torch.as_tensor(sel, device=device)
            keep = torch.full((len(sel),), 1.0 if ids else 0.0, device=device)
            if items is None and ids and self.n_item_features_:
                # items never seen in training have an untrained id embedding: features alone
                keep = torch.as_tensor((self.item_counts_[sel] > 0).astype(np.float32), device=device)
            fi = torch.as_tensor(self.item_feat_idx_[sel], device=device)
            fv = torch.as_tensor(self.item_feat_val_[sel], device=device)
            out.append(net.item_tower(t, keep, fi, fv).cpu().numpy())
        return np.vstack(out).astype(np.float32) if out else np.empty((0, self._layers("item")[-1]), np.float32)

    def _user_vectors(
        self,
        net: Any,
        device: Any,
        users: np.ndarray,
        matrix: sp.csr_matrix,
        ctx: np.ndarray | None = None,
        table: np.ndarray | None = None,
    ) -> np.ndarray:
        """User-tower vectors; ``table`` is the catalogue's item vectors the histories pool from."""
        table = self._item_vectors(net, device) if table is None else table
        out = []
        for s in range(0, len(users), 1024):
            sel = np.asarray(users[s : s + 1024], np.int64)
            hist, mask = self._inference_history(sel, matrix)
            out.append(self._run_user_tower(net, device, hist, mask, sel, np.ones(len(sel), np.float32), ctx, table))
        return np.vstack(out) if out else np.empty((0, self._layers("user")[-1]), np.float32)

    def _run_user_tower(
        self,
        net: Any,
        device: Any,
        hist: np.ndarray,
        mask: np.ndarray,
        users: np.ndarray,
        keep_user: np.ndarray,
        ctx: np.ndarray | None,
        table: np.ndarray,
    ) -> np.ndarray:
        torch = require_torch()
        b = len(users)
        uu = np.clip(users, 0, None)
        fi, fv = self.user_feat_idx_[uu], self.user_feat_val_[uu]
        if (users < 0).any():  # a person not in the training data: no demographics
            fi, fv = fi.copy(), fv.copy()
            fi[users < 0] = 0
            fv[users < 0] = 0.0
        c = np.zeros((b, 2), np.int64) if ctx is None else np.broadcast_to(ctx, (b, 2))
        with torch.no_grad():
            v = net.user_tower(
                torch.as_tensor(table, device=device),
                torch.as_tensor(hist, device=device),
                torch.as_tensor(mask, device=device),
                torch.as_tensor(uu, device=device),
                torch.as_tensor(keep_user * (users >= 0), dtype=torch.float32, device=device),
                torch.as_tensor(fi, device=device),
                torch.as_tensor(fv, device=device),
                torch.as_tensor(np.ascontiguousarray(c), device=device),
            )
        return v.cpu().numpy().astype(np.float32)

    # ------------------------------------------------------------------ serving
    def encode_history(self, item_idx: Sequence[int] | np.ndarray, timestamp: int | None = None) -> np.ndarray:
        """The user tower's unit vector for a live history of item *indices* (oldest first).

        The last ``max_history`` items are pooled; ``timestamp`` (unix seconds) of the request
        fills the context features when the model was trained with them. A person from outside
        the training data has no id embedding and no demographics.
        """
        self._check_fitted()
        idx = np.asarray(item_idx, np.int64).ravel()
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n_items):
            raise DataError(f"encode_history: item indices must be in 0..{self.n_items - 1}")
        idx = idx[-int(self.max_history) :]
        hist = np.zeros((1, max(1, len(idx))), np.int64)
        mask = np.zeros_like(hist, dtype=bool)
        hist[0, : len(idx)] = idx
        mask[0, : len(idx)] = True
        ctx = _context(np.asarray([timestamp], np.int64)) if (timestamp is not None and self.context_) else None
        return self._run_user_tower(
            self._net, _cpu(), hist, mask, np.array([-1]), np.zeros(1, np.float32), ctx, self.item_factors_
        )[0]

    def encode_items(self, features: pd.DataFrame) -> np.ndarray:
        """Unit vectors for items described by ``features`` (a table like ``data.item_features``),
        from their features alone: for new items to add to a serving index without retraining."""
        self._check_fitted()
        if not isinstance(features, pd.DataFrame):
            raise DataError(f"encode_items expects a DataFrame of item features, got {type(features).__name__}")
        torch = require_torch()
        n = len(features)
        if self.item_feature_spec_ is None:
            raise DataError("encode_items: this model was trained without item features; it cannot place new items")
        missing = [b["column"] for b in self.item_feature_spec_ if b["column"] not in features.columns]
        if missing:
            raise DataError(
                f"encode_items: feature column '{missing[0]}' is missing; the model uses {', '.join(b['column'] for b in self.item_feature_spec_)}"
            )
        mat = self._item_encoder_loaded().transform(features)
        fi, fv = _padded(mat)
        with torch.no_grad():
            v = self._net.item_tower(
                torch.zeros(n, dtype=torch.long), torch.zeros(n), torch.as_tensor(fi), torch.as_tensor(fv)
            )
        return v.numpy().astype(np.float32)

    def _item_encoder_loaded(self) -> Any:
        from tastebud.data.features import ItemFeatureEncoder

        if getattr(self, "_item_encoder", None) is None:
            self._item_encoder = ItemFeatureEncoder.from_state(self.item_feature_spec_, self._item_enc_arrays)
        return self._item_encoder

    def _bias(self, item_idx: np.ndarray | None = None) -> np.ndarray | float:
        c = getattr(self, "item_bias_", None)
        if c is None:
            return 0.0
        return c if item_idx is None else c[item_idx]

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        iv = self.item_factors_ if item_idx is None else self.item_factors_[item_idx]
        return self.user_factors_[user_idx] @ iv.T + self._bias(item_idx)

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        return self.item_factors_ @ self.encode_history(item_idx) + self._bias()

    def _similar(self, item_idx: np.ndarray) -> np.ndarray:
        return self.item_factors_[item_idx] @ self.item_factors_.T

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        """The history items whose vectors are closest to each recommended item."""
        hist = sp.csr_matrix(history).indices
        out = []
        for i in item_idx:
            if len(hist) == 0:
                out.append(Explanation("two-tower score"))
                continue
            sims = self.item_factors_[hist] @ self.item_factors_[i]
            top = np.argsort(-sims, kind="stable")[:3]
            contrib = [
                (
                    self.items_.ids[hist[j]].item()
                    if hasattr(self.items_.ids[hist[j]], "item")
                    else self.items_.ids[hist[j]],
                    float(sims[j]),
                )
                for j in top
            ]
            out.append(Explanation(f"close to {contrib[0][0]!r} in your history", contrib))
        return out

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, attrs = super()._state()
        for prefix, enc in (("itemenc", self._item_enc_arrays), ("userenc", self._user_enc_arrays)):
            for k, v in enc.items():
                arrays[f"{prefix}/{k}"] = np.asarray(v)
        return arrays, attrs

    def _set_state(self, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
        self._item_enc_arrays = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("itemenc/")}
        self._user_enc_arrays = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("userenc/")}
        rest = {k: v for k, v in arrays.items() if "/" not in k}
        super()._set_state(rest, attrs)
        self._item_encoder = None

    def _extra_files(self) -> dict[str, bytes]:
        return {WEIGHTS: module_to_bytes(self._net)}

    def _load_extra(self, files: dict[str, bytes]) -> None:
        if WEIGHTS not in files:
            raise ModelFormatError(f"{self.name}: saved model has no {WEIGHTS}")
        self._net = module_from_bytes(self._build(), files[WEIGHTS]).eval()


def _context(ts: np.ndarray) -> np.ndarray:
    """(hour of day + 1, day of week + 1) in UTC; 0 marks an unknown time."""
    ts = np.asarray(ts, np.int64)
    hour = (ts // 3600) % 24 + 1
    dow = ((ts // 86400) + 3) % 7 + 1  # 1970-01-01 was a Thursday; Monday = 1
    out = np.stack([hour, dow], axis=1).astype(np.int64)
    out[ts <= 0] = 0
    return out


def _cpu() -> Any:
    return require_torch().device("cpu")
