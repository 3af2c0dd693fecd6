"""`tastebud demo`: the main job on the embedded synthetic data, start to finish, by itself."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

import tastebud as tb
from tastebud.core.errors import TastebudError
from tastebud.data.splits import holdout
from tastebud.data.synthetic import generate
from tastebud.eval.evaluate import evaluate_fitted


def run_demo(console: Console, serve: bool = False, port: int = 8000, quick: bool = False) -> dict[str, Any]:
    """Generate data, train every available model, evaluate, show recommendations with titles."""
    size = (
        dict(n_users=300, n_items=200, n_interactions=12_000)
        if quick
        else dict(n_users=3000, n_items=1500, n_interactions=150_000)
    )
    t0 = time.perf_counter()
    data = generate(**size, random_state=0)
    console.print(f"[bold]1. data[/]  synthetic: {data} in {time.perf_counter() - t0:.1f}s")
    split = holdout(data, fraction=0.2, random_state=0)
    console.print(f"[bold]2. split[/] per-user 80/20 holdout: {split.report}")

    console.print("[bold]3. train and evaluate[/] (NDCG/recall over the full ranking, training items excluded)")
    rows, fitted = [], {}
    # the line-up: every registered model that declares ``demo_params`` (hyper-parameters sized for
    # a run of a minute or two on 2 cores), in registry order; a missing optional extra is a note
    for name in tb.list_models():
        try:
            cls = tb.get_model(name)
        except tb.UnknownModelError as exc:
            console.print(f"   skipped {name}: {exc}")
            continue
        if cls.demo_params is None:
            continue
        all_params = dict(cls.demo_params)
        if quick:
            all_params.update(cls.fast_params)
        model = cls(**all_params)
        if "progress" in model.get_params():
            model.set_params(progress=False)
        start = time.perf_counter()
        try:
            model.fit(split.train)
        except TastebudError as exc:
            console.print(f"   skipped {name}: {exc}")
            continue
        fit_s = time.perf_counter() - start
        scores = evaluate_fitted(model, split, k=10)
        rows.append({"model": name, "fit_s": fit_s, **scores})
        fitted[name] = model
        console.print(f"   {name:<10} fit {fit_s:6.2f}s  NDCG@10 {scores['ndcg@10']:.4f}")

    table = Table(title="Synthetic data, per-user 80/20 holdout, k=10 (best first)")
    for col in ("model", "NDCG@10", "Recall@10", "MAP@10", "RMSE", "coverage", "fit s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    rows.sort(key=lambda r: -r["ndcg@10"])
    for r in rows:
        rmse = f"{r['rmse']:.4f}" if "rmse" in r else "-"
        table.add_row(
            r["model"],
            f"{r['ndcg@10']:.4f}",
            f"{r['recall@10']:.4f}",
            f"{r['map@10']:.4f}",
            rmse,
            f"{r['coverage']:.3f}",
            f"{r['fit_s']:.2f}",
        )
    console.print(table)

    best = rows[0]["model"]
    model = fitted[best]
    titles = data.item_features["title"] if data.item_features is not None else None
    console.print(f"[bold]4. recommendations[/] from the best model, [cyan]{best}[/]")
    train_m = split.train.matrix
    for uidx in (0, 1, 2):
        user = data.users.ids[uidx]
        row = train_m[uidx]
        liked = row.indices[np.argsort(-row.data, kind="stable")][:3]
        liked_titles = [_title(titles, data.items.ids[i]) for i in liked]
        recs = model.recommend([user], k=5)
        console.print(f"   user [bold]{user}[/] liked: {'; '.join(liked_titles)}")
        for rank, (item, score) in enumerate(zip(recs.items_of(0), recs.scores_of(0), strict=True), start=1):
            console.print(f"      {rank}. {_title(titles, item)}  [dim]({score:.3f})[/]")
    console.print(f"[green]done[/] in {time.perf_counter() - t0:.1f}s")
    if serve:
        _serve(console, {name: fitted[name] for name in (best, "popular") if name in fitted}, data, port)
    return {"rows": rows, "best": best}


def _title(titles: Any, item: Any) -> str:
    if titles is None:
        return str(item)
    try:
        return str(titles.loc[item])
    except KeyError:
        return str(item)


def _serve(console: Console, models: dict[str, tb.Recommender], data: tb.Interactions, port: int) -> None:
    """Publish the fitted models as version 1 of a registry and serve it with the lab until Ctrl-C."""
    import tempfile

    try:
        import uvicorn

        from tastebud.serve.app import create_app
        from tastebud.serve.retrain import publish_version
    except ImportError:
        console.print("[yellow]serving needs the serve extra: pip install tastebud[serve][/]")
        return
    registry = Path(tempfile.mkdtemp(prefix="tastebud-demo-"))
    version = publish_version(registry, models, data)
    app = create_app(registry)
    console.print(
        f"[bold]5. serving[/] {version} of {registry} on http://127.0.0.1:{port}  "
        f"(API docs /docs, lab /lab/; Ctrl-C stops)"
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
