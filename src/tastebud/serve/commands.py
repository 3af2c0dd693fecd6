"""CLI commands of the serving subsystem: ``tastebud serve`` and ``tastebud retrain``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``retrain`` to the ``tastebud`` command line."""

    @app.command("serve")
    def serve(
        model: Path = typer.Option(
            ..., "--model", "-m", help="Registry folder (serves its CURRENT version) or one saved model folder."
        ),
        port: int = typer.Option(8000, "--port", "-p", min=1, max=65535),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0 exposes the service)."),
        token: str | None = typer.Option(
            None, "--token", envvar="TASTEBUD_TOKEN", help="Bearer token for writes and admin (generated when omitted)."
        ),
        read_token: str | None = typer.Option(
            None, "--read-token", envvar="TASTEBUD_READ_TOKEN", help="Also require a token for reads."
        ),
        events: str | None = typer.Option(
            None, "--events", envvar="TASTEBUD_EVENTS", help="Event store: a SQLite path or postgresql:// URL."
        ),
        max_body: int = typer.Option(1_048_576, "--max-body", min=1024, help="Largest request body in bytes."),
        log_level: str = typer.Option("warning", "--log-level"),
        workers: int = typer.Option(
            1,
            "--workers",
            "-w",
            min=1,
            max=64,
            help="Worker processes (about one core each); they follow reloads together.",
        ),
    ) -> None:
        """Serve recommendations over HTTP (OpenAPI docs at /docs)."""
        import uvicorn

        from tastebud.core.errors import TastebudError
        from tastebud.serve.app import ServeConfig, create_app

        if not model.exists():
            _fail(f"{model}: no such folder")
        logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
        if workers > 1:
            _serve_fleet(model, host, port, workers, token, read_token, events, max_body, log_level)
            return
        config = ServeConfig(token=token, read_token=read_token, events=events, max_body_bytes=max_body)
        try:
            application = create_app(model, config)
        except (TastebudError, OSError) as exc:
            _fail(str(exc))
        _check_port(host, port)
        typer.echo(f"serving {application.state.tb.engine.version} on http://{host}:{port} (docs at /docs)", err=True)
        uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False)

    @app.command("retrain")
    def retrain_cmd(
        registry: Path = typer.Option(
            ..., "--registry", "-r", help="Registry folder; a new version is published in it."
        ),
        models: str | None = typer.Option(
            None, "--models", help="Comma-separated model names (default: the current version's)."
        ),
        dataset: str | None = typer.Option(
            None, "--dataset", "-d", help="Named base data set (default: the current version's)."
        ),
        data: Path | None = typer.Option(None, "--data", help="Base interactions file."),
        path: Path | None = typer.Option(None, "--path", help="Folder holding MovieLens folders."),
        user_col: str = typer.Option("user", "--user-col"),
        item_col: str = typer.Option("item", "--item-col"),
        rating_col: str | None = typer.Option(None, "--rating-col"),
        time_col: str | None = typer.Option(None, "--time-col"),
        events: str | None = typer.Option(
            None, "--events", envvar="TASTEBUD_EVENTS", help="Event store (default: REGISTRY/events.db)."
        ),
        param: list[str] = typer.Option([], "--param", "-p", help="model.key=value hyper-parameter (repeatable)."),
        policy: str | None = typer.Option(None, "--policy", help='Hybrid policy as JSON, e.g. {"short_history": 3}.'),
        no_events: bool = typer.Option(False, "--no-events", help="Train on the base data only."),
    ) -> None:
        """Fit a new version from the base data plus the event store and publish it atomically."""
        from tastebud.core.errors import TastebudError
        from tastebud.serve.events import open_store
        from tastebud.serve.registry import ModelRegistry
        from tastebud.serve.retrain import retrain

        try:
            reg = ModelRegistry(registry)
            previous = reg.spec() if reg.versions() else {}
            base = previous.get("base") or {}
            if dataset is not None or data is not None:
                base = {
                    "dataset": dataset,
                    "data": str(data) if data else None,
                    "path": str(path) if path else None,
                    "columns": {"user": user_col, "item": item_col, "rating": rating_col, "time": time_col},
                }
            if not base:
                _fail("give the base data: --data FILE or --dataset NAME")
            inter = _load_base(base)
            store = None if no_events else open_store(events or str(registry / "events.db"))
            pol = json.loads(policy) if policy else None
            names = [m.strip() for m in models.split(",") if m.strip()] if models else None
            version = retrain(registry, inter, store, names, _params(param), pol, base)
            if store is not None:
                store.close()
        except json.JSONDecodeError as exc:
            _fail(f"--policy is not valid JSON: {exc}")
        except (TastebudError, OSError) as exc:
            _fail(str(exc))
        typer.echo(f"published {version} in {registry}; POST /admin/reload to serve it")


