"""`evaluate`: models x splits -> a tidy DataFrame (one row per model and fold)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from tastebud.core.base import RatingModel, Recommender
from tastebud.core.errors import NotSupportedError
from tastebud.data.splits import Split, StrongSplit
from tastebud.eval import metrics as M

DEFAULT_METRICS = ("ndcg", "recall", "precision", "map", "mrr", "hit_rate")


def evaluate(
    models: Mapping[str, Recommender] | Sequence[Recommender] | Recommender,
    splits: Split | StrongSplit | Sequence[Split | StrongSplit],
    k: int = 10,
    metrics: Sequence[str] = DEFAULT_METRICS,
    relevance_threshold: float | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Fit a fresh copy of each model on each split's train part and score it on the test part.

    Ranking metrics rank *all* items, excluding each user's training items; a test item counts as
    relevant when its value is at least ``relevance_threshold`` (every test item when None).
    Rating models on explicit data also get RMSE and MAE over every test pair.
    Columns: model, split, fit_s, eval_s, users, rmse, mae, <metric>@k..., coverage, novelty,
    popularity.

    A :class:`StrongSplit` (held-out users) is scored by folding in each test user's history
    (:func:`tastebud.eval.strong.evaluate_fold_in`, models with ``supports_history`` only): its
    row has ``<metric>@k``, ``users`` and ``eval_s``.
    """
    if isinstance(models, Recommender):
        models = {models.name or type(models).__name__: models}
    elif not isinstance(models, Mapping):
        models = {m.name or type(m).__name__: m for m in models}
    split_list = [splits] if isinstance(splits, (Split, StrongSplit)) else list(splits)
    unknown = [m for m in metrics if m not in M.RANKING_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(M.RANKING_METRICS)}")
    if any(isinstance(s, StrongSplit) for s in split_list):
        lacking = [name for name, m in models.items() if not m.supports_history]
        if lacking:
            raise NotSupportedError(
                f"strong generalisation folds in new users' histories, which {', '.join(lacking)} cannot; "
                "evaluate models with supports_history (ease, mult_vae, recvae, ...)"
            )
    rows = []
    jobs = [(name, model, split) for split in split_list for name, model in models.items()]
    bar = _progress(len(jobs), progress)
    for name, template, split in jobs:
        model = template.clone()
        start = time.perf_counter()
        model.fit(split.train)
        fit_s = time.perf_counter() - start
        row = {"model": name, "split": split.name, "fit_s": fit_s}
        if isinstance(split, StrongSplit):
            from tastebud.eval.strong import evaluate_fold_in

            row.update(evaluate_fold_in(model, split.test, [f"{m}@{k}" for m in metrics]))
        else:
            row.update(evaluate_fitted(model, split, k, metrics, relevance_threshold))
        rows.append(row)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return pd.DataFrame(rows)


def evaluate_fitted(
    model: Recommender,
    split: Split,
    k: int = 10,
    metrics: Sequence[str] = DEFAULT_METRICS,
    relevance_threshold: float | None = None,
) -> dict[str, float]:
    """Metrics of an already-fitted model on ``split.test`` (same vocabularies as training)."""
    start = time.perf_counter()
    out: dict[str, float] = {}
    test = split.test
    if isinstance(model, RatingModel) and test.explicit and split.train.explicit:
        pred = model.predict_idx(test.user_idx, test.item_idx, test.timestamps)  # times: for models that drift
        out["rmse"] = M.rmse(pred, test.values)
        out["mae"] = M.mae(pred, test.values)
    rel = test.matrix
    if relevance_threshold is not None:
        rel = rel.multiply(rel >= relevance_threshold).tocsr()
        rel.eliminate_zeros()
    users = np.nonzero(np.diff(rel.indptr) > 0)[0]
    rec, _ = model.rank_rows(users, k, exclude_seen=True)
    rel_rows = rel[users]
    for name in metrics:
        out[f"{name}@{k}"] = float(np.mean(M.RANKING_METRICS[name](rec, rel_rows, k)))
    pop = np.bincount(split.train.matrix.indices, minlength=split.train.n_items)
    out["coverage"] = M.catalog_coverage(rec, split.train.n_items)
    out["novelty"] = float(np.nanmean(M.novelty(rec, pop, split.train.n_users)))
    out["popularity"] = float(np.nanmean(M.average_popularity(rec, pop)))
    out["users"] = int(len(users))
    out["eval_s"] = time.perf_counter() - start
    return out


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean over splits per model (the usual table)."""
    numeric = results.drop(columns=["split"]).groupby("model", sort=False).mean(numeric_only=True)
    return numeric.reset_index()


def _progress(total: int, enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="evaluate", unit="fit")


__all__ = ["evaluate", "evaluate_fitted", "summarize"]
