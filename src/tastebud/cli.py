"""The `tastebud` command line: data, train, evaluate, recommend, demo (and serve/lab when present)."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from tastebud import __version__
from tastebud.core.errors import TastebudError
from tastebud.core.progress import enabled, progress_enabled
from tastebud.data.sources import DATASETS

try:  # typer >= 0.22 carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on click
    from click.exceptions import ClickException

console = Console()
err_console = Console(stderr=True)


class Group(TyperGroup):
    """The command groups: usage errors in one line, and flags without a type tag in the help.

    Typer's rich help prints every option's Python type, so a flag reads ``--json <bool>`` as if
    it took a value, and it draws a usage error (``--k -3``) as a five-line box.
    """

    def get_params(self, ctx: Any) -> list[Any]:
        return _untag_flags(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _untag_flags(command.get_params(ctx))
        return command

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
                ctx = getattr(exc, "ctx", None)
                where = f"{ctx.command_path}: " if ctx is not None else ""
                message = " ".join(exc.format_message().split())
                err_console.print(f"[bold red]error:[/] {escape(where + message)}", highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            err_console.print("aborted", highlight=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _untag_flags(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # the help shows no type for it
    return params


app = typer.Typer(
    cls=Group,
    help="tastebud: recommender systems from sparse, partial data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(cls=Group, help="Inspect, fetch and generate data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _print_version(value: bool) -> None:
    if value:
        console.print(f"tastebud {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars on stderr (results still print)."),
) -> None:
    """tastebud: recommender systems from sparse, partial data.

    Long work (fits, evaluation, tuning) shows progress on stderr unless --quiet."""
    ctx.with_resource(enabled(not quiet))


def fail(message: str, code: int = 2) -> None:
    """One clear line on stderr and a non-zero exit: never a traceback for bad input."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn tastebud's own errors (bad input, unknown ids, bad files) into one line and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (TastebudError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            fail(str(exc))

    return wrapper


