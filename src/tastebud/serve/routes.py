"""The service's endpoints and error responses.

:class:`Routes` holds the handlers over one :class:`State`; :meth:`Routes.add_to` adds them to the app
with their auth guards. Errors are 4xx with a one-line ``error`` message for anything the caller
can fix (:func:`add_error_handlers`); a 5xx is a bug.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import os
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tastebud import __version__
from tastebud.core.errors import DataError, ModelFormatError, TastebudError, UnknownIdError
from tastebud.serve.engine import Engine
from tastebud.serve.events import Event, StoreUnavailableError
from tastebud.serve.lifecycle import State
from tastebud.serve.registry import ModelRegistry, is_model_folder
from tastebud.serve.schemas import (
    DEFAULT_K,
    EVENT_SHAPES,
    MAX_ID,
    MAX_K,
    MAX_MODEL_NAME,
    EventBatch,
    EventsBody,
    HistoryRequest,
    PredictRequest,
    ReloadRequest,
)

log = logging.getLogger("tastebud.serve")


class Routes:
    """The endpoints of one service. ``answer_user`` and ``answer_history`` are shared with the
    fast path (``serve/fastpath.py``), so both paths answer alike."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.config = state.config
        self.metrics = state.metrics

    def add_to(self, app: FastAPI) -> None:
        """Every endpoint, with its guard: writes and admin need the write token; reads need the
        read token when one is set (open reads skip the dependency machinery, which costs per request).

        Added to the app itself, not through an included ``APIRouter``: the fast path and the
        request metrics read these routes from ``app.routes``."""
        read = [Depends(self.require_read)] if self.config.read_token else []
        write = [Depends(self.require_write)]
        app.add_api_route("/health", self.health, methods=["GET"], tags=["service"])
        app.add_api_route(
            "/metrics",
            self.metrics_text,
            methods=["GET"],
            tags=["service"],
            response_class=PlainTextResponse,
            name="metrics",  # the operation id of the OpenAPI document
        )
        app.add_api_route(
            "/users/{user_id}/recommendations",
            self.user_recommendations,
            methods=["GET"],
            tags=["recommend"],
            dependencies=read,
        )
        app.add_api_route(
            "/recommendations", self.history_recommendations, methods=["POST"], tags=["recommend"], dependencies=read
        )
        app.add_api_route(
            "/items/{item_id}/similar", self.similar_items, methods=["GET"], tags=["recommend"], dependencies=read
        )
        app.add_api_route("/predict", self.predict, methods=["POST"], tags=["recommend"], dependencies=read)
        app.add_api_route(
            "/events", self.record_events, methods=["POST"], tags=["events"], dependencies=write, status_code=201
        )
        app.add_api_route("/admin/reload", self.reload, methods=["POST"], tags=["admin"], dependencies=write)
        app.add_api_route("/admin/info", self.info, methods=["GET"], tags=["admin"], dependencies=write)

    # -------------------------------------------------------------- auth
    async def require_write(self, authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> None:
        _check_token(authorization, [self.config.token or ""])

    async def require_read(self, authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> None:
        if self.config.read_token:
            _check_token(authorization, [self.config.read_token, self.config.token or ""])

    # -------------------------------------------------------------- answers shared with the fast path
    def answer_user(
        self,
        user_id: str,
        k: int,
        model: str | None,
        exclude_seen: bool,
        ctx: dict[str, str] | None,
        cand: list[str] | None,
    ) -> dict[str, Any]:
        eng = self.state.engine
        res = eng.recommend_user(user_id, k, model, exclude_seen, ctx, self.state.store, cand)
        self.metrics.inc("tastebud_recommendations_total", path=res.path)
        body = res.to_dict()
        body["user"] = eng.users.coerce_id(user_id)
        body["version"] = eng.version
        return body

    def answer_history(self, req: HistoryRequest) -> dict[str, Any]:
        eng = self.state.engine
        max_history = self.config.max_history
        items, values = list(req.items), req.values
        if len(items) > max_history:
            raise HTTPException(413, f"items: at most {max_history} items per history")
        if values is not None and len(values) != len(items):
            raise HTTPException(422, f"values has {len(values)} entries but items has {len(items)}")
        if req.timestamps is not None:
            if len(req.timestamps) != len(items):
                raise HTTPException(422, f"timestamps has {len(req.timestamps)} entries but items has {len(items)}")
            order = sorted(range(len(items)), key=lambda i: req.timestamps[i])  # type: ignore[index]
            items = [items[i] for i in order]
            values = None if values is None else [values[i] for i in order]
        res = eng.recommend_history(items, values, req.k, req.exclude_seen, req.context, req.model, req.candidates)
        self.metrics.inc("tastebud_recommendations_total", path=res.path)
        body = res.to_dict()
        body["version"] = eng.version
        return body

    # -------------------------------------------------------------- endpoints
    async def health(self) -> dict[str, Any]:
        """Liveness and what is being served."""
        eng = self.state.engine
        return {
            "status": "ok",
            "version": eng.version,
            "models": list(eng.served),
            "n_items": len(eng.items),
            "n_users": len(eng.users),
            "tastebud": __version__,
            "worker": os.getpid(),
        }

    async def metrics_text(self) -> PlainTextResponse:
        """Prometheus text format; in a fleet (``--workers N``) the counts of every worker."""
        others = self.state.fleet.others_metrics() if self.state.fleet is not None else []
        return PlainTextResponse(self.metrics.render(others), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def user_recommendations(
        self,
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
        remote = self.state.store.remote
        body = await run_in_threadpool(self.answer_user, *args) if remote else self.answer_user(*args)
        return JSONResponse(body)

    async def history_recommendations(self, req: HistoryRequest) -> JSONResponse:
        """Top-k for a person not in the model, from a history of item ids (oldest first)."""
        return JSONResponse(self.answer_history(req))

    def similar_items(
        self,
        item_id: Annotated[str, PathParam(max_length=MAX_ID)],
        k: Annotated[int, Query(ge=1, le=MAX_K)] = DEFAULT_K,
        model: Annotated[str | None, Query(max_length=MAX_MODEL_NAME)] = None,
    ) -> JSONResponse:
        """The k items most similar to one item (404 for an unknown item)."""
        eng = self.state.engine
        res = eng.similar(item_id, k, model)
        body = res.to_dict()
        body["item"] = _py_id(eng.items.lookup([item_id])[0], eng)
        body["version"] = eng.version
        return JSONResponse(body)

    def predict(self, req: PredictRequest) -> JSONResponse:
        """Predicted ratings for (user, item) pairs, clipped to the rating scale. Unknown ids fall
        back to the model's biases (the global mean at worst), said in ``warnings``."""
        eng = self.state.engine
        users = [eng.users.coerce_id(p.user) for p in req.pairs]
        items = [eng.items.coerce_id(p.item) for p in req.pairs]
        preds, name, warnings = eng.predict(users, items, req.model)
        out = [
            {"user": u, "item": i, "rating": float(r) if math.isfinite(r) else None}
            for u, i, r in zip(users, items, preds, strict=False)
        ]
        return JSONResponse({"model": name, "predictions": out, "warnings": warnings, "version": eng.version})

    async def record_events(
        self,
        body: Annotated[EventsBody, Body()],
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> JSONResponse:
        """Record one event or a batch; durable before the response. Retries with the same
        ``event_id`` (or ``Idempotency-Key`` header) are stored once."""
        items = body.events if isinstance(body, EventBatch) else [body]
        if len(items) > self.config.max_events:
            raise HTTPException(413, f"events: at most {self.config.max_events} events per request")
        eng = self.state.engine
        events = []
        for j, e in enumerate(items):
            eid = e.event_id or (f"{idempotency_key}:{j}" if idempotency_key else None)
            events.append(
                Event(eng.users.coerce_id(e.user), eng.items.coerce_id(e.item), e.value, e.timestamp, e.kind, eid)
            )
        fut = self.state.store.submit(events)
        stored = await asyncio.wrap_future(fut)
        n_new = sum(stored)
        self.metrics.inc("tastebud_events_stored_total", n_new)
        if len(stored) - n_new:
            self.metrics.inc("tastebud_events_duplicate_total", len(stored) - n_new)
        unknown_items = int((eng.items.lookup([e.item for e in items]) < 0).sum())
        warnings = (
            [f"{unknown_items} event(s) name items this version does not know; they count after a retrain"]
            if unknown_items
            else []
        )
        return JSONResponse({"stored": n_new, "duplicates": len(stored) - n_new, "warnings": warnings}, status_code=201)

    def reload(self, req: Annotated[ReloadRequest | None, Body()] = None) -> JSONResponse:
        """Load the registry's current (or a named) version and swap it in; no request fails."""
        old = self.state.engine.version
        try:
            engine = self.state.reload(req.version if req else None)
        except (TastebudError, OSError) as exc:
            self.metrics.inc("tastebud_reloads_total", outcome="failed")
            raise HTTPException(409, f"reload failed, still serving {old}: {exc}") from None
        self.metrics.inc("tastebud_reloads_total", outcome="ok")
        return JSONResponse({"previous": old, **engine.describe()})

    def info(self) -> JSONResponse:
        """The served version, its models and policy, the event store."""
        eng = self.state.engine
        versions: list[str] = []
        if not is_model_folder(self.state.source):
            versions = ModelRegistry(self.state.source).versions()
        return JSONResponse(
            {
                **eng.describe(),
                "versions": versions,
                "events": {"url": _redact(self.state.store.url), "count": self.state.store.count()},
            }
        )


# ---------------------------------------------------------------------------- errors
def add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": "<one line>"}``: 4xx for what the caller can fix, 5xx for a bug."""
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(TastebudError, _tb_error)
    app.add_exception_handler(StoreUnavailableError, _store_down)
    app.add_exception_handler(StarletteHTTPException, _route_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _bug)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = list(first.get("loc", ()))
    if loc[:1] == ["body"]:  # the body's own fields, without the event shape's tag
        loc = loc[2:] if loc[1:2] and loc[1] in EVENT_SHAPES else loc[1:]
    where = ".".join(str(p) for p in loc)
    msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    return JSONResponse({"error": f"{where}: {msg}" if where else msg, "detail": _plain(errors)}, status_code=422)


async def _tb_error(request: Request, exc: TastebudError) -> JSONResponse:
    status = 404 if isinstance(exc, UnknownIdError) else 409 if isinstance(exc, ModelFormatError) else 400
    return JSONResponse({"error": str(exc)}, status_code=status)


async def _store_down(request: Request, exc: StoreUnavailableError) -> JSONResponse:
    log.error("event store unavailable: %s", exc)
    return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "5"})


async def _route_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # unknown routes and methods: the same {"error": ...} shape as every other 4xx
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _bug(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - a bug by definition
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": f"internal error ({type(exc).__name__}); this is a bug"}, status_code=500)


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


__all__ = ["Routes", "add_error_handlers"]
