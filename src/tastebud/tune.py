"""Hyper-parameter search that only ever sees training data.

``tune("ials", train)`` carves a validation split out of ``train`` with the splitters evaluation
uses (a per-user holdout for top-N metrics, random ratings for RMSE/MAE, each user's last item for
sequential models), then runs an Optuna study over the model's own ``search_space``: a TPE sampler
seeded from ``random_state``, and a median pruner that stops a neural model's trial early when its
per-epoch validation metric trails the other trials at the same epoch. There is deliberately no
argument for a test set: numbers chosen on the test split flatter the model they were chosen for,
so the test split stays unread until the final report (docs/tuning.md).

``TuneResult.save("best.json")`` writes the best parameters as JSON (read back by
``tastebud train MODEL -p @best.json`` or :func:`load_params`), the trials table beside it as
``best.trials.csv`` and a picture of the search as ``best.history.png``.

``choose_fusion(data, ["ials", "ease", "itemknn"])`` chooses a hybrid the same way: its members,
fusion (score or rank) and weights are searched on the validation carve, from each member's
scores computed once, and the result is a ``hybrid`` configuration that ``tastebud train hybrid
-p @best.json`` refits on all the training data.

Optuna and matplotlib are optional (``pip install tastebud[tune]``) and imported on use by
:func:`tune`; :func:`choose_fusion` needs neither.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tastebud.core import ranking
from tastebud.core.errors import ConfigError, DataError, TrainingError
from tastebud.core.persist import atomic_write_bytes
from tastebud.core.progress import enabled, progress_bar
from tastebud.core.registry import get_model
from tastebud.data import splits
from tastebud.data.interactions import Interactions
from tastebud.eval import metrics as M
from tastebud.models.hybrid import Hybrid, fuse, fusion_signal, normalised_weights

#: Metrics on predicted ratings (lower is better); every other metric is a ranking metric @k.
RATING_METRICS = ("rmse", "mae")
DEFAULT_K = 10


@dataclass(frozen=True)
class Metric:
    """What a search optimises: ``ndcg@10``, ``recall@20``, ``rmse``, ..."""

    name: str
    k: int = DEFAULT_K

    @property
    def maximize(self) -> bool:
        return self.name not in RATING_METRICS

    @property
    def label(self) -> str:
        return self.name if self.name in RATING_METRICS else f"{self.name}@{self.k}"


def parse_metric(text: str) -> Metric:
    """``"ndcg@10"`` -> Metric("ndcg", 10); a ranking metric without ``@k`` is taken at k = 10."""
    name, _, k = str(text).strip().lower().partition("@")
    choices = ", ".join([*RATING_METRICS, *(f"{m}@k" for m in M.RANKING_METRICS)])
    if name in RATING_METRICS:
        if k:
            raise ConfigError(f"metric {text!r}: {name} takes no @k")
        return Metric(name)
    if name not in M.RANKING_METRICS:
        raise ConfigError(f"unknown metric {text!r}; choose from {choices}")
    if not k:
        return Metric(name)
    if not k.isascii() or not k.isdigit() or int(k) < 1:
        raise ConfigError(f"metric {text!r}: k must be a positive integer")
    return Metric(name, int(k))


def validation_split(
    data: Interactions, model: str, metric: str | Metric = "ndcg@10", fraction: float = 0.2, random_state: int = 0
) -> splits.Split:
    """The validation split a search scores trials on, carved from the training data alone.

    Rating metrics hold out a random ``fraction`` of the ratings (the first fold of
    ``kfold(k=round(1/fraction))``); sequential models hold out each user's last item by time
    (``leave_last_out``); everything else holds out ``fraction`` of each user's events
    (``holdout``), as evaluation does.
    """
    _check_training_data(data)
    cls = get_model(model)
    m = metric if isinstance(metric, Metric) else parse_metric(metric)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ConfigError(f"fraction must be between 0 and 1 (exclusive), got {fraction!r}")
    if not m.maximize:
        if not cls.predicts_ratings:
            raise ConfigError(f"{model} ranks items and predicts no ratings; optimise a ranking metric such as ndcg@10")
        if not data.explicit:
            raise ConfigError(
                f"{m.name} needs ratings but the data is implicit; optimise a ranking metric such as ndcg@10"
            )
        folds = max(2, min(len(data), round(1.0 / fraction)))
        split = splits.kfold(data, k=folds, random_state=random_state)[0]
    elif cls.sequential:
        if data.timestamps is None:
            raise DataError(
                f"{model} is validated on each user's last item, which needs timestamps; give the data a time column"
            )
        split = splits.leave_last_out(data, n=1)
        assert isinstance(split, splits.Split)
    else:
        split = splits.holdout(data, fraction=fraction, random_state=random_state)
    if len(split.test) == 0 or len(split.train) == 0:
        raise DataError(
            f"{data.summary.source}: too few interactions per user to hold out a validation part "
            f"({split.name} left {len(split.test)} to validate on)"
        )
    return split


@dataclass
class TuneResult:
    """The outcome of :func:`tune`. ``params`` builds the best model: ``get_model(model)(**params)``."""

    model: str
    metric: str
    maximize: bool
    params: dict[str, Any]
    value: float
    trials: pd.DataFrame
    importances: dict[str, float]
    validation: dict[str, Any]
    study: Any = field(repr=False, default=None)

    def save(self, out: str | Path) -> dict[str, Path]:
        """Write the best parameters to ``out`` (JSON), the trials CSV and the history PNG beside it.

        Each file is written atomically. Returns the three paths by kind (json, csv, png)."""
        out = Path(out)
        paths = {
            "json": out,
            "csv": out.with_name(f"{out.stem}.trials.csv"),
            "png": out.with_name(f"{out.stem}.history.png"),
        }
        payload = json.dumps(self.params, indent=2, sort_keys=True, default=_json_default) + "\n"
        atomic_write_bytes(paths["json"], payload.encode("utf-8"))
        atomic_write_bytes(paths["csv"], self.trials.to_csv(index=False).encode("utf-8"))
        atomic_write_bytes(paths["png"], self.plot())
        return paths

    def plot(self) -> bytes:
        """PNG bytes: the search history (each trial and the best so far) and parameter importances."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global backend state
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 4.2), dpi=100)
        FigureCanvasAgg(fig)
        ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
        done = self.trials[self.trials["state"] == "COMPLETE"]
        if len(done):
            values = done["value"].to_numpy(float)
            best = np.maximum.accumulate(values) if self.maximize else np.minimum.accumulate(values)
            ax.scatter(done["trial"], values, s=18, color="tab:blue", label="trial")
            ax.step(done["trial"], best, where="post", color="tab:red", label="best so far")
            ax.legend(loc="best", fontsize=8)
        pruned = self.trials[self.trials["state"] == "PRUNED"]
        for t in pruned["trial"]:
            ax.axvline(t, color="0.85", lw=0.8, zorder=0)
        ax.set_xlabel("trial" + (" (grey: pruned)" if len(pruned) else ""))
        ax.set_ylabel(f"validation {self.metric}")
        ax.set_title(f"{self.model}: search history")
        if self.importances:
            names = list(self.importances)[::-1]
            bx.barh(names, [self.importances[n] for n in names], color="tab:green")
            bx.set_xlabel("importance")
        else:
            bx.text(
                0.5, 0.5, "importances need 2 complete trials\nand a parameter that varies", ha="center", va="center"
            )
            bx.set_axis_off()
        bx.set_title("parameter importances")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()


