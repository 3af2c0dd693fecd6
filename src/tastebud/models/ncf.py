"""Neural Collaborative Filtering: GMF, MLP and NeuMF (He et al. 2017).

He, Liao, Zhang, Nie, Hu, Chua. "Neural Collaborative Filtering." WWW 2017.

* **GMF** (generalised matrix factorisation): ``y = sigma(h^T (p_u * q_i))`` -- the element-wise
  product of a user and an item embedding, weighted by a learned output vector ``h``.
* **MLP**: ``y = sigma(h^T phi_L(...phi_1([p_u ; q_i])))``, a tower of ReLU layers that halves
  its width at each layer and ends in ``factors`` units (the paper's "32 -> 16 -> 8" for
  8 predictive factors and 3 layers).
* **NeuMF**: both branches with their own embeddings, the last GMF vector and the last MLP
  layer concatenated before one output layer. With ``pretrain=True`` GMF and MLP are trained
  first and NeuMF starts from their weights, the output layer being the weighted concatenation
  ``h = [gmf_weight h_GMF ; (1 - gmf_weight) h_MLP]`` (the paper's alpha, section 3.4.1); it is then tuned with
  vanilla SGD as in the paper.

Training is pointwise log loss (binary cross-entropy) on each observed pair and ``negatives``
items drawn uniformly from the ones the user has not interacted with (section 3.1.1), or
``loss="bpr"``: Rendle et al.'s pairwise ``-log sigma(y_ui - y_uj)`` with the same sampler.
Rendle, Krichene, Zhang, Anderson (RecSys 2020) showed that a well-tuned dot product beats the
MLP on these protocols; ``benchmarks/bench_neural.py`` reports both.

PyTorch is needed (``pip install tastebud[neural]``); it is imported when a model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import non_negative, positive
from tastebud.core.errors import ConfigError
from tastebud.core.registry import register
from tastebud.core.space import Categorical, Dist, Int, LogFloat
from tastebud.data.interactions import Interactions
from tastebud.models._torch import (
    TorchModel,
    adam,
    module_from_bytes,
    module_to_bytes,
    pick_device,
    require_torch,
    seed_everything,
)

if TYPE_CHECKING:  # pragma: no cover
    pass

WEIGHTS = "weights.safetensors"
# Score blocks through the MLP are evaluated for at most this many (user, item) pairs at once.
PAIR_BLOCK = 1_000_000


# ---------------------------------------------------------------------- shared helpers
def holdout(
    matrix: sp.csr_matrix, fraction: float, seed: int, min_items: int = 3
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Hold out one random interaction of a ``fraction`` of users (those with >= ``min_items``).

    Returns the remaining training matrix and the (user, item) pairs held out; the validation
    metric each epoch is the hit rate of those items in the top 20 (Recall@20 with one item).
    """
    m = sp.csr_matrix(matrix, copy=True)
    m.sort_indices()
    counts = np.diff(m.indptr)
    rng = np.random.default_rng([int(seed), 7919])
    eligible = np.nonzero(counts >= min_items)[0]
    if fraction <= 0 or len(eligible) == 0:
        return m, np.empty(0, np.int64), np.empty(0, np.int64)
    n_val = max(1, int(round(fraction * len(eligible))))
    users = np.sort(rng.choice(eligible, size=min(n_val, len(eligible)), replace=False))
    pos = m.indptr[users] + (rng.random(len(users)) * counts[users]).astype(np.int64)
    items = m.indices[pos].astype(np.int64)
    keep = np.ones(m.nnz, bool)
    keep[pos] = False
    rows = np.repeat(np.arange(m.shape[0]), counts)
    out = sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape, dtype=np.float32)
    out.sort_indices()
    return out, users.astype(np.int64), items