def _serve_fleet(
    model: Path,
    host: str,
    port: int,
    workers: int,
    token: str | None,
    read_token: str | None,
    events: str | None,
    max_body: int,
    log_level: str,
) -> None:
    """``workers`` uvicorn processes on one socket, pinned to one version through a control file."""
    import gc
    import os
    import secrets
    import shutil
    import tempfile

    from tastebud.core.errors import TastebudError
    from tastebud.serve.engine import Engine
    from tastebud.serve.fleet import FleetControl, run_fleet
    from tastebud.serve.registry import is_model_folder

    try:  # fail here, once, with one line, rather than in every worker
        engine = Engine.load(model)
    except (TastebudError, OSError) as exc:
        _fail(str(exc))
    version = engine.version
    del engine
    gc.collect()
    _check_port(host, port)
    control_dir = Path(tempfile.mkdtemp(prefix="tastebud-fleet-"))
    control = control_dir / "control.json"
    FleetControl(control).write(None if is_model_folder(model) else version, 0)
    if token is None:
        token = secrets.token_urlsafe(24)
        typer.echo(f"no write token configured (TASTEBUD_TOKEN); generated one for this run: {token}", err=True)
    env = {
        "TASTEBUD_SERVE_SOURCE": str(model),
        "TASTEBUD_SERVE_CONTROL": str(control),
        "TASTEBUD_TOKEN": token,
        "TASTEBUD_READ_TOKEN": read_token or "",
        "TASTEBUD_EVENTS": events or "",
        "TASTEBUD_MAX_BODY": str(max_body),
    }
    os.environ.update(env)  # the spawned workers inherit them
    typer.echo(f"serving {version} on http://{host}:{port} with {workers} workers (docs at /docs)", err=True)
    options = {"host": host, "port": port, "log_level": log_level, "access_log": False}
    try:
        run_fleet(options, workers, control_dir / "connections")
    except RuntimeError as exc:
        _fail(str(exc))
    finally:
        shutil.rmtree(control_dir, ignore_errors=True)


def _check_port(host: str, port: int) -> None:
    """Fail in one line, before announcing anything, when ``host:port`` cannot be listened on.

    Binds the way uvicorn will (``SO_REUSEADDR``, so a port in TIME_WAIT counts as free) and
    lets go at once; uvicorn would otherwise log the announcement, then ``[Errno 98]``, then exit 3.
    """
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        _fail(f"--host {host}: cannot resolve it ({exc.strerror})")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                _fail(f"port {port} on {host} is already in use; stop what listens there or pass --port")
            _fail(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port or --host")


def _load_base(base: dict[str, Any]) -> Any:
    from tastebud.data.sources import load_data

    cols = base.get("columns") or {}
    return load_data(
        base.get("dataset"),
        Path(base["data"]) if base.get("data") else None,
        Path(base["path"]) if base.get("path") else None,
        user=cols.get("user", "user"),
        item=cols.get("item", "item"),
        rating=cols.get("rating"),
        time=cols.get("time"),
    )


def _params(pairs: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        if "=" not in pair or "." not in pair.split("=", 1)[0]:
            _fail(f"--param is model.key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        name, hp = key.split(".", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(name.strip(), {})[hp.strip()] = value
    return out


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
