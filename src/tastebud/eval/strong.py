"""Strong generalisation (Liang et al., WWW 2018): score users the model was not trained on.

Each held-out user's fold-in events go to ``recommend_for_history`` (the public fold-in every
``supports_history`` model offers), the fold-in items are excluded from the list, and the user's
target events are the relevant items. Liang's metrics are the default: NDCG@100 and Recall@20/50
with the recall capped at ``min(k, |targets|)`` (``recall_capped``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import Recommender
from tastebud.core.errors import ConfigError, NotSupportedError
from tastebud.core.progress import progress_bar
from tastebud.data.splits import FoldIn
from tastebud.eval import metrics as M

STRONG_METRICS = ("ndcg@100", "recall_capped@20", "recall_capped@50")


def parse_labels(labels: Sequence[str]) -> list[tuple[str, str, int]]:
    """``["ndcg@100", ...]`` -> ``[("ndcg@100", "ndcg", 100), ...]``; a ConfigError names a bad label."""
    out = []
    for label in labels:
        name, at, k = str(label).partition("@")
        if name not in M.RANKING_METRICS or not at or not k.isdigit() or int(k) < 1:
            raise ConfigError(f"metric {label!r}: write NAME@K with NAME one of {', '.join(sorted(M.RANKING_METRICS))}")
        out.append((str(label), name, int(k)))
    return out


def evaluate_fold_in(
    model: Recommender, part: FoldIn, metrics: Sequence[str] = STRONG_METRICS, progress: bool = False
) -> dict[str, float]:
    """Mean of each metric over ``part``'s users with a target, each folded in from their history.

    ``model`` must be fitted on the split's training users and support histories. Returns the
    metrics by label plus ``users`` and ``eval_s``.
    """
    if not model.supports_history:
        raise NotSupportedError(
            f"{model.name or type(model).__name__} cannot fold in a new user's history; strong generalisation "
            "needs a model with supports_history (for example ease, mult_vae, recvae)"
        )
    wanted = parse_labels(metrics)
    start = time.perf_counter()
    k_max = max(k for _, _, k in wanted)
    users = part.users
    history = part.fold_in.matrix
    items = part.fold_in.items
    rec = np.full((len(users), k_max), -1, np.int64)
    with progress_bar(len(users), f"fold-in {part.name}", unit="user", force=progress) as bar:
        for row, u in enumerate(users):
            lo, hi = history.indptr[u], history.indptr[u + 1]
            got = model.recommend_for_history(items.to_ids(history.indices[lo:hi]), history.data[lo:hi], k=k_max)
            ids = got.items[0]
            valid = ~np.isnan(got.scores[0])
            rec[row, : int(valid.sum())] = items.lookup(list(ids[valid]))
            bar.update(1)
    relevant = sp.csr_matrix(part.target.matrix[users])
    out: dict[str, float] = {
        label: float(np.mean(M.RANKING_METRICS[name](rec, relevant, k))) if len(users) else float("nan")
        for label, name, k in wanted
    }
    out["users"] = int(len(users))
    out["eval_s"] = time.perf_counter() - start
    return out


__all__ = ["STRONG_METRICS", "evaluate_fold_in", "parse_labels"]