def tune(
    model: str,
    data: Interactions,
    *,
    metric: str = "ndcg@10",
    trials: int | None = 20,
    timeout: float | None = None,
    params: Mapping[str, Any] | None = None,
    enqueue: Sequence[Mapping[str, Any]] = (),
    fraction: float = 0.2,
    random_state: int = 0,
    progress: bool = False,
) -> TuneResult:
    """Search ``model``'s hyper-parameters on a validation split carved from ``data`` (training only).

    ``params`` fixes hyper-parameters (they are not searched and are part of the result);
    ``enqueue`` lists points to try first (a known configuration to beat, for example).
    ``trials`` and ``timeout`` (seconds; a running trial is finished) bound the search; the
    first reached stops it. A bar per trial shows on stderr when progress is on
    (:mod:`tastebud.core.progress`; the CLI's default) or ``progress`` is True.
    """
    optuna = _require("optuna")
    _require("matplotlib")
    cls = get_model(model)
    m = parse_metric(metric)
    _check_training_data(data)
    _check_budget(trials, timeout)
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        raise ConfigError(f"random_state must be a non-negative integer, got {random_state!r}")
    fixed = dict(params or {})
    cls().set_params(**fixed)  # ConfigError naming an unknown parameter
    if "random_state" in cls().get_params():
        fixed.setdefault("random_state", int(random_state))
    space = {name: dist for name, dist in cls.search_space.items() if name not in fixed}
    starts = [dict(point) for point in enqueue]
    for point in starts:
        unknown = set(point) - set(space)
        if unknown:
            raise ConfigError(f"enqueued point names {sorted(unknown)}, which {model}'s search space does not hold")
    if not space:  # nothing to search: one fit tells the value
        trials, starts = 1, []
    split = validation_split(data, model, m, fraction=fraction, random_state=random_state)

    from tastebud.eval.evaluate import evaluate_fitted
    from tastebud.models._torch import epoch_observer

    def objective(trial: Any) -> float:
        point = {name: dist.suggest(trial, name) for name, dist in space.items()}
        estimator = cls(**fixed, **point)
        step = 0

        def report(epoch: int, value: float) -> None:  # per-epoch validation of neural models
            nonlocal step
            step += 1  # NeuMF's pretraining runs several loops: number the reports, not the epochs
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: {value:.4f} trails the median of earlier trials")

        started = time.perf_counter()
        try:
            # loops report higher-is-better metrics, so a minimised study cannot compare them; the
            # trial bar stands for the fits' own bars, which would interleave with it
            with epoch_observer(report) if m.maximize else nullcontext(), enabled(False):
                estimator.fit(split.train)
            scores = evaluate_fitted(estimator, split, k=m.k, metrics=() if not m.maximize else (m.name,))
            value = float(scores[m.label])
            if not math.isfinite(value):
                raise TrainingError(f"{model}: validation {m.label} is {value}; the fit diverged")
        except TrainingError as exc:  # recorded as a failed trial; the search goes on
            trial.set_user_attr("error", str(exc))
            raise
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - started)
        return value

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the bar and the table say it per trial
    sampler = optuna.samplers.TPESampler(seed=int(random_state))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)  # the first epoch is noise
    bar = progress_bar(trials, f"tune {model}", "trial", force=progress)

    def on_trial(study: Any, trial: Any) -> None:
        bar.update(1)
        if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
            bar.set_postfix({m.label: f"{study.best_value:.4f}", "last": trial.state.name.lower()}, refresh=False)

    try:
        study = optuna.create_study(direction="maximize" if m.maximize else "minimize", sampler=sampler, pruner=pruner)
        for point in starts:
            study.enqueue_trial(point, skip_if_exists=False)
        with warnings.catch_warnings():  # an enqueued point may lie outside the space on purpose
            warnings.filterwarnings("ignore", message=r"Fixed parameter .* out of range")
            study.optimize(objective, n_trials=trials, timeout=timeout, catch=(TrainingError,), callbacks=[on_trial])
    finally:
        optuna.logging.set_verbosity(verbosity)
        bar.close()

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        errors = [t.user_attrs["error"] for t in study.trials if "error" in t.user_attrs]
        states = ", ".join(sorted({t.state.name.lower() for t in study.trials})) or "none ran"
        why = f"; the last error: {errors[-1]}" if errors else "; widen the budget"
        raise TrainingError(f"tune {model}: no trial completed ({states}){why}")
    best = study.best_trial
    return TuneResult(
        model=model,
        metric=m.label,
        maximize=m.maximize,
        params={**fixed, **best.params},
        value=float(best.value),
        trials=_trials_frame(study, list(space)),
        importances=_importances(study, complete, list(space)),
        validation={"split": split.name, **split.report},
        study=study,
    )