def progress_note(message: str) -> None:
    """One line on stderr before long work (the model's progress bars follow); silent with --quiet."""
    if progress_enabled():
        err_console.print(message, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------- data sources
def load_data(dataset: str | None, data: Path | None, path: Path | None, **columns: Any):  # type: ignore[no-untyped-def]
    """:func:`tastebud.data.sources.load_data` with the CLI's notes; bad input is one line and exit 2."""
    from tastebud.data import sources

    try:
        return sources.load_data(dataset, data, path, notify=note, **columns)
    except TastebudError as exc:
        fail(str(exc))


def note(message: str) -> None:
    """A remark about how the input was read, on stderr so that --json output stays clean."""
    err_console.print(f"[dim]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``--param factors=64 --param similarity=cosine``: values are JSON when they parse, else text.

    ``--param @best.json`` reads a JSON object of parameters (as ``tastebud tune`` writes it); later
    pairs override it."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if pair.startswith("@"):
            from tastebud.tune import load_params

            out.update(load_params(pair[1:]))
            continue
        if "=" not in pair:
            fail(f"--param expects key=value, got '{pair}'")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


DATASET_HELP = f"Named data set: {', '.join(DATASETS)}."


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """Where a command's interactions come from: ``--dataset``, ``--data``, ``--path`` and the column
    names of ``--data``. ``train``, ``tune``, ``evaluate`` and ``data info`` share them, declared once
    (:func:`data_options`)."""

    dataset: str | None = None
    data: Path | None = None
    path: Path | None = None
    user_col: str = "user"
    item_col: str = "item"
    rating_col: str | None = None
    time_col: str | None = None

    @property
    def columns(self) -> dict[str, str | None]:
        """The column names as the data readers take them: user, item, rating, time."""
        return {"user": self.user_col, "item": self.item_col, "rating": self.rating_col, "time": self.time_col}

    def load(self):  # type: ignore[no-untyped-def]
        """The interactions they name (:func:`load_data`: bad input is one line and exit 2)."""
        return load_data(self.dataset, self.data, self.path, **self.columns)


def _data_parameters(dataset_help: str) -> list[inspect.Parameter]:
    """The command-line options behind :class:`DataOptions`, one per field, in its order."""
    options = {
        "dataset": (str | None, typer.Option(None, "--dataset", "-d", help=dataset_help)),
        "data": (Path | None, typer.Option(None, "--data", help="Interactions file (CSV/TSV, Parquet, JSON-lines).")),
        "path": (
            Path | None,
            typer.Option(None, "--path", help="Folder holding MovieLens folders (default $TASTEBUD_DATA)."),
        ),
        "user_col": (str, typer.Option("user", "--user-col", help="User id column of --data.")),
        "item_col": (str, typer.Option("item", "--item-col", help="Item id column of --data.")),
        "rating_col": (
            str | None,
            typer.Option(
                None,
                "--rating-col",
                help="Rating column of --data (default: a 'rating' or 'score' column; 'none': implicit).",
            ),
        ),
        "time_col": (str | None, typer.Option(None, "--time-col", help="Timestamp column of --data.")),
    }
    return [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=kind)
        for name, (kind, option) in options.items()
    ]


def data_options(dataset_help: str = DATASET_HELP) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the shared data options in place of its ``source: DataOptions`` parameter.

    Typer reads a command's options from its signature and has no option groups, so the command's
    signature shows the options of :class:`DataOptions` where ``source`` stood, and the command is
    called with them gathered into one ``DataOptions``. ``dataset_help``: the command's own words
    for ``--dataset`` (``tune`` and ``evaluate`` also take fixed splits)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        shared = _data_parameters(dataset_help)
        params = [q for p in signature.parameters.values() for q in (shared if p.name == "source" else [p])]

        @functools.wraps(command)
        def with_source(*args: Any, **kwargs: Any) -> Any:
            source = DataOptions(**{p.name: kwargs.pop(p.name) for p in shared if p.name in kwargs})
            return command(*args, source=source, **kwargs)

        with_source.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        with_source.__annotations__ = {p.name: p.annotation for p in params}
        return with_source

    return decorate


# ---------------------------------------------------------------------------- data commands
@data_app.command("info")
@friendly
@data_options()
def data_info(source: DataOptions) -> None:
    """Counts, density, rating scale and features of a data set."""
    inter = source.load()
    table = Table(title=str(source.data or source.dataset or "synthetic"), show_header=False)
    for key, value in inter.info().items():
        table.add_row(key, str(value))
    console.print(table)


@data_app.command("synth")
@friendly
def data_synth(
    out: Path = typer.Option(..., "--out", "-o", help="Output file (.csv or .parquet)."),
    users: int = typer.Option(1000, min=1),
    items: int = typer.Option(500, min=1),
    interactions: int = typer.Option(50_000, min=1),
    implicit: bool = typer.Option(False, help="Implicit feedback (value 1) instead of ratings."),
    seed: int = typer.Option(0),
) -> None:
    """Generate the synthetic data set and write it, its item features beside it (<name>.items.parquet)."""
    import io

    from tastebud.core.persist import atomic_write_bytes
    from tastebud.data.io import item_features_path
    from tastebud.data.synthetic import generate

    inter = generate(
        n_users=users, n_items=items, n_interactions=interactions, explicit=not implicit, random_state=seed
    )
    frame = inter.to_frame().rename(columns={"value": "rating" if inter.explicit else "value"})
    if out.suffix == ".parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        atomic_write_bytes(out, buffer.getvalue())
    else:
        atomic_write_bytes(out, frame.to_csv(index=False).encode("utf-8"))
    console.print(f"wrote {len(frame):,} interactions to {out}")
    if inter.item_features is not None:  # Parquet, so genres and people stay lists
        target = item_features_path(out)
        buffer = io.BytesIO()
        inter.item_features.reset_index().to_parquet(buffer, index=False)
        atomic_write_bytes(target, buffer.getvalue())
        console.print(f"wrote the features of {len(inter.item_features):,} items to {target}")


@data_app.command("fetch")
@friendly
def data_fetch(
    name: str = typer.Argument(..., help="ml-100k, ml-1m, ml-20m, ml-25m or ml-latest-small"),
    cache: Path = typer.Option(Path.home() / ".cache" / "tastebud", "--cache", help="Download folder."),
) -> None:
    """Download a MovieLens archive from GroupLens (SHA-256 verified) into the cache."""
    from tastebud.data import movielens

    if not hasattr(movielens, "fetch"):
        fail("this installation cannot download data sets")
    folder = movielens.fetch(name, cache)
    console.print(f"{name} is in {folder}; use --path {Path(folder).parent}")


# ---------------------------------------------------------------------------- models
@app.command("models")
def models_cmd() -> None:
    """List the registered models: name, what it does, and the page that explains it."""
    import tastebud as tb

    table = Table("model", "what", "docs", box=None, show_edge=False, pad_edge=False)
    for name in tb.list_models():
        try:
            cls = tb.get_model(name)
        except TastebudError:  # an optional extra is missing
            table.add_row(name, "[dim]not installed: needs an optional extra (see README)[/]", "")
            continue
        table.add_row(name, escape(_summary_line(cls.__doc__)), cls.docs_path())
    console.print(table)


def _summary_line(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = " ".join((doc or "").strip().split("\n\n")[0].split())
    return re.split(r"(?<=\.)\s+(?=[A-Z])", paragraph, maxsplit=1)[0]


@app.command()
@friendly
@data_options()
def train(
    model: str = typer.Argument(..., help="Registry name, e.g. itemknn, ials, svd."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to save the fitted model to."),
    source: DataOptions = DataOptions(),
    param: list[str] = typer.Option([], "--param", "-p", help="Hyper-parameter key=value (repeatable)."),
    engine: str = typer.Option("local", "--engine", help="local, or ray (see docs/scaling.md)."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address; default starts Ray locally."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Ray workers (default 2)."),
) -> None:
    """Fit a model on a data set and save it."""
    import tastebud as tb
    from tastebud.scale.commands import check_supported, engine_for, engine_params, sharded_source

    cls = tb.get_model(model)
    options = engine_params(engine, address, workers)
    check_supported(model, options)
    try:
        estimator = cls(**parse_params(param))
    except TypeError as exc:
        fail(f"{model}: {exc}")
    fit_engine = engine_for(options)
    shards = sharded_source(model, options, source.data, **source.columns)
    if shards is not None:  # a Parquet directory on Ray: each worker reads its own share
        progress_note(f"fitting {model} on Ray from {source.data}")
        fit_engine.fit_parquet(estimator, shards)
    else:
        inter = source.load()
        progress_note(f"fitting {model} on {inter}" + ("" if fit_engine is None else " on Ray"))
        estimator.fit(inter, engine=fit_engine)
    estimator.save(out)
    if shards is None:
        save_titles(out, inter)
    console.print(f"fitted {model} in {estimator.fit_seconds_:.2f}s; saved to {out}")


# The item titles of the training data, beside the model's own files: `recommend` shows them.
TITLES_FILE = "titles.json"


def save_titles(model_dir: Path, inter: Any) -> None:
    """Keep an id -> title table (JSON pairs, so integer ids stay integers) when the data has titles."""
    from tastebud.core.persist import atomic_write_bytes

    feats = inter.item_features
    if feats is None or "title" not in feats.columns:
        return
    titles = feats["title"].reindex(inter.items.ids)
    pairs = [
        [i, str(t)] for i, t in zip(inter.items.ids.tolist(), titles.tolist(), strict=True) if isinstance(t, str) and t
    ]
    atomic_write_bytes(model_dir / TITLES_FILE, json.dumps(pairs, ensure_ascii=False).encode("utf-8"))


def load_titles(model_dir: Path) -> dict[Any, str]:
    path = model_dir / TITLES_FILE
    if not path.is_file():
        return {}
    try:
        pairs = json.loads(path.read_text(encoding="utf-8"))
        return {item: str(title) for item, title in pairs}
    except (ValueError, TypeError) as exc:
        fail(f"{path}: not a title table ({exc}); delete it to recommend without titles")
    return {}


@app.command("tune")
@friendly
@data_options(f"Named data set: {', '.join(DATASETS)}, or ml-100k-fixed / ml-latest-small-fixed (their train part).")
def tune_cmd(
    model: str = typer.Argument(..., help="Registry name, e.g. ials, itemknn, svd."),
    out: Path = typer.Option(
        Path("best.json"),
        "--out",
        "-o",
        help="Best parameters (JSON); NAME.trials.csv and NAME.history.png go beside it.",
    ),
    source: DataOptions = DataOptions(),
    metric: str = typer.Option(
        "ndcg@10", "--metric", help="ndcg@10, recall@20, precision@k, map@k, mrr@k, hit_rate@k, rmse, mae."
    ),
    trials: int | None = typer.Option(None, "--trials", min=1, help="Trial budget (default 20 when no --timeout)."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.001, help="Time budget in seconds (a running trial finishes)."
    ),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="Fixed hyper-parameter key=value or @file.json (repeatable)."
    ),
    validation: float = typer.Option(0.2, "--validation", help="Share of the training data held out to validate on."),
    random_state: int = typer.Option(0, "--random-state", min=0, help="Seeds the sampler, the carve and the model."),
    members: str | None = typer.Option(
        None,
        "--members",
        help="hybrid only: candidate models (comma-separated); their subset, fusion and weights are chosen.",
    ),
    member_params: list[str] = typer.Option(
        [],
        "--member-params",
        help="A candidate's parameters: NAME=@file.json, or @folder holding NAME.json files (repeatable).",
    ),
    max_members: int = typer.Option(3, "--max-members", min=1, help="With --members: the most models blended."),
    pool: int = typer.Option(200, "--pool", min=1, help="With --members: items per candidate ranked per user."),
) -> None:
    """Search a model's hyper-parameters on a validation split carved from the training data only.

    `tastebud tune hybrid --members ials,ease,itemknn` chooses the blend instead: which members,
    score or rank fusion, and weights. A bar shows on stderr unless `tastebud --quiet tune ...`."""
    import tastebud as tb
    from tastebud.models.hybrid import Hybrid
    from tastebud.tune import parse_metric, tune

    cls = tb.get_model(model)  # unknown models and metrics fail before any data is read
    parse_metric(metric)
    fixed = parse_params(param)
    candidates = None
    if members is not None or member_params:
        if not issubclass(cls, Hybrid):
            fail(f"--members chooses a hybrid's members; run `tastebud tune hybrid --members ...`, not {model}")
        if members is None:
            fail("--member-params needs --members NAME,NAME,...")
        if fixed or trials is not None or timeout is not None:
            fail("--members searches a fixed grid of fusions: drop --param, --trials and --timeout")
        candidates = _candidate_params([n.strip() for n in members.split(",") if n.strip()], member_params)
    if source.dataset is not None and source.dataset.endswith("-fixed") and source.data is None:
        from tastebud.data import movielens

        # the test part stays unread
        inter = movielens.fixed_split(source.dataset.removesuffix("-fixed"), source.path).train
    else:
        inter = source.load()
    if candidates is not None:
        _choose_fusion(inter, candidates, metric, max_members, pool, validation, random_state, out)
        return
    budget = trials if trials is not None or timeout is not None else 20
    result = tune(
        model,
        inter,
        metric=metric,
        trials=budget,
        timeout=timeout,
        params=fixed,
        fraction=validation,
        random_state=random_state,
    )
    paths = result.save(out)
    states = result.trials["state"].value_counts().to_dict()
    summary = ", ".join(f"{n} {s.lower()}" for s, n in states.items())
    console.print(f"best validation {result.metric} = {result.value:.4f} over {len(result.trials)} trials ({summary})")
    console.print(json.dumps(result.params, sort_keys=True, default=str), highlight=False, soft_wrap=True)
    console.print(f"wrote {paths['json']}, {paths['csv']}, {paths['png']}", soft_wrap=True)
    console.print(f"use it: tastebud train {model} -p @{paths['json']} ...", highlight=False)


def _candidate_params(names: list[str], specs: list[str]) -> dict[str, dict[str, Any]]:
    """``--member-params``: ``NAME=@file.json`` for one candidate, ``@folder`` for every NAME.json in it."""
    from tastebud.tune import load_params

    out: dict[str, dict[str, Any]] = {name: {} for name in names}
    if len(out) != len(names):
        fail(f"--members names a model twice: {','.join(names)}")
    for spec in specs:
        if spec.startswith("@") and Path(spec[1:]).is_dir():
            for name in names:
                if (Path(spec[1:]) / f"{name}.json").is_file():
                    out[name] = load_params(Path(spec[1:]) / f"{name}.json")
            continue
        name, eq, file = spec.partition("=")
        if not eq or not file.startswith("@"):
            fail(f"--member-params expects NAME=@file.json or @folder, got '{spec}'")
        if name.strip() not in out:
            fail(f"--member-params names '{name.strip()}', which is not in --members ({','.join(names)})")
        out[name.strip()] = load_params(file[1:])
    return out


def _choose_fusion(
    inter: Any,
    candidates: dict[str, dict[str, Any]],
    metric: str,
    max_members: int,
    pool: int,
    validation: float,
    random_state: int,
    out: Path,
) -> None:
    from tastebud.tune import choose_fusion

    result = choose_fusion(
        inter,
        candidates,
        metric=metric,
        max_members=max_members,
        pool=pool,
        fraction=validation,
        random_state=random_state,
    )
    paths = result.save(out)
    chosen = result.params
    how = "alone" if result.single else f"{chosen['method']} fusion, weights {chosen['weights']}"
    console.print(
        f"best validation {result.metric} = {result.value:.4f} over {len(result.trials)} configurations: "
        f"{'+'.join(chosen['models'])} ({how})",
        highlight=False,
        soft_wrap=True,
    )
    alone = ", ".join(f"{name} {value:.4f}" for name, value in result.member_values.items())
    console.print(f"each member alone: {alone}", highlight=False, soft_wrap=True)
    if result.single:
        console.print(f"a single model won: no blend of these members beats {chosen['models'][0]} on validation")
    console.print(f"wrote {paths['json']}, {paths['csv']}", soft_wrap=True)
    console.print(f"use it: tastebud train hybrid -p @{paths['json']} ...", highlight=False)


@app.command()
@friendly
def recommend(
    model_dir: Path = typer.Option(..., "--model", "-m", help="Saved model folder."),
    user: list[str] = typer.Option([], "--user", "-u", help="User id (repeatable)."),
    history: str | None = typer.Option(None, "--history", help="Comma-separated item ids of a new person."),
    k: int = typer.Option(10, "--k", min=1, max=1000),
    explain: bool = typer.Option(False, help="Say why each item is recommended."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Top-k for known users, or for a new person from a history."""
    import tastebud as tb

    model = tb.load_model(str(model_dir))
    if history is not None:
        recs = model.recommend_for_history([h.strip() for h in history.split(",") if h.strip()], k=k, explain=explain)
    elif user:
        recs = model.recommend(user, k=k, explain=explain, unknown="popular")  # the library's one fallback rule
    else:
        fail("give --user ID (repeatable) or --history ITEM,ITEM,...")
    scale = getattr(model, "rating_scale_", None) if model.predicts_ratings else None
    if scale is not None:  # a predicted rating above the scale means nothing to a reader; the order stays
        recs = dataclasses.replace(recs, scores=[np.clip(row, *scale) for row in recs.scores])
    titles = load_titles(model_dir)
    if as_json:
        records = recs.to_records()
        for entry in (e for r in records for e in r["items"]):
            if entry["item"] in titles:
                entry["title"] = titles[entry["item"]]
        print(json.dumps({"results": records, "warnings": recs.warnings}))
        return
    for warning in recs.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    frame = recs.to_frame()
    if history is not None:  # a new person has no id: a user column would read "None"
        frame = frame.drop(columns="user")
    if titles:
        frame.insert(frame.columns.get_loc("item") + 1, "title", [titles.get(i, "") for i in frame["item"]])
    table = Table(*[str(c) for c in frame.columns])
    for row in frame.itertuples(index=False):
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else escape(str(v)) for v in row])
    console.print(table)


@app.command()
@friendly
@data_options(
    "synthetic (default), ml-100k (u1..u5 folds), ml-100k-fixed, ml-latest-small-fixed, or any named data set."
)
def evaluate(
    models: str = typer.Option("popular,bias", "--models", help="Comma-separated registry names."),
    source: DataOptions = DataOptions(),
    folds: int = typer.Option(
        1, "--folds", min=1, max=50, help="1: a per-user holdout; N: N-fold cross-validation over the events."
    ),
    test_fraction: float = typer.Option(0.2, "--test-fraction", min=0.01, max=0.99, help="Holdout share per user."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the split."),
    k: int = typer.Option(10, "--k", min=1, max=1000),
    out: list[Path] = typer.Option([], "--out", "-o", help="Write every metric (.csv, .json or .md); repeatable."),
    param: list[str] = typer.Option([], "--param", "-p", help="model.key=value for one model's hyper-parameter."),
) -> None:
    """Fit and evaluate models on a protocol; print the comparison (mean and spread over folds)."""
    import tastebud as tb
    from tastebud.eval.evaluate import evaluate as run_eval

    per_model: dict[str, dict[str, Any]] = {}
    for key, value in parse_params(param).items():
        if "." not in key:
            fail(f"--param for evaluate is model.key=value, got '{key}'")
        name, hp = key.split(".", 1)
        per_model.setdefault(name, {})[hp] = value
    estimators = {}
    for name in [m.strip() for m in models.split(",") if m.strip()]:
        try:
            estimators[name] = tb.get_model(name)(**per_model.get(name, {}))
        except TypeError as exc:
            fail(f"{name}: {exc}")
    if source.data is not None:  # with --dataset too: one line and exit 2
        splits, label = own_splits(source.load(), folds, test_fraction, seed), str(source.data)
    else:
        label = source.dataset or "synthetic"
        splits = protocol_splits(label, source.path, folds, test_fraction, seed)
    for split in splits:
        if split.report["test_users"] == 0:
            short = split.report.get("users_train_only")
            why = f" ({short} users have fewer than 5 interactions and stay in training)" if short else ""
            fail(f"split '{split.name}' of {label} has no test users{why}; use more data or --folds 5")
    results = run_eval(estimators, splits, k=k, progress=progress_enabled())
    summary = summarize_folds(results)
    print_summary(
        summary,
        k,
        f"{label}, k={k}, " + (f"mean ± std over {len(splits)} folds" if len(splits) > 1 else splits[0].name),
    )
    for target in out:
        write_results(summary, target)


def own_splits(inter: Any, folds: int, test_fraction: float, seed: int) -> list[Any]:
    """A per-user holdout (``folds`` 1) or k-fold cross-validation over events, seeded."""
    from tastebud.data import splits

    if folds == 1:
        return [splits.holdout(inter, fraction=test_fraction, random_state=seed)]
    return splits.kfold(inter, k=folds, random_state=seed)


def protocol_splits(
    dataset: str, path: Path | None, folds: int = 1, test_fraction: float = 0.2, seed: int = 0
) -> list[Any]:
    from tastebud.data import movielens

    if dataset == "ml-100k" or dataset.endswith("-fixed"):
        if folds != 1:
            fail(
                f"{dataset} has its own fixed split{'s (u1..u5)' if dataset == 'ml-100k' else ''}; --folds is for other data"
            )
        if dataset == "ml-100k":
            return movielens.ml100k_folds(path)
        return [movielens.fixed_split(dataset.removesuffix("-fixed"), path)]
    return own_splits(load_data(dataset, None, path), folds, test_fraction, seed)


# Shown on screen (the rest goes to --out): enough to compare models in 80 columns.
SCREEN_METRICS = ("ndcg", "recall")


def summarize_folds(results: Any) -> Any:
    """One row per model: the mean of every metric over the folds, and its standard deviation
    (``<metric>_std``) when there are several folds."""
    numeric = results.drop(columns=["split"]).groupby("model", sort=False)
    mean = numeric.mean(numeric_only=True)
    if results["split"].nunique() < 2:
        return mean.reset_index()
    std = numeric.std(numeric_only=True).add_suffix("_std")
    columns = [c for col in mean.columns for c in (col, f"{col}_std")]
    return mean.join(std)[columns].reset_index()


def print_summary(summary: Any, k: int, title: str) -> None:
    metrics = [f"{m}@{k}" for m in SCREEN_METRICS] + [c for c in ("rmse",) if c in summary.columns]
    table = Table("model", *metrics, "fit s", title=title)
    for row in summary.to_dict("records"):
        cells = []
        for col in metrics:
            std = row.get(f"{col}_std")
            value = row[col]
            if value != value:  # NaN: the metric does not apply to this model
                cells.append("-")
            else:
                cells.append(f"{value:.4f}" + (f" ±{std:.3f}" if std is not None and std == std else ""))
        table.add_row(escape(str(row["model"])), *cells, f"{row['fit_s']:.2f}")
    console.print(table)


def print_frame(frame: Any, title: str) -> None:
    table = Table(*[str(c) for c in frame.columns], title=title)
    for row in frame.itertuples(index=False):
        table.add_row(
            *[(f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}") if isinstance(v, float) else str(v) for v in row]
        )
    console.print(table)


def write_results(frame: Any, target: Path) -> None:
    from tastebud.core.persist import atomic_write_bytes

    suffix = target.suffix.lower()
    if suffix == ".csv":
        payload = frame.to_csv(index=False)
    elif suffix == ".json":
        payload = frame.to_json(orient="records", indent=2)
    elif suffix == ".md":
        from tastebud.eval.report import markdown_table

        payload = markdown_table(frame) + "\n"
    else:
        fail(f"{target}: output must end in .csv, .json or .md")
    atomic_write_bytes(target, payload.encode("utf-8"))
    console.print(f"wrote {target}")


@app.command()
@friendly
def demo(
    serve: bool = typer.Option(False, "--serve", help="Then serve the best model and the lab over HTTP."),
    port: int = typer.Option(8000, "--port"),
    quick: bool = typer.Option(False, "--quick", help="A smaller data set (for smoke tests)."),
) -> None:
    """The whole loop on the embedded synthetic data: generate, train, evaluate, recommend."""
    from tastebud.demo import run_demo

    run_demo(console, serve=serve, port=port, quick=quick)


def _plugins() -> None:
    """Commands that live with their subsystem (serve, retrain, lab) register themselves here."""
    for module in ("tastebud.serve.commands", "tastebud.lab.commands"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        mod.register(app)


_plugins()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
