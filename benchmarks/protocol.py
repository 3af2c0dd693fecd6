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
) -> tuple[dict[str, Any], float]:
    """Optuna TPE over ``space`` (tastebud's distributions), ``trials`` trials; the best point and value.

    ``score(params)`` fits on the carve's training part and returns the validation metric. The
    sampler and its seed are the ones ``tastebud tune`` uses, so a peer's search is the same tool
    with the same budget.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        direction="maximize" if maximize else "minimize", sampler=optuna.samplers.TPESampler(seed=seed)
    )

    def objective(trial: Any) -> float:
        params = {**(fixed or {}), **{name: dist.suggest(trial, name) for name, dist in space.items()}}
        return float(score(params))

    study.optimize(objective, n_trials=trials)
    return {**(fixed or {}), **study.best_params}, float(study.best_value)


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