def load_params(path: str | Path) -> dict[str, Any]:
    """Hyper-parameters from a JSON file written by :meth:`TuneResult.save` (a JSON object)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such parameter file")
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(params, dict):
        raise DataError(f"{path}: must hold a JSON object of hyper-parameters, got {type(params).__name__}")
    return params


# ---------------------------------------------------------------------------- fusion
#: What :func:`choose_fusion` tries: the rank constants of reciprocal rank fusion, and the levels
#: each member's weight takes (every combination, proportional ones once, equal weights first).
RRF_K_GRID = (10, 30, 60, 120)
WEIGHT_LEVELS = (1.0, 2.0, 4.0)
#: Users scored per block while the members' validation scores are cached (rows x items floats).
_CACHE_BLOCK = 2_000_000


@dataclass
class FusionResult:
    """The outcome of :func:`choose_fusion`. ``params`` builds the chosen blend: ``Hybrid(**params)``.

    ``member_values`` is each candidate's validation metric alone; when one member wins,
    ``single`` is true and the "blend" is that model by itself."""

    metric: str
    params: dict[str, Any]
    value: float
    member_values: dict[str, float]
    trials: pd.DataFrame
    validation: dict[str, Any]
    model: Hybrid | None = field(repr=False, default=None)

    @property
    def single(self) -> bool:
        """True when no blend beat the best model alone on validation."""
        return len(self.params["models"]) == 1

    def save(self, out: str | Path) -> dict[str, Path]:
        """Write the hybrid's parameters to ``out`` (JSON, read by ``tastebud train hybrid -p @out``)
        and the table of what was tried beside it (``<stem>.trials.csv``), each atomically."""
        out = Path(out)
        paths = {"json": out, "csv": out.with_name(f"{out.stem}.trials.csv")}
        payload = json.dumps(self.params, indent=2, sort_keys=True, default=_json_default) + "\n"
        atomic_write_bytes(paths["json"], payload.encode("utf-8"))
        atomic_write_bytes(paths["csv"], self.trials.to_csv(index=False).encode("utf-8"))
        return paths


@dataclass
class _CachedBlock:
    """The validation users of one block: their candidate pool and every member's fusion signals on it."""

    items: np.ndarray  # (rows, width) item indices sorted ascending, -1 padding
    ranks: np.ndarray  # (members, rows, width) full-catalogue ranks of the pool items (int32)
    zscores: np.ndarray  # (members, rows, width) full-catalogue z-scores of the pool items
    relevant: Any  # (rows, n_items) csr: the held-out items