def hit_rate(scores: np.ndarray, seen: sp.csr_matrix, target: np.ndarray, k: int = 20) -> float:
    """Share of rows whose ``target`` item ranks in the top ``k`` with seen items excluded."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    seen = sp.csr_matrix(seen)
    rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    scores[rows, seen.indices] = -np.inf
    t = scores[np.arange(len(target)), target]
    better = (scores > t[:, None]).sum(axis=1)
    return float(np.mean(better < k))


def sample_negatives(
    rng: np.random.Generator, users: np.ndarray, matrix: sp.csr_matrix, n: int, rounds: int = 20
) -> np.ndarray:
    """``n`` items per entry of ``users``, uniform over the items that user has not interacted with.

    Rejection sampling against the sorted (user, item) keys of ``matrix``; each round probes only
    the draws redrawn in the one before (the first probes all). After ``rounds`` the few draws
    still colliding (users who saw almost everything) are kept.
    """
    n_items = matrix.shape[1]
    m = sp.csr_matrix(matrix)
    m.sort_indices()
    keys = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr)) * n_items + m.indices
    u = np.repeat(np.asarray(users, np.int64), n)
    neg = rng.integers(0, n_items, size=len(u))
    todo = np.arange(len(u))  # the draws still to check
    for _ in range(rounds):
        probe = u[todo] * n_items + neg[todo]
        pos = np.searchsorted(keys, probe)
        hit = (pos < len(keys)) & (keys[np.minimum(pos, len(keys) - 1)] == probe)
        todo = todo[hit]
        if not len(todo):
            break
        neg[todo] = rng.integers(0, n_items, size=len(todo))
    return neg.reshape(-1, n) if n else np.empty((len(users), 0), np.int64)


# ---------------------------------------------------------------------- torch modules
def _nets() -> dict[str, Any]:
    """Build the module classes on first use, so that importing tastebud never imports torch."""
    global _NETS
    if _NETS:
        return _NETS
    torch = require_torch()
    nn = torch.nn

    def emb(n: int, d: int) -> Any:
        e = nn.Embedding(n, d)
        nn.init.normal_(e.weight, std=0.01)  # Gaussian N(0, 0.01) as in the paper
        return e

    def tower(in_dim: int, layers: int, factors: int) -> Any:
        mods: list[Any] = []
        width = in_dim
        for level in range(layers - 1, -1, -1):
            out = factors * 2**level
            lin = nn.Linear(width, out)
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
            mods += [lin, nn.ReLU()]
            width = out
        return nn.Sequential(*mods)

    class GMFNet(nn.Module):
        def __init__(self, n_users: int, n_items: int, factors: int, layers: int) -> None:
            super().__init__()
            self.user = emb(n_users, factors)
            self.item = emb(n_items, factors)
            self.out = nn.Linear(factors, 1)
            nn.init.normal_(self.out.weight, std=0.01)
            nn.init.zeros_(self.out.bias)

        def forward(self, u: Any, i: Any) -> Any:
            return self.out(self.user(u) * self.item(i)).squeeze(-1)

        def score_block(self, u: Any, items: Any) -> Any:
            w = self.out.weight[0]
            return (self.user(u) * w) @ self.item(items).T + self.out.bias

    class MLPNet(nn.Module):
        def __init__(self, n_users: int, n_items: int, factors: int, layers: int) -> None:
            super().__init__()
            self.dim = factors * 2 ** (layers - 1)  # embedding size per side (input = 2 x dim)
            self.user = emb(n_users, self.dim)
            self.item = emb(n_items, self.dim)
            self.tower = tower(2 * self.dim, layers, factors)
            self.out = nn.Linear(factors, 1)
            nn.init.normal_(self.out.weight, std=0.01)
            nn.init.zeros_(self.out.bias)

        def hidden(self, u: Any, i: Any) -> Any:
            return self.tower(torch.cat([self.user(u), self.item(i)], dim=-1))

        def forward(self, u: Any, i: Any) -> Any:
            return self.out(self.hidden(u, i)).squeeze(-1)

        def hidden_block(self, u: Any, items: Any) -> Any:
            """(n_u, n_i, factors): the first layer is split into its user and item halves,
            computed once per side and broadcast, instead of once per pair."""
            first: Any = self.tower[0]
            wu, wi = first.weight[:, : self.dim], first.weight[:, self.dim :]
            h = torch.relu((self.user(u) @ wu.T)[:, None, :] + (self.item(items) @ wi.T + first.bias)[None, :, :])
            for layer in list(self.tower)[2:]:
                h = layer(h)
            return h

        def score_block(self, u: Any, items: Any) -> Any:
            return self.out(self.hidden_block(u, items)).squeeze(-1)

    class NeuMFNet(nn.Module):
        def __init__(self, n_users: int, n_items: int, factors: int, layers: int) -> None:
            super().__init__()
            self.gmf = GMFNet(n_users, n_items, factors, layers)
            self.mlp = MLPNet(n_users, n_items, factors, layers)
            self.out = nn.Linear(2 * factors, 1)
            nn.init.normal_(self.out.weight, std=0.01)
            nn.init.zeros_(self.out.bias)
            # the branches' own output layers are used only when pretraining
            self.gmf.out.requires_grad_(False)
            self.mlp.out.requires_grad_(False)

        def forward(self, u: Any, i: Any) -> Any:
            g = self.gmf.user(u) * self.gmf.item(i)
            return self.out(torch.cat([g, self.mlp.hidden(u, i)], dim=-1)).squeeze(-1)

        def score_block(self, u: Any, items: Any) -> Any:
            f = self.gmf.out.in_features
            wg, wm = self.out.weight[0, :f], self.out.weight[0, f:]
            g = (self.gmf.user(u) * wg) @ self.gmf.item(items).T
            m = self.mlp.hidden_block(u, items) @ wm
            return g + m + self.out.bias

        @torch.no_grad()
        def init_from(self, gmf: Any, mlp: Any, alpha: float) -> None:
            """NeuMF from pretrained branches: h = [alpha h_GMF ; (1 - alpha) h_MLP] (eq. 13)."""
            self.gmf.load_state_dict(gmf.state_dict())
            self.mlp.load_state_dict(mlp.state_dict())
            self.out.weight.copy_(torch.cat([alpha * gmf.out.weight, (1 - alpha) * mlp.out.weight], dim=1))
            self.out.bias.copy_(alpha * gmf.out.bias + (1 - alpha) * mlp.out.bias)

    _NETS = {"gmf": GMFNet, "mlp": MLPNet, "neumf": NeuMFNet}
    return _NETS


_NETS: dict[str, Any] = {}


# ---------------------------------------------------------------------- the models
class _NCF(TorchModel):
    """Shared fit / score / persistence of the three NCF models."""

    kind: ClassVar[str] = ""
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("torch", "neural"),)
    fast_params: ClassVar[dict[str, Any]] = {
        "factors": 8,
        "layers": 2,
        "epochs": 1,
        "batch_size": 1024,
        "validation": 0.0,
        "device": "cpu",
    }
    renamed_params: ClassVar[dict[str, str | tuple[str, ...]]] = {"alpha": "gmf_weight"}
    # ``epochs`` is a cap: early stopping on the model's own validation picks the epoch.
    search_space: ClassVar[dict[str, Dist]] = {
        "factors": Int(8, 64, log=True),
        "layers": Int(1, 4),
        "negatives": Int(1, 8),
        "learning_rate": LogFloat(1e-4, 1e-2),
        "batch_size": Categorical([256, 512, 1024]),
    }

    def __init__(
        self,
        factors: int = 16,
        layers: int = 3,
        negatives: int = 4,
        loss: Literal["log", "bpr"] = "log",
        epochs: int = 20,
        learning_rate: float = 0.001,
        batch_size: int = 256,
        reg: float = 0.0,
        pretrain: bool = False,
        gmf_weight: float = 0.5,
        validation: float = 0.2,
        patience: int | None = 3,
        checkpoint_dir: str | None = None,
        resume: bool = False,
        progress: bool = False,
        device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.layers = layers
        self.negatives = negatives
        self.loss = loss
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.reg = reg
        self.pretrain = pretrain
        self.gmf_weight = gmf_weight
        self.validation = validation
        self.patience = patience
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.progress = progress
        self.device = device
        self.random_state = random_state

    def _validate_params(self) -> None:
        name = type(self).__name__
        positive(name, factors=self.factors, learning_rate=self.learning_rate)
        non_negative(name, reg=self.reg)
        super()._validate_params()  # the shared training settings
        positive(name, layers=self.layers, negatives=self.negatives)
        if not 0.0 <= self.gmf_weight <= 1.0:
            raise ConfigError(f"{name}: gmf_weight must be in [0, 1], got {self.gmf_weight!r}")
        if self.pretrain and self.kind != "neumf":
            raise ConfigError(f"{name}: pretrain=True only applies to NeuMF")

    # ------------------------------------------------------------------ fit
    def _build(self, kind: str | None = None) -> Any:
        return _nets()[kind or self.kind](self.n_users, self.n_items, int(self.factors), int(self.layers))

    def _fit(self, data: Interactions) -> None:
        require_torch()
        seed_everything(self.random_state)
        device = pick_device(self.device)
        train, val_users, val_items = holdout(self.user_items_, self.validation, self.random_state)
        self.history_: list[dict[str, Any]] = []
        if self.kind == "neumf" and self.pretrain:
            gmf = self._train(self._build("gmf").to(device), train, val_users, val_items, device, "gmf", sgd=False)
            mlp = self._train(self._build("mlp").to(device), train, val_users, val_items, device, "mlp", sgd=False)
            net = self._build("neumf").to(device)
            net.init_from(gmf, mlp, float(self.gmf_weight))
            net = self._train(net, train, val_users, val_items, device, "neumf", sgd=True)
        else:
            net = self._train(self._build().to(device), train, val_users, val_items, device, self.kind, sgd=False)
        self._net = net.cpu().eval()
        if self._hooks.finish is not None:  # the scale layer merges the per-user state of its blocks
            self._hooks.finish(self)

    def _train(
        self,
        net: Any,
        train: sp.csr_matrix,
        val_users: np.ndarray,
        val_items: np.ndarray,
        device: Any,
        name: str,
        sgd: bool,
    ) -> Any:
        torch = require_torch()
        coo = train.tocoo()
        pos_u, pos_i = coo.row.astype(np.int64), coo.col.astype(np.int64)
        n_pos, n_neg, bs = len(pos_u), int(self.negatives), int(self.batch_size)
        seed = int(self.random_state)
        loss_kind = self.loss

        def batches(epoch: int) -> Any:
            rng = np.random.default_rng([seed, epoch, 1])
            neg = sample_negatives(rng, pos_u, train, n_neg)
            if loss_kind == "log":
                # every positive with label 1 and its negatives with label 0, shuffled together
                u = np.concatenate([pos_u, np.repeat(pos_u, n_neg)])
                i = np.concatenate([pos_i, neg.ravel()])
                y = np.concatenate([np.ones(n_pos, np.float32), np.zeros(n_pos * n_neg, np.float32)])
                order = rng.permutation(len(u))
                u, i, y = u[order], i[order], y[order]
                for s in range(0, len(u), bs):
                    yield (
                        torch.as_tensor(u[s : s + bs], device=device),
                        torch.as_tensor(i[s : s + bs], device=device),
                        torch.as_tensor(y[s : s + bs], device=device),
                    )
            else:
                order = rng.permutation(n_pos)
                for s in range(0, n_pos, bs):
                    sel = order[s : s + bs]
                    yield (
                        torch.as_tensor(pos_u[sel], device=device),
                        torch.as_tensor(pos_i[sel], device=device),
                        torch.as_tensor(neg[sel], device=device),
                    )

        bce = torch.nn.BCEWithLogitsLoss()

        def step(batch: Any) -> Any:
            u, i, extra = batch
            if loss_kind == "log":
                return bce(net(u, i), extra)
            s_pos = net(u, i)
            s_neg = net(u[:, None].expand_as(extra), extra)
            return -torch.nn.functional.logsigmoid(s_pos[:, None] - s_neg).mean()

        validate = None
        if len(val_users):
            seen = train[val_users]
            vu = torch.as_tensor(val_users, device=device)
            all_items = torch.arange(self.n_items, device=device)

            def validate() -> float:
                scores = torch.cat([net.score_block(vu[s : s + 256], all_items) for s in range(0, len(vu), 256)])
                return hit_rate(scores.cpu().numpy(), seen, val_items)

        params = [p for p in net.parameters() if p.requires_grad]
        if sgd:
            optimizer = torch.optim.SGD(params, lr=float(self.learning_rate), weight_decay=float(self.reg))
        else:
            optimizer = adam(params, lr=float(self.learning_rate), weight_decay=float(self.reg))
        loop = self._train_loop(name)
        per_batch = (lambda b: len(b[0])) if loss_kind == "log" else (lambda b: int(b[2].numel()))
        examples = n_pos * (1 + n_neg) if loss_kind == "log" else n_pos
        history = loop.run(
            net,
            optimizer,
            batches,
            step,
            validate,
            examples_per_batch=per_batch,
            steps_per_epoch=-(-examples // bs),
            layout=self.batch_layout(),
        )
        for row in history:
            self.history_.append(dict(row, stage=name))
        self.best_epoch_ = loop.best_epoch
        return net

    # ------------------------------------------------------------------ scoring
    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        torch = require_torch()
        items = torch.arange(self.n_items) if item_idx is None else torch.as_tensor(np.asarray(item_idx, np.int64))
        rows = max(1, PAIR_BLOCK // max(1, len(items)))
        out = []
        with torch.no_grad():
            for s in range(0, len(user_idx), rows):
                u = torch.as_tensor(np.asarray(user_idx[s : s + rows], np.int64))
                out.append(self._net.score_block(u, items).numpy())
        return np.vstack(out) if out else np.empty((0, len(items)), np.float32)

    # ------------------------------------------------------------------ persistence
    def _extra_files(self) -> dict[str, bytes]:
        return {WEIGHTS: module_to_bytes(self._net)}

    def _load_extra(self, files: dict[str, bytes]) -> None:
        from tastebud.core.errors import ModelFormatError

        if WEIGHTS not in files:
            raise ModelFormatError(f"{self.name}: saved model has no {WEIGHTS}")
        self._net = module_from_bytes(self._build(), files[WEIGHTS]).eval()


@register("gmf")
class GMF(_NCF):
    """Generalised matrix factorisation, the linear branch of NCF (He et al. 2017, section 3.2)."""

    kind = "gmf"


@register("mlp")
class MLP(_NCF):
    """NCF's multi-layer perceptron over concatenated embeddings (He et al. 2017, section 3.3)."""

    kind = "mlp"


@register("neumf")
class NeuMF(_NCF):
    """GMF and MLP fused under one output layer (He et al. 2017, section 3.4);
    ``pretrain=True`` starts from trained GMF and MLP, their output layers weighted by ``gmf_weight``."""

    kind = "neumf"
    demo_params: ClassVar[dict[str, Any] | None] = {"epochs": 3}
