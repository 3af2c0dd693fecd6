"""The one protocol every benchmark follows when it compares tastebud with a peer.

* Choices are made on validation only: a split carved from the training part
  (:func:`tastebud.tune.validation_split`, the carve ``tastebud tune`` uses), never the split a
  number is reported on.
* Every side gets the same search: Optuna's TPE sampler, seeded, the same number of trials, over
  a space that mirrors tastebud's own (:func:`search`). The chosen setting is refitted on the whole
  training part and scored once on the test part.
* Each table shows "defaults" and "tuned on validation (N trials)" rows for both sides.
* Stochastic fits run over several seeds; "beats" is said only from a paired comparison whose
  spread is shown (:func:`paired`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tastebud.core.base import Recommender
from tastebud.core.space import Dist
from tastebud.data.interactions import Interactions
from tastebud.data.splits import Split


def carve(train: Interactions, model: str, metric: str, seed: int = 0) -> Split:
    """The validation split of ``train`` that both sides are tuned on (tastebud's own carve)."""
    from tastebud.tune import validation_split

    return validation_split(train, model, metric, random_state=seed)


def search(
    space: Mapping[str, Dist],
    score: Callable[[dict[str, Any]], float],
    trials: int,
    seed: int = 0,
    maximize: bool = False,
    fixed: Mapping[str, Any] | None = None,
    start: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], float]:
    """Optuna TPE over ``space`` (tastebud's distributions), ``trials`` trials; the best point and value.

    ``score(params)`` fits on the carve's training part and returns the validation metric. The
    sampler and its seed are the ones ``tastebud tune`` uses, so a peer's search is the same tool
    with the same budget. ``start``: a known point (a paper's setting) tried first, as one of the
    ``trials``; its keys outside ``space`` are ignored.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        direction="maximize" if maximize else "minimize", sampler=optuna.samplers.TPESampler(seed=seed)
    )

    def objective(trial: Any) -> float:
        params = {**(fixed or {}), **{name: dist.suggest(trial, name) for name, dist in space.items()}}
        return float(score(params))

    if start:
        study.enqueue_trial({k: v for k, v in start.items() if k in space})
    study.optimize(objective, n_trials=trials)
    return {**(fixed or {}), **study.best_params}, float(study.best_value)


def validation_value(model: Recommender, split: Split, metric: str) -> float:
    """``metric`` of a model fitted on ``split.train``, read as ``tastebud.tune`` reads a trial."""
    from tastebud.eval.evaluate import evaluate_fitted
    from tastebud.tune import parse_metric

    m = parse_metric(metric)
    return float(evaluate_fitted(model, split, k=m.k, metrics=(m.name,))[m.label])


def tune_peer(
    fit: Callable[[Interactions, dict[str, Any]], Recommender],
    space: Mapping[str, Dist],
    train: Interactions,
    like: str,
    metric: str,
    trials: int,
    seed: int = 0,
) -> tuple[dict[str, Any], float]:
    """A peer searched as ``tastebud.tune`` searches the tastebud model ``like``: the same carve of
    ``train``, the same sampler, seed and budget, trials read the same way; the best point and its
    validation value. ``fit(train, params)`` returns a fitted model (a peer carried into tastebud).
    """
    split = carve(train, like, metric, seed)
    return search(space, lambda p: validation_value(fit(split.train, p), split, metric), trials, seed, maximize=True)


def top_n(model: Recommender, split: Split) -> dict[str, float]:
    """Full-ranking NDCG@10 and Recall@20 on ``split.test``, each user's training items excluded:
    the test read every side of a top-N table gets (``rank_rows``, the evaluation loop's own entry)."""
    from tastebud.eval import metrics as M

    rel = split.test.matrix
    users = np.nonzero(np.diff(rel.indptr) > 0)[0]
    rec, _ = model.rank_rows(users, 20, exclude_seen=True)
    rows = rel[users]
    return {
        "ndcg@10": float(np.mean(M.ndcg_at_k(rec, rows, 10))),
        "recall@20": float(np.mean(M.recall_at_k(rec, rows, 20))),
    }


def tune_tastebud(
    model: str, train: Interactions, metric: str, trials: int, seed: int = 0, fixed: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """tastebud's own search (``tastebud.tune``) on the carve of ``train``: the chosen parameters."""
    from tastebud.tune import tune

    return dict(tune(model, train, metric=metric, trials=trials, params=dict(fixed or {}), random_state=seed).params)


def mean_std(values: Sequence[float], digits: int = 4) -> str:
    """``mean ± std`` (sample standard deviation; just the value for one)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def paired(ours: Sequence[float], theirs: Sequence[float], lower_is_better: bool, digits: int = 4) -> str:
    """Per-pair differences (ours - theirs) with their mean, spread and how many pairs we win."""
    diffs = [a - b for a, b in zip(ours, theirs, strict=True)]
    wins = sum(d < 0 if lower_is_better else d > 0 for d in diffs)
    listed = ", ".join(f"{d:+.{digits}f}" for d in diffs)
    spread = f" ± {statistics.stdev(diffs):.{digits}f}" if len(diffs) > 1 else ""
    return f"{statistics.fmean(diffs):+.{digits}f}{spread} ({listed}; better in {wins} of {len(diffs)})"
