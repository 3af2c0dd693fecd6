"""Where the defaults of the tuned models come from: a study on validation carves only.

A default is one setting for every data set a user brings, so it is chosen on two: ML-100K and
ml-latest-small. For each model and each data set the training part's validation carve
(:func:`tastebud.tune.validation_split`, the one ``tastebud tune`` scores trials on) is searched
with ``tastebud.tune`` (TPE, seed 0, the current default tried first). The candidates are the
current default and the best few trials of each search; every candidate is then scored on *both*
carves, and its score on a carve is read relative to the best candidate there (best / RMSE, or
NDCG / best). The candidate with the highest mean relative score wins. A rule fixed before the
study ran: the current default is kept unless the winner beats it by more than ``TOLERANCE``
(0.25%) in that mean, so a default does not move on noise.

No test part is read: rating models use ML-100K's u1.base and the training part of a random 90/10
split of ml-latest-small (the ``blend`` section's "latest"); top-N models use the training parts of
the fixed top-N splits. The u1 test fold is therefore unseen, while u2..u5's test ratings sit in
u1.base: the rating section's u2..u5 figures are not fully out of sample for a default chosen here.

    .venv/bin/python benchmarks/study_defaults.py --task rating --results /tmp/rating.jsonl
    .venv/bin/python benchmarks/study_defaults.py --task topn --results /tmp/topn.jsonl
    .venv/bin/python benchmarks/study_defaults.py --render /tmp/rating.jsonl /tmp/topn.jsonl

``--render`` writes docs/defaults.md (the commit the study ran at is recorded in it); the rows it
was last rendered from are kept in ``benchmarks/defaults_measured.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from common import DATA, git, machine  # noqa: I001
from tastebud.core.persist import atomic_write_bytes
from tastebud.core.registry import get_model
from tastebud.core.space import Float, Int
from tastebud.data import splits as S
from tastebud.data.movielens import fixed_split, load_ml_latest_small, ml100k_folds
from tastebud.tune import parse_metric, tune, validation_split

#: A default moves only when the winner's mean relative score is this much higher.
TOLERANCE = 0.0025

#: Size knobs: they buy accuracy with fit time (iALS's cost grows with factors squared), so a
#: default's size is a cost choice. The study holds them at the default and chooses the rest;
#: ``tastebud tune`` searches them for a user who can pay. (Searched freely in a first run, iALS
#: chose 243 factors and 30 epochs: some 28 times the default's fit time by the k^2 cost of a
#: row solve, an estimate, not a measurement.)
SIZE = ("factors", "epochs")

#: model -> (task, trials per data set, best trials kept as candidates per data set)
MODELS: dict[str, tuple[str, int, int]] = {
    "bias": ("rating", 20, 3),
    "svd": ("rating", 20, 3),
    "svdpp": ("rating", 12, 2),
    "als": ("rating", 20, 3),
    "bayesmf": ("rating", 3, 2),
    "ials": ("topn", 20, 3),
    "ease": ("topn", 10, 3),
    "bpr": ("topn", 12, 2),
    "rp3beta": ("topn", 20, 3),
    "slim": ("topn", 8, 2),
}
METRIC = {"rating": "rmse", "topn": "ndcg@10"}
DOC = Path(__file__).resolve().parent.parent / "docs" / "defaults.md"


def training_parts(task: str) -> dict[str, Any]:
    """The training part of each data set (test parts are dropped here and never read)."""
    if task == "rating":
        return {
            "ml-100k u1.base": ml100k_folds(DATA / "ml-100k", folds=(1,))[0].train,
            "ml-latest-small 90%": S.kfold(load_ml_latest_small(DATA, features=False), k=10, random_state=0)[0].train,
        }
    return {
        "ml-100k fixed train": fixed_split("ml-100k", DATA).train,
        "ml-latest-small fixed train": fixed_split("ml-latest-small", DATA).train,
    }


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def study(model: str, trials: int | None = None) -> dict[str, Any]:
    """Search each carve, pool the candidates, score each on every carve; the rows and the verdict."""
    task, budget, keep = MODELS[model]
    trials = trials or budget
    metric = METRIC[task]
    maximize = parse_metric(metric).maximize
    cls = get_model(model)
    current = cls().get_params()
    held = {name: current[name] for name in SIZE if name in cls.search_space}
    space = [name for name in cls.search_space if name not in held]
    default = {name: current[name] for name in space}
    parts = training_parts(task)
    scores: dict[str, dict[str, float]] = {name: {} for name in parts}  # set -> candidate key -> value
    candidates: dict[str, dict[str, Any]] = {_key(default): default}
    seconds = {}
    for name, train in parts.items():
        start = time.perf_counter()
        result = tune(model, train, metric=metric, trials=trials, params=held, enqueue=[default], random_state=0)
        seconds[name] = time.perf_counter() - start
        done = result.trials[result.trials["state"] == "COMPLETE"]
        done = done.sort_values("value", ascending=not maximize)
        for _, row in done.iterrows():
            point = {p: _native(cls.search_space[p], row[p]) for p in space}
            scores[name][_key(point)] = float(row["value"])
        for _, row in done.head(keep).iterrows():
            point = {p: _native(cls.search_space[p], row[p]) for p in space}
            candidates.setdefault(_key(point), point)
    for name, train in parts.items():  # every candidate on every carve
        split = validation_split(train, model, metric, random_state=0)
        for key, point in candidates.items():
            if key not in scores[name]:
                params = {**held, **point}
                if "random_state" in cls().get_params():
                    params["random_state"] = 0
                scores[name][key] = _validation_value(cls(**params).fit(split.train), split, metric)
    rows = []
    for key, point in candidates.items():
        rel = []
        for name in parts:
            values = [scores[name][k] for k in candidates]
            best = max(values) if maximize else min(values)
            v = scores[name][key]
            rel.append(v / best if maximize else best / v)
        rows.append({"params": point, "values": [scores[n][key] for n in parts], "relative": statistics.fmean(rel)})
    rows.sort(key=lambda r: -r["relative"])
    default_row = next(r for r in rows if _key(r["params"]) == _key(default))
    winner = rows[0]
    moves = winner["relative"] - default_row["relative"] > TOLERANCE
    return {
        "model": model,
        "task": task,
        "metric": metric,
        "trials": trials,
        "sets": list(parts),
        "held": held,
        "default": default,
        "rows": rows,
        "chosen": winner["params"] if moves else default,
        "moves": moves,
        "seconds": seconds,
        "commit": git("rev-parse", "HEAD")[:12],
    }


def _validation_value(model: Any, split: Any, metric: str) -> float:
    """``metric`` of a fitted model on the carve, read as ``tastebud.tune`` reads a trial."""
    from tastebud.eval.evaluate import evaluate_fitted

    m = parse_metric(metric)
    return float(evaluate_fitted(model, split, k=m.k, metrics=(m.name,) if m.maximize else ())[m.label])


def _native(dist: Any, value: Any) -> Any:
    """A trials-table cell as the parameter's own type (pandas widens ints and None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(dist, Int):
        return int(value)
    if isinstance(dist, Float):
        return float(value)
    if isinstance(value, float) and value != value:  # NaN: a categorical None
        return None
    return value


