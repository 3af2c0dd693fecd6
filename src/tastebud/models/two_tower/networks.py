"""The two towers as torch modules: an item tower (id embedding plus feature bag, MLP, unit
vector) and a user tower (pooled history of item-tower vectors plus optional id, demographics and
request context, a residual MLP, unit vector), and the training-time forward pass of a batch.

torch is imported lazily, so the classes are built on first use by :func:`_nets`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tastebud.core.errors import ConfigError
from tastebud.models._torch import require_torch

_NETS: dict[str, Any] = {}


def _nets() -> dict[str, Any]:
    """The tower classes (torch imported on the first call): ItemTower, UserTower, TwoTowerNet."""
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


def build_net(
    n_users: int,
    n_items: int,
    dim: int,
    n_item_features: int,
    n_user_features: int,
    item_layers: Sequence[int],
    user_layers: Sequence[int],
    pooling: str,
    user_ids: bool,
    context: bool,
    item_bias: bool,
) -> Any:
    """A fresh (untrained) two-tower network; ``dim`` is the width of the embeddings fed into the
    towers' MLPs, the layers their widths (both must end in the same dimension)."""
    nets = _nets()
    item = nets["ItemTower"](n_items, dim, n_item_features, item_layers, bias=item_bias)
    user = nets["UserTower"](n_users, dim, n_user_features, user_layers, pooling, user_ids, context)
    return nets["TwoTowerNet"](user, item)


def batch_vectors(
    net: Any, batch: dict[str, Any], item_features: tuple[Any, Any], user_features: tuple[Any, Any]
) -> tuple[Any, Any, Any]:
    """A training batch's user vectors, positive item vectors and extra negatives' vectors (None
    without negatives), ready for the sampled softmax. ``item_features`` / ``user_features``: the
    padded (index, weight) feature tensors of the whole catalogue and of every user.

    With an item bias the score ``(<u, v> + c) / tau`` becomes one inner product: u gets a 1, v
    its item's bias c, so the loss (and its data-parallel form) sees plain vectors.
    """
    torch = require_torch()
    it, ut = net.item_tower, net.user_tower
    ifi, ifv = item_features
    ufi, ufv = user_features
    users, items = batch["users"], batch["items"]
    # the history is pooled from the item tower's own output vectors (ids + features)
    uniq, inv = torch.unique(batch["hist"], return_inverse=True)
    table = it(uniq, torch.ones(len(uniq), device=uniq.device), ifi[uniq], ifv[uniq])
    u = ut(
        table,
        inv,
        batch["mask"],
        users,
        batch["keep_user"],
        ufi[users],
        # an anonymous example (keep_user 0) has neither id nor demographics, exactly
        # like a person served from a live history without a training row
        ufv[users] * batch["keep_user"].unsqueeze(-1),
        batch["ctx"],
    )
    v = it(items, batch["keep_id"], ifi[items], ifv[items])
    vn = None
    neg = batch["neg"]
    if len(neg):
        vn = it(neg, torch.ones(len(neg), device=neg.device), ifi[neg], ifv[neg])
    if it.bias is not None:
        u = torch.cat([u, u.new_ones((len(u), 1))], dim=1)
        v = torch.cat([v, it.bias(items)], dim=1)
        if vn is not None:
            vn = torch.cat([vn, it.bias(neg)], dim=1)
    return u, v, vn


def current_bias(net: Any) -> Any:
    """The item tower's per-item bias as it stands (0.0 without one), for validation scores."""
    c = net.item_tower.bias
    return 0.0 if c is None else c.weight.detach().cpu().numpy()[:, 0]