def choose_fusion(
    data: Interactions,
    members: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    metric: str = "ndcg@10",
    max_members: int = 3,
    methods: Sequence[str] = ("score", "rrf"),
    rrf_ks: Sequence[int] = RRF_K_GRID,
    weight_levels: Sequence[float] = WEIGHT_LEVELS,
    pool: int = 200,
    fraction: float = 0.2,
    random_state: int = 0,
    refit: bool = False,
    progress: bool = False,
) -> FusionResult:
    """Choose a hybrid's members, fusion and weights on a validation split carved from ``data``.

    ``members``: candidate model names (a list or ``"a,b,c"``), or ``{name: params}`` (each
    member's tuned parameters, as :func:`tune` writes them). Each candidate is fitted once on the carve's training part and scores
    every validation user once; the search then tries every subset of at most ``max_members``
    candidates, each fusion in ``methods`` (``rrf`` with each of ``rrf_ks``) and each weighting
    from ``weight_levels``, on those cached scores without refitting. A single model is in the
    search space, so the choice is never worse on validation than the best member alone, and may be
    that member. Like :func:`tune`, there is no argument for a test set.

    Lists are ranked within a pool per user, the union of every member's top ``pool`` items (seen
    items excluded), from the very numbers the fitted hybrid computes over the whole catalogue; the
    pool holds the blend's top-k whenever the candidates agree that far (always when ``pool`` covers
    the catalogue). ``refit`` fits the chosen hybrid on all of ``data`` (``FusionResult.model``).
    Deterministic under ``random_state``, which seeds the carve and every member that draws.
    """
    m = parse_metric(metric)
    _check_training_data(data)
    specs = _fusion_members(members, random_state)
    names = list(specs)
    _check_grid(max_members, methods, rrf_ks, weight_levels, pool)
    split = validation_split(data, "hybrid", m, fraction=fraction, random_state=random_state)
    configs = _fusion_configs(len(names), min(int(max_members), len(names)), methods, rrf_ks, weight_levels)
    bar = progress_bar(len(names) + len(configs) + int(bool(refit)), "choose fusion", "step", force=progress)
    try:
        fitted = []
        for name in names:
            bar.set_postfix({"fit": name}, refresh=False)
            with enabled(False):  # the search's bar stands for the members' own
                fitted.append(get_model(name)(**specs[name]).fit(split.train))
            bar.update(1)
        cache = _cache_validation(fitted, split, pool)
        rows, best = [], None
        for number, (subset, method, rrf_k, levels) in enumerate(configs):
            value = _fusion_value(cache, subset, method, rrf_k, normalised_weights(len(levels), levels), m)
            rows.append(
                {
                    "trial": number,
                    "models": "+".join(names[j] for j in subset),
                    "size": len(subset),
                    "method": method,
                    "rrf_k": rrf_k if method == "rrf" and len(subset) > 1 else None,
                    "weights": json.dumps([float(w) for w in levels]),
                    "value": value,
                }
            )
            if best is None or value > best[0]:  # ties keep the earlier: fewer members, equal weights
                best = (value, subset, method, rrf_k, levels)
            bar.set_postfix({m.label: f"{best[0]:.4f}"}, refresh=False)
            bar.update(1)
        assert best is not None
        value, subset, method, rrf_k, levels = best
        chosen = [names[j] for j in subset]
        params: dict[str, Any] = {
            "models": chosen,
            "weights": [float(w) for w in levels],
            "method": method,
            "params": {name: dict(specs[name]) for name in chosen},
        }
        if method == "rrf":
            params["rrf_k"] = int(rrf_k)
        model = None
        if refit:
            bar.set_postfix({"refit": "+".join(chosen)}, refresh=False)
            with enabled(False):
                model = Hybrid(**params).fit(data)
            bar.update(1)
    finally:
        bar.close()
    trials = pd.DataFrame(rows, columns=["trial", "models", "size", "method", "rrf_k", "weights", "value"])
    singles = trials[trials["size"] == 1]
    return FusionResult(
        metric=m.label,
        params=params,
        value=float(value),
        member_values=dict(zip(singles["models"], singles["value"].astype(float), strict=True)),
        trials=trials,
        validation={"split": split.name, "pool": int(pool), **split.report},
        model=model,
    )


