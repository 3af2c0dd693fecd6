"""The `tastebud` command line: data, train, evaluate, recommend, demo (and serve/lab when present)."""

from __future__ import annotations

import functools
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from tastebud.core.errors import TastebudError

app = typer.Typer(
    help="tastebud: recommender systems from sparse, partial data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect, fetch and generate data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

DATASETS = ("synthetic", "seed", "ml-100k", "ml-latest-small", "ml-1m", "ml-20m", "ml-25m")


def fail(message: str, code: int = 2) -> None:
    """One clear line on stderr and a non-zero exit: never a traceback for bad input."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
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


# ---------------------------------------------------------------------------- data sources
def load_data(dataset: str | None, data: Path | None, path: Path | None, **columns: Any):  # type: ignore[no-untyped-def]
    """Interactions from ``--data FILE`` or ``--dataset NAME`` (MovieLens from ``--path``/$TASTEBUD_DATA)."""
    from tastebud.data import movielens
    from tastebud.data.interactions import Interactions

    if data is not None:
        cols = {k: v for k, v in columns.items() if v is not None}
        return Interactions.from_file(data, **cols)
    name = dataset or "synthetic"
    if name == "synthetic":
        from tastebud.data.synthetic import generate

        return generate(n_users=2000, n_items=1000, n_interactions=100_000, random_state=0)
    if name == "seed":
        from tastebud.data.synthetic import seed_example

        return seed_example()
    loaders = {
        "ml-100k": "load_ml100k",
        "ml-latest-small": "load_ml_latest_small",
        "ml-1m": "load_ml1m",
        "ml-20m": "load_ml20m",
        "ml-25m": "load_ml25m",
    }
    if name not in loaders or not hasattr(movielens, loaders[name]):
        fail(f"unknown data set '{name}'; choose from {', '.join(DATASETS)} or pass --data FILE")
    return getattr(movielens, loaders[name])(path)


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``--param factors=64 --param similarity=cosine``: values are JSON when they parse, else text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            fail(f"--param expects key=value, got '{pair}'")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


DataOpt = typer.Option(None, "--dataset", "-d", help=f"Named data set: {', '.join(DATASETS)}.")
FileOpt = typer.Option(None, "--data", help="Interactions file (CSV/TSV, Parquet, JSON-lines).")
PathOpt = typer.Option(None, "--path", help="Folder holding MovieLens folders (default $TASTEBUD_DATA).")
UserCol = typer.Option("user", "--user-col", help="User id column of --data.")
ItemCol = typer.Option("item", "--item-col", help="Item id column of --data.")
RatingCol = typer.Option(None, "--rating-col", help="Rating column of --data (omit for implicit data).")
TimeCol = typer.Option(None, "--time-col", help="Timestamp column of --data.")


# ---------------------------------------------------------------------------- data commands
@data_app.command("info")
@friendly
def data_info(
    dataset: str | None = DataOpt,
    data: Path | None = FileOpt,
    path: Path | None = PathOpt,
    user_col: str = UserCol,
    item_col: str = ItemCol,
    rating_col: str | None = RatingCol,
    time_col: str | None = TimeCol,
) -> None:
    """Counts, density, rating scale and features of a data set."""
    inter = load_data(dataset, data, path, user=user_col, item=item_col, rating=rating_col, time=time_col)
    table = Table(title=str(data or dataset or "synthetic"), show_header=False)
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
    """Generate the synthetic data set and write it (item features beside it)."""
    from tastebud.data.synthetic import generate

    inter = generate(n_users=users, n_items=items, n_interactions=interactions, explicit=not implicit, random_state=seed)
    frame = inter.to_frame().rename(columns={"value": "rating" if inter.explicit else "value"})
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    console.print(f"wrote {len(frame):,} interactions to {out}")


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
    """List the registered model names."""
    import tastebud as tb

    for name in tb.list_models():
        console.print(name)


@app.command()
@friendly
def train(
    model: str = typer.Argument(..., help="Registry name, e.g. itemknn, ials, svd."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to save the fitted model to."),
    dataset: str | None = DataOpt,
    data: Path | None = FileOpt,
    path: Path | None = PathOpt,
    param: list[str] = typer.Option([], "--param", "-p", help="Hyper-parameter key=value (repeatable)."),
    user_col: str = UserCol,
    item_col: str = ItemCol,
    rating_col: str | None = RatingCol,
    time_col: str | None = TimeCol,
    engine: str = typer.Option("local", "--engine", help="local, or ray (see docs/scaling.md)."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address; default starts Ray locally."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Ray workers (default 2)."),
) -> None:
    """Fit a model on a data set and save it."""
    import tastebud as tb
    from tastebud.dist.commands import check_supported, engine_params

    cls = tb.get_model(model)
    extra = engine_params(engine, address, workers)
    check_supported(model, extra)
    try:
        estimator = cls(**{**parse_params(param), **extra})
    except TypeError as exc:
        fail(f"{model}: {exc}")
    from tastebud.dist.commands import sharded_source

    source = sharded_source(model, extra, data, user=user_col, item=item_col, rating=rating_col, time=time_col)
    if source is not None:  # a Parquet directory on Ray: each worker reads its own share
        from tastebud.dist.sharded import fit_parquet

        with console.status(f"fitting {model} on Ray from {data}"):
            fit_parquet(estimator, source)
    else:
        inter = load_data(dataset, data, path, user=user_col, item=item_col, rating=rating_col, time=time_col)
        with console.status(f"fitting {model} on {inter}"):
            estimator.fit(inter)
    estimator.save(out)
    console.print(f"fitted {model} in {estimator.fit_seconds_:.2f}s; saved to {out}")


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
    if as_json:
        print(json.dumps({"results": recs.to_records(), "warnings": recs.warnings}))
        return
    for warning in recs.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}")
    frame = recs.to_frame()
    table = Table(*[str(c) for c in frame.columns])
    for row in frame.itertuples(index=False):
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)


@app.command()
@friendly
def evaluate(
    models: str = typer.Option("popular,bias", "--models", help="Comma-separated registry names."),
    dataset: str = typer.Option("synthetic", "--dataset", "-d", help="synthetic, ml-100k (u1..u5 folds), ml-100k-fixed, ml-latest-small-fixed, or any data set (random 80/20 holdout)."),
    path: Path | None = PathOpt,
    k: int = typer.Option(10, "--k", min=1, max=1000),
    out: list[Path] = typer.Option([], "--out", "-o", help="Write results (.csv, .json or .md); repeatable."),
    param: list[str] = typer.Option([], "--param", "-p", help="model.key=value for one model's hyper-parameter."),
) -> None:
    """Fit and evaluate models on a protocol; print the comparison table."""
    import tastebud as tb
    from tastebud.eval.evaluate import evaluate as run_eval
    from tastebud.eval.evaluate import summarize

    splits = protocol_splits(dataset, path)
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
    results = run_eval(estimators, splits, k=k, progress=True)
    table_frame = summarize(results)
    print_frame(table_frame, f"{dataset}, k={k}")
    for target in out:
        write_results(table_frame, target)


def protocol_splits(dataset: str, path: Path | None) -> list[Any]:
    from tastebud.data import movielens, splits

    if dataset == "ml-100k":
        return movielens.ml100k_folds(path)
    if dataset.endswith("-fixed"):
        return [movielens.fixed_split(dataset.removesuffix("-fixed"), path)]
    inter = load_data(dataset, None, path)
    return [splits.holdout(inter, fraction=0.2, random_state=0)]


def print_frame(frame: Any, title: str) -> None:
    table = Table(*[str(c) for c in frame.columns], title=title)
    for row in frame.itertuples(index=False):
        table.add_row(*[(f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}") if isinstance(v, float) else str(v) for v in row])
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
