"""The HTTP service: the FastAPI app factory.

``create_app(source)`` serves a registry folder (its current version) or a single saved model.
Read endpoints answer recommendations, similar items and predictions; ``POST /events`` records
interactions durably; ``POST /admin/reload`` swaps in the registry's current version while
requests keep being answered (the new version is loaded beside the old one, then one reference
is swapped; a request in flight finishes on the version it started with).

The parts, one job each: settings in ``config.py``, request bodies in ``schemas.py``, the served
version and its reloads in ``lifecycle.py``, the endpoints and error responses in ``routes.py``,
the middleware and its fast path in ``fastpath.py``.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute

from tastebud import __version__
from tastebud.core.errors import ConfigError, NotSupportedError
from tastebud.serve.config import ServeConfig
from tastebud.serve.docs import add_offline_docs
from tastebud.serve.fastpath import FastPath, Guard
from tastebud.serve.lifecycle import State, limit_threads, settle
from tastebud.serve.routes import Routes, add_error_handlers

log = logging.getLogger("tastebud.serve")


def create_app(source: str | Path, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``source`` (a registry folder or one saved model folder)."""
    config = config or ServeConfig.from_env()
    if config.token is None:
        config.token = secrets.token_urlsafe(24)
        log.warning("no write token configured (TASTEBUD_TOKEN); generated one for this run: %s", config.token)
    limit_threads(config.omp_threads)
    state = State(Path(source), config)
    settle()

    app = FastAPI(
        lifespan=state.lifespan,
        title="tastebud",
        version=__version__,
        description="Recommendations for known and new people, similar items, rating predictions and live events.",
        docs_url=None,  # served from local files below: FastAPI's pages load their scripts from a CDN
        redoc_url=None,
    )
    add_offline_docs(app)
    app.state.tb = state
    add_error_handlers(app)
    routes = Routes(state)
    routes.add_to(app)

    # the lab page is served by the same app, at /lab/ (its state is created on first use)
    from tastebud.lab.routes import router as lab_router

    app.include_router(lab_router)
    fast = None
    if not config.read_token and not state.store.remote:  # a token check or a database stays with FastAPI
        by_path = {r.path: r for r in app.routes if isinstance(r, APIRoute)}
        fast = FastPath(
            by_path["/users/{user_id}/recommendations"],
            by_path["/recommendations"],
            routes.answer_user,
            routes.answer_history,
        )
    app.add_middleware(Guard, metrics=state.metrics, max_body=config.max_body_bytes, fast=fast)
    return app


def app_from_env() -> FastAPI:
    """The app of one fleet worker (``uvicorn --factory``): source and settings from the environment.

    ``tastebud serve --workers N`` sets ``TASTEBUD_SERVE_SOURCE``, ``TASTEBUD_SERVE_CONTROL`` and the
    token variables before uvicorn starts the workers.
    """
    source = os.environ.get("TASTEBUD_SERVE_SOURCE")
    if not source:
        raise ConfigError("TASTEBUD_SERVE_SOURCE is not set (start workers with `tastebud serve --workers N`)")
    return create_app(source, ServeConfig.from_env())


__all__ = ["ServeConfig", "app_from_env", "create_app", "ConfigError", "NotSupportedError"]