def _fusion_members(
    members: Sequence[str] | Mapping[str, Mapping[str, Any]], random_state: int
) -> dict[str, dict[str, Any]]:
    """``{name: params}`` of the candidates, checked as a hybrid checks them; members that draw get the seed."""
    if isinstance(members, str):
        members = [m.strip() for m in members.split(",") if m.strip()]
    if isinstance(members, Mapping):
        specs = {name: dict(params or {}) for name, params in members.items()}
    elif isinstance(members, (list, tuple)):
        if len(set(members)) != len(members):
            raise ConfigError(f"choose_fusion: members has duplicate names: {list(members)}")
        specs = {name: {} for name in members}
    else:
        raise ConfigError(f"choose_fusion: members must be model names or {{name: params}}, got {members!r}")
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        raise ConfigError(f"random_state must be a non-negative integer, got {random_state!r}")
    Hybrid(models=list(specs), params=specs)._check_params()  # names, duplicates, 'hybrid' itself
    for name, params in specs.items():
        cls = get_model(name)
        try:
            defaults = cls().get_params()
            cls().set_params(**params)  # ConfigError naming an unknown parameter
        except TypeError as exc:
            raise ConfigError(f"choose_fusion: params for '{name}': {exc}") from None
        if "random_state" in defaults:
            params.setdefault("random_state", int(random_state))
    return specs


