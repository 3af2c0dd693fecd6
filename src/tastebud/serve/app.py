"""The HTTP service: FastAPI app factory.

``create_app(source)`` serves a registry folder (its current version) or a single saved model.
Read endpoints answer recommendations, similar items and predictions; ``POST /events`` records
interactions durably; ``POST /admin/reload`` swaps in the registry's current version while
requests keep being answered (the new version is loaded beside the old one, then one reference
is swapped; a request in flight finishes on the version it started with).

Errors are 4xx with a one-line ``error`` message for anything the caller can fix; a 5xx is a bug.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import math
import os
import re
import secrets
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetPydanticSchema,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_core import core_schema
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tastebud import __version__
from tastebud.core.errors import (
    ConfigError,
    DataError,
    ModelFormatError,
    NotSupportedError,
    TastebudError,
    UnknownIdError,
)
from tastebud.serve.docs import add_offline_docs
from tastebud.serve.engine import Engine
from tastebud.serve.events import Event, StoreUnavailableError, open_store
from tastebud.serve.fleet import POLL_SECONDS, FleetControl
from tastebud.serve.metrics import Metrics
from tastebud.serve.registry import ModelRegistry, is_model_folder

log = logging.getLogger("tastebud.serve")

# request limits, declared once: the FastAPI routes, the body models and the fast path check the same
MAX_ID = 256  # characters of a string id
MAX_K = 1000
DEFAULT_K = 10
MAX_MODEL_NAME = 64

# an id: a JSON integer or a string; one error message for both (not one per member of the union)
Id = Annotated[
    int | str,
    GetPydanticSchema(
        lambda _tp, _handler: core_schema.union_schema(
            [core_schema.int_schema(strict=True), core_schema.str_schema(strict=True, min_length=1, max_length=MAX_ID)],
            custom_error_type="id_type",
            custom_error_message=f"must be an integer or a string of 1 to {MAX_ID} characters",
        )
    ),
]
Finite = Annotated[float, Field(allow_inf_nan=False)]


@dataclass
class ServeConfig:
    """Service settings. ``token`` guards writes and admin (generated and logged when None);
    ``read_token``, when set, guards reads too (either token then works for reads)."""

    token: str | None = None
    read_token: str | None = None
    events: str | None = None
    max_body_bytes: int = 1_048_576
    max_events: int = 1000
    max_history: int = 10_000
    omp_threads: int = 1
    control: str | None = None  # fleet control file when several workers serve (serve/fleet.py)

    @classmethod
    def from_env(cls, **overrides: Any) -> ServeConfig:
        cfg = cls(
            token=os.environ.get("TASTEBUD_TOKEN") or None,
            read_token=os.environ.get("TASTEBUD_READ_TOKEN") or None,
            events=os.environ.get("TASTEBUD_EVENTS") or None,
            control=os.environ.get("TASTEBUD_SERVE_CONTROL") or None,
        )
        if os.environ.get("TASTEBUD_MAX_BODY"):
            cfg.max_body_bytes = int(os.environ["TASTEBUD_MAX_BODY"])
        for key, value in overrides.items():
            if value is not None:
                setattr(cfg, key, value)
        return cfg


# ---------------------------------------------------------------------------- request bodies
class HistoryRequest(BaseModel):
    """A person not in the model, by the items they had (oldest first)."""

    model_config = ConfigDict(extra="forbid")
    items: list[Id] = Field(..., max_length=10_000, description="Item ids, oldest first.")
    values: list[Finite] | None = Field(None, description="Ratings or weights, one per item (1 when omitted).")
    timestamps: list[StrictInt] | None = Field(
        None, description="Unix seconds per item; the history is ordered by them."
    )
    k: int = Field(DEFAULT_K, ge=1, le=MAX_K)
    exclude_seen: bool = True
    context: dict[str, StrictStr | StrictInt] | None = Field(
        None, description="Demographics / context for the popularity path."
    )
    model: str | None = Field(None, description="Serve with this model instead of the policy.")
    candidates: list[Id] | None = Field(None, max_length=1_000_000, description="Restrict results to these items.")


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: Id
    item: Id
    value: Finite = 1.0
    timestamp: StrictInt | None = Field(None, description="Unix seconds (server time when omitted).")
    kind: Annotated[str, Field(max_length=64)] = "interaction"
    event_id: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        None, description="Idempotency key: a retried event with the same key is stored once."
    )


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[EventIn] = Field(..., min_length=1)


# POST /events takes one event or a batch: the shape is chosen by the "events" key, so a malformed
# event gets one error naming its field instead of one per member of the union. The tags are left
# out of the error's location (``_invalid``).
EVENT_SHAPES = ("event", "batch")
EventsBody = Annotated[
    Annotated[EventIn, Tag("event")] | Annotated[EventBatch, Tag("batch")],
    Discriminator(
        lambda v: ("batch" if "events" in v else "event") if isinstance(v, (dict, EventIn, EventBatch)) else None,
        custom_error_type="event_shape",
        custom_error_message='expected one event {"user": ID, "item": ID, ...} or a batch {"events": [...]}',
    ),
]

PAIR_SHAPE = 'each pair is {"user": ID, "item": ID} or [user, item]'


class Pair(BaseModel):
    """One (user, item) pair; ``[user, item]`` is read as ``{"user": user, "item": item}``."""

    model_config = ConfigDict(extra="forbid")
    user: Id
    item: Id

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise ValueError(f"{PAIR_SHAPE}; got a list of {len(value)}")
            return {"user": value[0], "item": value[1]}
        if not isinstance(value, dict):
            raise ValueError(f"{PAIR_SHAPE}; got {type(value).__name__}")
        return value


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"pairs": [{"user": 1, "item": 50}, [1, 172]]}]}
    )
    pairs: list[Pair] = Field(
        ..., min_length=1, max_length=10_000, description='Pairs as {"user": ID, "item": ID} or [user, item].'
    )
    model: str | None = Field(None, description="Predict with this model (default: the first that predicts ratings).")


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str | None = Field(
        None,
        pattern=r"^v[0-9]{4,}$",
        max_length=32,
        description="Version name (v0001); default: the registry's CURRENT.",
    )


# ---------------------------------------------------------------------------- state
class State:
    def __init__(self, source: Path, config: ServeConfig) -> None:
        self.source = source
        self.config = config
        self.fleet = FleetControl(config.control) if config.control else None
        self.generation = 0
        if self.fleet is not None:  # every worker of a fleet starts on the fleet's version
            version, self.generation = self.fleet.read()
            self.fleet.changed()
            self.engine = Engine.load(source, version)
        else:
            self.engine = Engine.load(source)
        self.reload_lock = threading.Lock()
        self.metrics = Metrics()
        self._published = -1  # Metrics.changes when this worker last published them (fleet)
        self.store = open_store(config.events or default_events_url(source))
        self.started = time.time()

    def reload(self, version: str | None = None) -> Engine:
        """Load ``version`` (None: the registry's CURRENT) beside the served one, then swap.

        In a fleet the load holds the fleet lock (one worker loads at a time) and then tells the
        other workers to follow.
        """
        with self.reload_lock, self.fleet.loading() if self.fleet is not None else nullcontext():
            engine = self._swap(version)
            if self.fleet is not None:
                _, generation = self.fleet.read()
                self.generation = generation + 1
                self.fleet.write(None if is_model_folder(self.source) else engine.version, self.generation)
                self.fleet.changed()
        return engine

    def _swap(self, version: str | None, verify: bool = True) -> Engine:
        """Load ``version`` beside the served one, swap it in and let the replaced one go."""
        replaced, self.engine = self.engine, _load_politely(self.source, version, verify)
        _settle(replaced)
        return self.engine

    def publish_metrics(self) -> None:
        """Fleet worker: publish this worker's metrics for the others' scrapes, when they changed."""
        if self.fleet is None or self.metrics.changes == self._published:
            return
        changes = self.metrics.changes
        try:
            self.fleet.publish_metrics(self.metrics.snapshot())
        except OSError as exc:  # the fleet's folder gone at shutdown, a full disk: scrapes undercount
            log.warning("worker %d could not publish its metrics: %s", os.getpid(), exc)
            return
        self._published = changes

    def follow(self) -> None:
        """Fleet worker: load the fleet's version if another worker moved it (called by the poller)."""
        if self.fleet is None or not self.fleet.changed():
            return
        version, generation = self.fleet.read()
        if generation <= self.generation:
            return
        with self.reload_lock, self.fleet.loading():
            version, generation = self.fleet.read()
            if generation <= self.generation:
                return
            try:
                self._swap(version, verify=False)  # the worker that moved the fleet verified it
            except (TastebudError, OSError) as exc:
                log.error("worker %d could not follow the fleet to %s: %s", os.getpid(), version, exc)
                self.metrics.inc("tastebud_reloads_total", outcome="failed")
            else:
                self.metrics.inc("tastebud_reloads_total", outcome="ok")
            self.generation = generation


def default_events_url(source: Path) -> str:
    if is_model_folder(source):
        return str(source.parent / f"{source.name}.events.db")
    return str(source / "events.db")


def create_app(source: str | Path, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``source`` (a registry folder or one saved model folder)."""
    config = config or ServeConfig.from_env()
    if config.token is None:
        config.token = secrets.token_urlsafe(24)
        log.warning("no write token configured (TASTEBUD_TOKEN); generated one for this run: %s", config.token)
    _limit_threads(config.omp_threads)
    state = State(Path(source), config)
    _settle()
    m = state.metrics
    m.counter("tastebud_requests_total", "HTTP requests by route and status.")
    m.histogram("tastebud_request_seconds", "Request latency in seconds by route.")
    m.counter(
        "tastebud_recommendations_total", "Recommendation lists served, by path (popular, history, collaborative)."
    )
    m.counter("tastebud_events_stored_total", "Events stored durably.")
    m.counter("tastebud_events_duplicate_total", "Events ignored because their idempotency key was already stored.")
    m.counter("tastebud_reloads_total", "Model reloads by outcome.")
    m.gauge("tastebud_uptime_seconds", "Seconds since the service started.", lambda: time.time() - state.started)
    m.gauge("tastebud_event_commits", "Group commits of the event store.", lambda: state.store.commits)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        poller = None
        if state.fleet is not None:

            def poll() -> None:
                while not stop.wait(POLL_SECONDS):
                    try:
                        state.follow()
                    except Exception:  # noqa: BLE001 - the poller must outlive a bad control file
                        log.exception("fleet poll failed")
                    state.publish_metrics()

            poller = threading.Thread(target=poll, name="tastebud-fleet", daemon=True)
            poller.start()
        yield
        stop.set()
        if poller is not None:
            poller.join(POLL_SECONDS * 4)
            state.publish_metrics()  # the last requests count too
        state.store.close()

    app = FastAPI(
        lifespan=lifespan,
        title="tastebud",
        version=__version__,
        description="Recommendations for known and new people, similar items, rating predictions and live events.",
        docs_url=None,  # served from local files below: FastAPI's pages load their scripts from a CDN
        redoc_url=None,
    )
    add_offline_docs(app)
    app.state.tb = state

    # -------------------------------------------------------------- errors
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = list(first.get("loc", ()))
        if loc[:1] == ["body"]:  # the body's own fields, without the event shape's tag
            loc = loc[2:] if loc[1:2] and loc[1] in EVENT_SHAPES else loc[1:]
        where = ".".join(str(p) for p in loc)
        msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        return JSONResponse({"error": f"{where}: {msg}" if where else msg, "detail": _plain(errors)}, status_code=422)

    @app.exception_handler(TastebudError)
    async def _tb_error(request: Request, exc: TastebudError) -> JSONResponse:
        status = 404 if isinstance(exc, UnknownIdError) else 409 if isinstance(exc, ModelFormatError) else 400
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(StoreUnavailableError)
    async def _store_down(request: Request, exc: StoreUnavailableError) -> JSONResponse:
        log.error("event store unavailable: %s", exc)
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(StarletteHTTPException)
    async def _route_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # unknown routes and methods: the same {"error": ...} shape as every other 4xx
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - a bug by definition
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); this is a bug"}, status_code=500)

    # -------------------------------------------------------------- auth
    async def require_write(authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> None:
        _check_token(authorization, [config.token or ""])

    async def require_read(authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> None:
        if config.read_token:
            _check_token(authorization, [config.read_token, config.token or ""])

    # open reads (no read token) skip the dependency machinery altogether: it is per request
    read_guard = [Depends(require_read)] if config.read_token else []

    # -------------------------------------------------------------- endpoints
    @app.get("/health", tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness and what is being served."""
        eng = state.engine
        return {
            "status": "ok",
            "version": eng.version,
            "models": list(eng.served),
            "n_items": len(eng.items),
            "n_users": len(eng.users),
            "tastebud": __version__,
            "worker": os.getpid(),
        }

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus text format; in a fleet (``--workers N``) the counts of every worker."""
        others = state.fleet.others_metrics() if state.fleet is not None else []
        return PlainTextResponse(m.render(others), media_type="text/plain; version=0.0.4; charset=utf-8")

    def answer_user(
        user_id: str, k: int, model: str | None, exclude_seen: bool, ctx: dict[str, str] | None, cand: list[str] | None
    ) -> dict[str, Any]:
        eng = state.engine
        res = eng.recommend_user(user_id, k, model, exclude_seen, ctx, state.store, cand)
        m.inc("tastebud_recommendations_total", path=res.path)
        body = res.to_dict()
        body["user"] = eng.users.coerce_id(user_id)
        body["version"] = eng.version
        return body

    def answer_history(req: HistoryRequest) -> dict[str, Any]:
        eng = state.engine
        items, values = list(req.items), req.values
        if len(items) > config.max_history:
            raise HTTPException(413, f"items: at most {config.max_history} items per history")
        if values is not None and len(values) != len(items):
            raise HTTPException(422, f"values has {len(values)} entries but items has {len(items)}")
        if req.timestamps is not None:
            if len(req.timestamps) != len(items):
                raise HTTPException(422, f"timestamps has {len(req.timestamps)} entries but items has {len(items)}")
            order = sorted(range(len(items)), key=lambda i: req.timestamps[i])  # type: ignore[index]
            items = [items[i] for i in order]
            values = None if values is None else [values[i] for i in order]
        res = eng.recommend_history(items, values, req.k, req.exclude_seen, req.context, req.model, req.candidates)
        m.inc("tastebud_recommendations_total", path=res.path)
        body = res.to_dict()
        body["version"] = eng.version
        return body

    @app.get("/users/{user_id}/recommendations", tags=["recommend"], dependencies=read_guard)
    async def user_recommendations(
        user_id: Annotated[str, PathParam(max_length=MAX_ID)],
        k: Annotated[int, Query(ge=1, le=MAX_K)] = DEFAULT_K,
        model: Annotated[str | None, Query(max_length=MAX_MODEL_NAME)] = None,
        exclude_seen: bool = True,
        context: Annotated[list[str], Query(description="key:value pairs, e.g. country:FR")] = None,
        candidates: Annotated[str | None, Query(description="Comma-separated item ids to restrict to.")] = None,
    ) -> JSONResponse:
        """Top-k for a person by id. Unknown people get the cold-start path, not an error."""
        ctx = _parse_context(context)
        cand = [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None
        args = (user_id, k, model, exclude_seen, ctx, cand)
        # about a millisecond of CPU runs on the loop; a database round trip must not hold it
        body = await run_in_threadpool(answer_user, *args) if state.store.remote else answer_user(*args)
        return JSONResponse(body)

    @app.post("/recommendations", tags=["recommend"], dependencies=read_guard)
    async def history_recommendations(req: HistoryRequest) -> JSONResponse:
        """Top-k for a person not in the model, from a history of item ids (oldest first)."""
        return JSONResponse(answer_history(req))

    @app.get("/items/{item_id}/similar", tags=["recommend"], dependencies=read_guard)
    def similar_items(
        item_id: Annotated[str, PathParam(max_length=MAX_ID)],
        k: Annotated[int, Query(ge=1, le=MAX_K)] = DEFAULT_K,
        model: Annotated[str | None, Query(max_length=MAX_MODEL_NAME)] = None,
    ) -> JSONResponse:
        """The k items most similar to one item (404 for an unknown item)."""
        eng = state.engine
        res = eng.similar(item_id, k, model)
        body = res.to_dict()
        body["item"] = _py_id(eng.items.lookup([item_id])[0], eng)
        body["version"] = eng.version
        return JSONResponse(body)

    @app.post("/predict", tags=["recommend"], dependencies=read_guard)
    def predict(req: PredictRequest) -> JSONResponse:
        """Predicted ratings for (user, item) pairs, clipped to the rating scale. Unknown ids fall
        back to the model's biases (the global mean at worst), said in ``warnings``."""
        eng = state.engine
        users = [eng.users.coerce_id(p.user) for p in req.pairs]
        items = [eng.items.coerce_id(p.item) for p in req.pairs]
        preds, name, warnings = eng.predict(users, items, req.model)
        out = [
            {"user": u, "item": i, "rating": float(r) if math.isfinite(r) else None}
            for u, i, r in zip(users, items, preds, strict=False)
        ]
        return JSONResponse({"model": name, "predictions": out, "warnings": warnings, "version": eng.version})

    @app.post("/events", tags=["events"], dependencies=[Depends(require_write)], status_code=201)
    async def record_events(
        body: Annotated[EventsBody, Body()],
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> JSONResponse:
        """Record one event or a batch; durable before the response. Retries with the same
        ``event_id`` (or ``Idempotency-Key`` header) are stored once."""
        items = body.events if isinstance(body, EventBatch) else [body]
        if len(items) > config.max_events:
            raise HTTPException(413, f"events: at most {config.max_events} events per request")
        eng = state.engine
        events = []
        for j, e in enumerate(items):
            eid = e.event_id or (f"{idempotency_key}:{j}" if idempotency_key else None)
            events.append(
                Event(eng.users.coerce_id(e.user), eng.items.coerce_id(e.item), e.value, e.timestamp, e.kind, eid)
            )
        fut = state.store.submit(events)
        stored = await asyncio.wrap_future(fut)
        n_new = sum(stored)
        m.inc("tastebud_events_stored_total", n_new)
        if len(stored) - n_new:
            m.inc("tastebud_events_duplicate_total", len(stored) - n_new)
        unknown_items = int((eng.items.lookup([e.item for e in items]) < 0).sum())
        warnings = (
            [f"{unknown_items} event(s) name items this version does not know; they count after a retrain"]
            if unknown_items
            else []
        )
        return JSONResponse({"stored": n_new, "duplicates": len(stored) - n_new, "warnings": warnings}, status_code=201)

    @app.post("/admin/reload", tags=["admin"], dependencies=[Depends(require_write)])
    def reload(req: Annotated[ReloadRequest | None, Body()] = None) -> JSONResponse:
        """Load the registry's current (or a named) version and swap it in; no request fails."""
        old = state.engine.version
        try:
            engine = state.reload(req.version if req else None)
        except (TastebudError, OSError) as exc:
            m.inc("tastebud_reloads_total", outcome="failed")
            raise HTTPException(409, f"reload failed, still serving {old}: {exc}") from None
        m.inc("tastebud_reloads_total", outcome="ok")
        return JSONResponse({"previous": old, **engine.describe()})

    @app.get("/admin/info", tags=["admin"], dependencies=[Depends(require_write)])
    def info() -> JSONResponse:
        """The served version, its models and policy, the event store."""
        eng = state.engine
        versions: list[str] = []
        if not is_model_folder(state.source):
            versions = ModelRegistry(state.source).versions()
        return JSONResponse(
            {
                **eng.describe(),
                "versions": versions,
                "events": {"url": _redact(state.store.url), "count": state.store.count()},
            }
        )

    # the lab page is served by the same app, at /lab/ (its state is created on first use)
    from tastebud.lab.routes import router as lab_router

    app.include_router(lab_router)
    fast = None
    if not config.read_token and not state.store.remote:  # a token check or a database stays with FastAPI
        routes = {r.path: r for r in app.routes if isinstance(r, APIRoute)}
        fast = _FastPath(
            routes["/users/{user_id}/recommendations"], routes["/recommendations"], answer_user, answer_history
        )
    app.add_middleware(_Guard, metrics=m, max_body=config.max_body_bytes, fast=fast)

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


# ---------------------------------------------------------------------------- helpers
def _check_token(authorization: str | None, tokens: list[str]) -> None:
    scheme, _, cred = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not cred.strip():
        raise HTTPException(
            401, "missing bearer token (Authorization: Bearer <token>)", headers={"WWW-Authenticate": "Bearer"}
        )
    given = cred.strip().encode()
    ok = False
    for token in tokens:  # compare with every token, in constant time each
        if token:
            ok |= hmac.compare_digest(given, token.encode())
    if not ok:
        raise HTTPException(403, "invalid token")


def _parse_context(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        sep = ":" if ":" in pair else "=" if "=" in pair else None
        if sep is None:
            raise DataError(f"context must be key:value, got {pair!r}")
        key, value = pair.split(sep, 1)
        out[key.strip()] = value.strip()
    return out


def _py_id(idx: Any, eng: Engine) -> Any:
    value = eng.items.ids[int(idx)]
    return value.item() if hasattr(value, "item") else value


def _plain(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"loc": list(map(str, e.get("loc", ()))), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in errors
    ]


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _load_politely(source: Path, version: str | None, verify: bool = True) -> Engine:
    """``Engine.load`` in a thread of its own at a low scheduling priority (Linux: ``nice`` is per
    thread), so the seconds of loading yield the cores to the requests being answered meanwhile."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (OSError, AttributeError):  # pragma: no cover - not Linux, or not permitted
            pass
        try:
            out["engine"] = Engine.load(source, version, verify=verify)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            out["error"] = exc

    loader = threading.Thread(target=run, name="tastebud-load")
    loader.start()
    loader.join()
    if "error" in out:
        raise out["error"]
    return out["engine"]


SETTLE_SECONDS = 1.0  # how long a replaced version may take to go (requests still holding it)


def _settle(replaced: Engine | None = None) -> None:
    """After a load: collect the load's young garbage, then freeze what survives (the served
    version), so the collector's full passes stop re-scanning it between requests.

    A replaced version is freed by reference counting: nothing in a served version forms a
    cycle (a test checks it). A full collection, a pause of about 0.1 s with the GIL held at 1M
    items while the other requests wait, is paid only if the replaced version is still alive a
    second later (a cycle, or a request that still holds it)."""
    gc.collect(1)
    gc.freeze()
    if replaced is None:
        return
    gone = weakref.ref(replaced)
    del replaced

    def check() -> None:
        if gone() is not None:
            log.info("a replaced version outlived its swap; running a full garbage collection")
            gc.unfreeze()
            gc.collect()
            gc.freeze()

    timer = threading.Timer(SETTLE_SECONDS, check)
    timer.daemon = True
    timer.start()


def _limit_threads(n: int) -> None:
    """Requests run in a thread pool: one BLAS / OpenMP thread per request avoids oversubscription."""
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:  # pragma: no cover
        pass


class _FastPath:
    """The two hottest requests in their plain shape, answered without FastAPI's routing and
    parameter solving: ``GET /users/{id}/recommendations`` with at most ``k``, ``model`` and
    ``exclude_seen``, and ``POST /recommendations`` with a JSON body.

    FastAPI's layers cost a request about 0.15 ms of CPU when warm and twice that when a paced
    request finds the caches cold (measured), against 1-2 ms for the whole request; at 500
    requests/s on two cores that time queues up in the p99. The answer comes from the same
    functions the FastAPI routes call, after the same checks (the same pydantic model for a
    body). Whatever is not plain, fails a check or raises goes on to the FastAPI route, which
    stays the reference: it parses again and answers, or makes the error response.
    """

    USER_PATH = re.compile(rf"^/users/([^/]{{1,{MAX_ID}}})/recommendations$")
    BOOLS = {"true": True, "false": False, "1": True, "0": False}

    def __init__(
        self,
        user_route: APIRoute,
        history_route: APIRoute,
        answer_user: Callable[..., dict[str, Any]],
        answer_history: Callable[[HistoryRequest], dict[str, Any]],
    ) -> None:
        self.user_route, self.history_route = user_route, history_route
        self.answer_user, self.answer_history = answer_user, answer_history

    def answer(
        self, scope: dict[str, Any], headers: dict[bytes, bytes], body: bytes | None
    ) -> tuple[Any, JSONResponse] | None:
        """(route, response) for a plain request; None sends it on to FastAPI."""
        method, path = scope.get("method"), scope.get("path", "")
        try:
            if method == "GET" and (found := self.USER_PATH.match(path)):
                params = self._user_params(scope.get("query_string", b""))
                if params is None:
                    return None
                return self.user_route, JSONResponse(self.answer_user(found.group(1), *params, None, None))
            if method == "POST" and path == "/recommendations" and body is not None and _is_json(headers):
                req = HistoryRequest.model_validate(json.loads(body))
                return self.history_route, JSONResponse(self.answer_history(req))
        except (ValueError, ValidationError, HTTPException, TastebudError):  # FastAPI makes the error response
            return None
        return None

    def _user_params(self, query: bytes) -> tuple[int, str | None, bool] | None:
        k, model, exclude_seen = DEFAULT_K, None, True
        for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if key == "k" and value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_K:
                k = int(value)
            elif key == "model" and 0 < len(value) <= MAX_MODEL_NAME:
                model = value
            elif key == "exclude_seen" and value in self.BOOLS:
                exclude_seen = self.BOOLS[value]
            else:
                return None
        return k, model, exclude_seen


def _is_json(headers: dict[bytes, bytes]) -> bool:
    return headers.get(b"content-type", b"").split(b";")[0].strip().lower() == b"application/json"


class _Guard:
    """ASGI middleware: body size limit (413), per-route request metrics, and the fast path."""

    def __init__(self, app: Any, metrics: Metrics, max_body: int, fast: _FastPath | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.fast = fast

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        headers = dict(reversed(scope.get("headers") or []))  # a repeated header: the first, as Starlette reads it
        length = headers.get(b"content-length")
        too_big = False
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                too_big = True
        payload = None
        if not too_big and scope.get("method") in ("POST", "PUT", "PATCH"):
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    too_big = True
                    break
                chunks.append(chunk)
                more = message.get("more_body", False)
            if not too_big:
                payload = b"".join(chunks)
                sent = {"done": False}

                async def replay() -> dict[str, Any]:
                    if not sent["done"]:
                        sent["done"] = True
                        return {"type": "http.request", "body": payload, "more_body": False}
                    return await receive()

                receive = replay
        quick = None if too_big or self.fast is None else self.fast.answer(scope, headers, payload)
        if too_big:
            response = JSONResponse({"error": f"request body larger than {self.max_body} bytes"}, status_code=413)
            await response(scope, receive, send_wrapper)
        elif quick is not None:
            scope["route"], response = quick
            await response(scope, receive, send_wrapper)
        else:
            await self.app(scope, receive, send_wrapper)
        route = scope.get("route")
        label = getattr(route, "path", None) or "unmatched"
        elapsed = time.perf_counter() - start
        self.metrics.inc(
            "tastebud_requests_total", route=label, method=scope.get("method", ""), status=str(status["code"])
        )
        self.metrics.observe("tastebud_request_seconds", elapsed, route=label)


__all__ = ["ServeConfig", "app_from_env", "create_app", "ConfigError", "NotSupportedError"]