def _fmt(point: dict[str, Any]) -> str:
    def one(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k} {one(v)}" for k, v in point.items())


def render(results: list[dict[str, Any]]) -> str:
    head = ", ".join(sorted({r.get("commit") or git("rev-parse", "HEAD")[:12] for r in results}))
    lines = [
        "# Where the defaults come from",
        "",
        "The defaults of the models below were chosen by `benchmarks/study_defaults.py` on validation",
        "carves of the training data of two data sets, never on a test split (its docstring has the",
        "procedure). Each table lists the candidates (the default as it was before the study, and the",
        "best trials of a TPE search on each carve), their validation score on each carve, and their mean",
        "score relative to the best candidate on each carve. The default moves only when the winner is",
        f"ahead by more than {TOLERANCE:.2%} in that mean, a rule fixed before the study ran. A chosen",
        "default is written in the code as the table prints it (four significant digits). Size knobs",
        "(`factors`, `epochs`) are held at the default: they buy accuracy with fit time, so they are a",
        "cost choice; a first run that searched them chose 243 factors and 30 epochs for iALS, some",
        "28 times the default's fit time by the k^2 cost of a row solve (an estimate, not measured).",
        "`tastebud tune` searches them for anyone who can pay.",
        "",
        "Rating models use ML-100K's u1.base and 90% of ml-latest-small (random); the u1 test fold is",
        "unseen, but u2..u5's test ratings lie in u1.base, so their figures in the `rating` section are",
        "not fully out of sample. Top-N models use the training parts of the fixed top-N splits.",
        "Models not listed take their defaults from their papers (neural models, VAEs, SASRec) or",
        "from Surprise (the kNN family); `timesvdpp`'s time terms are chosen in docs/timesvdpp.md.",
        "",
    ]
    for r in results:
        sets = r["sets"]
        lines += [
            f"## `{r['model']}` ({r['metric']}, {r['trials']} trials a carve)",
            "",
            *([f"Held at the default (size): {_fmt(r['held'])}.", ""] if r.get("held") else []),
            "| candidate | " + " | ".join(sets) + " | mean relative | |",
            "|---|" + "---|" * len(sets) + "---|---|",
        ]
        for row in r["rows"]:
            mark = []
            if _key(row["params"]) == _key(r["default"]):
                mark.append("default before")
            if _key(row["params"]) == _key(r["chosen"]):
                mark.append("**chosen**")
            vals = " | ".join(f"{v:.4f}" for v in row["values"])
            lines.append(f"| {_fmt(row['params'])} | {vals} | {row['relative']:.4f} | {', '.join(mark)} |")
        verdict = "the default moves" if r["moves"] else "the default stays"
        lines += ["", f"Verdict: {verdict}.", ""]
    missing = [m for m in MODELS if m not in {r["model"] for r in results}]
    if missing:
        names = ", ".join(f"`{m}`" for m in missing)
        lines += [f"Not run in this study: {names} (defaults unchanged, not validated here).", ""]
    lines += [f"_Study run at commit {head} on {machine()}._", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=["rating", "topn"])
    ap.add_argument("--models", default="")
    ap.add_argument("--trials", type=int, default=0, help="override every model's budget (a quick look)")
    ap.add_argument("--results", default="")
    ap.add_argument("--render", nargs="*", default=None, help="JSON-lines files to render into docs/defaults.md")
    args = ap.parse_args()
    if args.render is not None:
        results = [json.loads(line) for path in args.render for line in Path(path).read_text().splitlines() if line]
        order = list(MODELS)
        results.sort(key=lambda r: order.index(r["model"]))
        atomic_write_bytes(DOC, render(results).encode("utf-8"))
        print(f"wrote {DOC}")
        return
    names = args.models.split(",") if args.models else [m for m, spec in MODELS.items() if spec[0] == args.task]
    for model in names:
        start = time.perf_counter()
        result = study(model, args.trials or None)
        print(
            f"{model}: chosen {_fmt(result['chosen'])} (moves: {result['moves']}) in {time.perf_counter() - start:.0f}s",
            flush=True,
        )
        if args.results:
            with open(args.results, "a") as fh:
                fh.write(json.dumps(result, default=str) + "\n")
                fh.flush()
                os.fsync(fh.fileno())


if __name__ == "__main__":
    main()