def _check_grid(
    max_members: Any, methods: Sequence[str], rrf_ks: Sequence[int], weight_levels: Sequence[float], pool: Any
) -> None:
    def positive_int(x: Any) -> bool:
        return not isinstance(x, bool) and isinstance(x, (int, np.integer)) and x >= 1

    if not positive_int(max_members):
        raise ConfigError(f"max_members must be a positive integer, got {max_members!r}")
    if not positive_int(pool):
        raise ConfigError(f"pool must be a positive integer (items per member and user), got {pool!r}")
    if not methods or not set(methods) <= {"score", "rrf"}:
        raise ConfigError(f"methods must be 'score' and/or 'rrf', got {list(methods)!r}")
    if "rrf" in methods and (not rrf_ks or not all(positive_int(k) for k in rrf_ks)):
        raise ConfigError(f"rrf_ks must be integers >= 1, got {list(rrf_ks)!r}")
    if not weight_levels or not all(
        isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w > 0 for w in weight_levels
    ):
        raise ConfigError(f"weight_levels must be positive numbers, got {list(weight_levels)!r}")


def _fusion_configs(
    n: int, max_members: int, methods: Sequence[str], rrf_ks: Sequence[int], weight_levels: Sequence[float]
) -> list[tuple[tuple[int, ...], str, int, tuple[float, ...]]]:
    """Every (members, method, rrf_k, weights) to try, simplest first: a member alone, then blends."""
    out: list[tuple[tuple[int, ...], str, int, tuple[float, ...]]] = []
    fusions = [(method, int(k)) for method in dict.fromkeys(methods) for k in (rrf_ks if method == "rrf" else [60])]
    levels = [float(w) for w in dict.fromkeys(weight_levels)]
    for size in range(1, max_members + 1):
        weightings: dict[tuple[float, ...], tuple[float, ...]] = {}
        for w in itertools.product(levels, repeat=size):  # equal weights come first
            shares = tuple(round(x / sum(w), 12) for x in w)
            weightings.setdefault(shares, w if size > 1 else (1.0,))
        for subset in itertools.combinations(range(n), size):
            if size == 1:  # alone, the fusion and weight change the scores, never the order
                out.append((subset, fusions[0][0], fusions[0][1], (1.0,)))
                continue
            for method, k in fusions:
                out += [(subset, method, k, w) for w in weightings.values()]
    return out


