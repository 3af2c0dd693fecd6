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
from functools import partial
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
from tastebud.models.two_tower.batches import ExampleRows, TrainingBatches
from tastebud.models.two_tower.features import (
    FeatureRows,
    item_feature_rows,
    padded,
    padded_rows,
    request_context,
    united_user_rows,
    user_feature_rows,
)
from tastebud.models.two_tower.loss import StreamingFrequency, sampled_softmax_loss
from tastebud.models.two_tower.networks import batch_vectors, build_net, current_bias

WEIGHTS = "weights.safetensors"


# ---------------------------------------------------------------------- the model
@register("two_tower")
class TwoTower(TorchModel):
    """Two-tower retrieval: user and item towers to unit vectors, in-batch softmax with logQ
    correction (Covington et al. 2016; Yi et al. 2019). See the module docstring."""

    supports_history = True
    docs_page = "two_tower"  # the module is two_tower.estimator; the page is the family's
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
    def _fit_features(self, data: Interactions) -> None:
        """Encode ``data``'s item and user feature tables (see :mod:`.features`) into the model."""
        items, users = FeatureRows.empty(self.n_items), FeatureRows.empty(self.n_users)
        if not self.features:
            if self.item_columns or self.user_columns:
                raise ConfigError("TwoTower: item_columns / user_columns given but features=False")
        else:
            if data.item_features is not None:
                items = item_feature_rows(data.item_features, self.items_, self.item_columns, self.text) or items
            elif self.item_columns:
                raise DataError(f"two_tower: item_columns={list(self.item_columns)} but the data has no item_features")
            if data.user_features is not None:
                users = user_feature_rows(data.user_features, self.users_, self.user_columns) or users
            elif self.user_columns:
                raise DataError(f"two_tower: user_columns={list(self.user_columns)} but the data has no user_features")
        self.item_feature_spec_: list[dict[str, Any]] | None = items.spec
        self._item_enc_arrays: dict[str, np.ndarray] = items.arrays
        self.item_feat_idx_, self.item_feat_val_ = items.idx, items.val
        self.n_item_features_ = items.width
        self._item_encoder = items.encoder
        self._set_user_features(users)

    def _set_user_features(self, users: FeatureRows) -> None:
        self.user_feature_spec_: list[dict[str, Any]] | None = users.spec
        self._user_enc_arrays: dict[str, np.ndarray] = users.arrays
        self.user_feat_idx_, self.user_feat_val_ = users.idx, users.val
        self.n_user_features_ = users.width

    # ------------------------------------------------------------------ network
    def _build(self) -> Any:
        return build_net(
            self.n_users,
            self.n_items,
            self._dim(),
            int(self.n_item_features_),
            int(self.n_user_features_),
            self._layers("item"),
            self._layers("user"),
            self.pooling,
            bool(self.user_ids),
            bool(self.context_),
            bool(self.item_bias),
        )

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
            united = united_user_rows(
                self.user_feature_spec_, self._user_enc_arrays, data.user_features, self.users_, hooks.features
            )
            if united is not None:
                self._set_user_features(united)
        self.context_ = bool(self.context and data.timestamps is not None)
        net = self._build().to(device)

        train, val_users, val_items = holdout(self.user_items_, self.validation, seed)
        self.item_counts_ = np.bincount(train.indices, minlength=self.n_items).astype(np.int64)
        last_ts = self._pair_times(data, train) if self.context_ else None
        self.recent_ = self._recent_order(data)

        params = [p for p in net.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=float(self.learning_rate), weight_decay=float(self.reg))
        batches = TrainingBatches(self, train, last_ts, device, optimizer)
        step = partial(
            _batch_loss,
            net,
            (torch.as_tensor(self.item_feat_idx_, device=device), torch.as_tensor(self.item_feat_val_, device=device)),
            (torch.as_tensor(self.user_feat_idx_, device=device), torch.as_tensor(self.user_feat_val_, device=device)),
            # the in-batch softmax; data-parallel ranks score their rows against the whole global batch
            hooks.softmax_loss or sampled_softmax_loss,
            float(self.temperature),
        )
        layout = self.batch_layout()
        loop = self._train_loop("two_tower")
        self.history_ = loop.run(
            net,
            optimizer,
            batches,
            step,
            self._validator(net, device, train, val_users, val_items, seed),
            examples_per_batch=layout.rows,
            steps_per_epoch=batches.steps_per_epoch,
            layout=layout,
        )
        self.best_epoch_ = loop.best_epoch
        self._net = net.cpu().eval()
        if hooks.finish is None:
            self._finish(self.user_items_)
        else:  # the scale layer computes each block's user vectors on its own rank and merges them
            hooks.finish(self)

    def _validator(
        self, net: Any, device: Any, train: sp.csr_matrix, val_users: np.ndarray, val_items: np.ndarray, seed: int
    ) -> Callable[[], float] | None:
        """The early-stopping metric: hit rate of the held-out items (None without validation users).

        With ``validation_history`` the epoch is selected for people served from a few items: each
        validation user is anonymous (no id, demographics or request time) with a fixed random
        sub-history of that many items.
        """
        if not len(val_users):
            return None
        seen = train[val_users]
        if self.validation_history is None:
            return partial(self._known_hit_rate, net, device, train, val_users, seen, val_items)
        vrng = np.random.default_rng([seed, 6007])
        short_rows = [
            vrng.permutation(seen.indices[seen.indptr[r] : seen.indptr[r + 1]])[: int(self.validation_history)]
            for r in range(len(val_users))
        ]
        hist = np.zeros((len(val_users), max(1, max(map(len, short_rows)))), np.int64)
        mask = np.zeros(hist.shape, bool)
        for r, items in enumerate(short_rows):
            hist[r, : len(items)], mask[r, : len(items)] = items, True
        return partial(self._anonymous_hit_rate, net, device, hist, mask, seen, val_items)

    def _known_hit_rate(
        self,
        net: Any,
        device: Any,
        train: sp.csr_matrix,
        val_users: np.ndarray,
        seen: sp.csr_matrix,
        val_items: np.ndarray,
    ) -> float:
        iv = self._item_vectors(net, device)
        uv = self._user_vectors(net, device, val_users, train, table=iv)
        return hit_rate(uv @ iv.T + current_bias(net), seen, val_items)

    def _anonymous_hit_rate(
        self,
        net: Any,
        device: Any,
        hist: np.ndarray,
        mask: np.ndarray,
        seen: sp.csr_matrix,
        val_items: np.ndarray,
    ) -> float:
        iv = self._item_vectors(net, device)
        anon = np.full(len(hist), -1, np.int64)
        uv = self._run_user_tower(net, device, hist, mask, anon, np.zeros(len(anon), np.float32), None, iv)
        return hit_rate(uv @ iv.T + current_bias(net), seen, val_items)

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
        self.user_feat_idx_ = padded_rows([p[2] for p in every])
        self.user_feat_val_ = padded_rows([p[3] for p in every])
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

    # ------------------------------------------------------------------ histories
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
        ctx = request_context(np.asarray([timestamp], np.int64)) if (timestamp is not None and self.context_) else None
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
        fi, fv = padded(mat)
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


def _batch_loss(
    net: Any,
    item_features: tuple[Any, Any],
    user_features: tuple[Any, Any],
    softmax_loss: Callable[..., Any],
    temperature: float,
    batch: dict[str, Any],
) -> Any:
    """One training step's loss: the batch through both towers, then the sampled softmax."""
    u, v, vn = batch_vectors(net, batch, item_features, user_features)
    return softmax_loss(u, v, batch["items"], batch["logq"], temperature, vn, batch["neg"], batch["logq_neg"])


def _cpu() -> Any:
    return require_torch().device("cpu")