def _cache_validation(fitted: list[Any], split: splits.Split, pool: int) -> list[_CachedBlock]:
    """Score every validation user once per member; keep each member's fusion signals on the pool."""
    relevant = split.test.matrix
    users = np.nonzero(np.diff(relevant.indptr) > 0)[0]  # as evaluation picks them
    seen = split.train.matrix
    n_items = seen.shape[1]
    rows = max(1, _CACHE_BLOCK // max(1, n_items * len(fitted)))
    cache = []
    for start in range(0, len(users), rows):
        block_users = users[start : start + rows]
        blocks = [member.score_rows(block_users) for member in fitted]
        in_pool = np.zeros((len(block_users), n_items), bool)
        for block in blocks:
            top, _ = ranking.rank(block, min(pool, n_items), exclude=seen, exclude_rows=block_users)
            r, c = np.nonzero(top >= 0)
            in_pool[r, top[r, c]] = True
        width = max(1, int(in_pool.sum(axis=1).max()))
        # each row's pool items in ascending order (so ties break to the lower item, as in ranking), -1 after
        order = np.argsort(~in_pool, axis=1, kind="stable")[:, :width]
        items = np.where(np.take_along_axis(in_pool, order, axis=1), order, -1)
        cols = np.clip(items, 0, None)
        # ranks are whole numbers below n_items: int32 keeps them exactly in a third less memory
        ranks = np.stack([np.take_along_axis(fusion_signal(b, "rrf"), cols, axis=1) for b in blocks]).astype(np.int32)
        zscores = np.stack([np.take_along_axis(fusion_signal(b, "score"), cols, axis=1) for b in blocks])
        cache.append(_CachedBlock(items, ranks, zscores, relevant[block_users]))
    return cache


def _fusion_value(
    cache: list[_CachedBlock], subset: tuple[int, ...], method: str, rrf_k: int, weights: np.ndarray, m: Metric
) -> float:
    """The validation metric of one configuration, from the cached signals (mean over users)."""
    values = []
    for block in cache:
        if method == "rrf":
            signals = [block.ranks[j].astype(np.float64) for j in subset]
        else:
            signals = [block.zscores[j] for j in subset]
        fused = fuse(signals, weights, method, rrf_k)
        fused[block.items < 0] = -np.inf  # padding is never ranked
        pos, _ = ranking.rank(fused, m.k)
        rec = np.where(pos >= 0, np.take_along_axis(block.items, np.clip(pos, 0, None), axis=1), -1)
        values.append(M.RANKING_METRICS[m.name](rec, block.relevant, m.k))
    return float(np.mean(np.concatenate(values))) if values else float("nan")


# ---------------------------------------------------------------------------- helpers
def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"tuning needs {module}: pip install tastebud[tune]") from None


def _check_training_data(data: Any) -> None:
    if isinstance(data, (splits.Split, tuple, list)):
        raise DataError(
            "tune takes the training Interactions alone and carves its own validation split from them; "
            "it never sees a test set (pass split.train, not the split)"
        )
    if not isinstance(data, Interactions):
        raise DataError(f"tune expects tastebud.Interactions (the training data), got {type(data).__name__}")
    if len(data) == 0:
        raise DataError("tune: the training data has no interactions")


def _check_budget(trials: Any, timeout: Any) -> None:
    if trials is None and timeout is None:
        raise ConfigError("give trials or timeout (or both): an unbounded search never ends")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1):
        raise ConfigError(f"trials must be a positive integer, got {trials!r}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0 or math.isinf(timeout)
    ):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")


def _trials_frame(study: Any, names: list[str]) -> pd.DataFrame:
    rows = []
    for t in study.trials:
        row: dict[str, Any] = {
            "trial": t.number,
            "state": t.state.name,
            "value": t.value,
            "seconds": t.user_attrs.get("seconds"),
            "epochs_reported": len(t.intermediate_values),
            "error": t.user_attrs.get("error", ""),
        }
        row.update({name: t.params.get(name) for name in names})
        rows.append(row)
    return pd.DataFrame(rows, columns=["trial", "state", "value", "seconds", "epochs_reported", "error", *names])


def _importances(study: Any, complete: list[Any], names: list[str]) -> dict[str, float]:
    """Optuna's parameter importances over the parameters that varied (needs >= 2 complete trials)."""
    varying = [n for n in names if len({repr(t.params.get(n)) for t in complete}) > 1]
    if len(complete) < 2 or not varying:
        return {}
    from optuna import importance

    evaluator = importance.PedAnovaImportanceEvaluator() if hasattr(importance, "PedAnovaImportanceEvaluator") else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = importance.get_param_importances(study, evaluator=evaluator, params=varying)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}
    return {k: float(v) for k, v in scores.items()}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


__all__ = [
    "FusionResult",
    "Metric",
    "TuneResult",
    "choose_fusion",
    "load_params",
    "parse_metric",
    "tune",
    "validation_split",
]
