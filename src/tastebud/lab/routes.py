"""The lab's HTTP side: the page, its static files, and the JSON API under ``/lab/api``.

``router`` carries everything (page at ``/lab/``, files at ``/lab/static/``), so any FastAPI app
shows the lab with ``app.include_router(router)``; :func:`create_lab_app` builds a stand-alone app
that also serves the page at ``/``. Nothing is fetched from the network: the page is plain
HTML, JavaScript and SVG shipped in ``static/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import scipy.sparse as sp
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tastebud.core.base import Recommender
from tastebud.core.errors import ModelFormatError, TastebudError, UnknownIdError
from tastebud.core.results import Explanation
from tastebud.lab.blend import MAX_BLEND_CELLS, fit_blend
from tastebud.lab.matrix import (
    DEFAULT_FACTORS,
    DEFAULT_ITERATIONS,
    DEFAULT_REG,
    MAX_FACTORS,
    clip_to_scale,
    fit_biased_mf,
    leave_one_out_rmse,
)
from tastebud.lab.page import STATIC, render_page, seed_matrix
from tastebud.lab.state import Dataset, LabError, LabState, catch, item_vectors, pca_2d

_FILES = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}


def error_response(exc: Exception) -> JSONResponse | None:
    """The service's error shape, ``{"error": "one line"}``, for an error a caller can fix (None: a bug).

    The same statuses as ``tastebud serve``: 404 for an unknown id, 409 for a bad model folder, 400
    for any other :class:`TastebudError`, 422 for a request that does not fit its schema (which also
    carries the validation ``detail`` list, as the service's does).
    """
    if isinstance(exc, RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
        msg = str(first.get("msg", "invalid request"))
        detail = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in errors
        ]
        return JSONResponse({"error": f"{where}: {msg}" if where else msg, "detail": detail}, status_code=422)
    if isinstance(exc, StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)
    if isinstance(exc, TastebudError):
        status = 404 if isinstance(exc, UnknownIdError) else 409 if isinstance(exc, ModelFormatError) else 400
        return JSONResponse({"error": str(exc)}, status_code=status)
    return None


class LabRoute(APIRoute):
    """Every lab route answers errors as ``{"error": ...}`` whichever app mounts the router.

    Exception handlers belong to an app, and the router is mounted on apps the lab does not create
    (the service, a user's own); a route class is the router's own extension point for this.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                response = error_response(exc)
                if response is None:
                    raise
                return response

        return route


router = APIRouter(route_class=LabRoute)


def get_state(request: Request) -> LabState:
    """The app's lab state, created on first use (so mounting the router is enough)."""
    state = getattr(request.app.state, "tastebud_lab", None)
    if state is None:
        state = LabState()
        request.app.state.tastebud_lab = state
    return state


# ---------------------------------------------------------------------- page and files
def _page() -> HTMLResponse:
    return HTMLResponse(render_page())


@router.get("/lab", include_in_schema=False)
@router.get("/lab/", include_in_schema=False)
def lab_page() -> HTMLResponse:
    return _page()


@router.get("/lab/static/{name}", include_in_schema=False)
def lab_static(name: str) -> FileResponse:
    if name not in _FILES:
        raise HTTPException(404, f"no lab file '{name}'")
    return FileResponse(STATIC / name, media_type=_FILES[name], headers={"Cache-Control": "no-cache"})


# ---------------------------------------------------------------------- matrix lab
class MatrixRequest(BaseModel):
    """A matrix to fill, the same for every model the matrix lab offers."""

    ratings: list[list[float | None]] = Field(description="user x item ratings; null for a missing cell")
    scale: tuple[float, float] | None = Field(None, description="[low, high]: predictions are clipped to it")


class FitRequest(MatrixRequest):
    factors: int = Field(DEFAULT_FACTORS, ge=0, le=MAX_FACTORS, description="latent dimensions k")
    reg: float = Field(DEFAULT_REG, ge=0, le=100, description="L2 regularisation")
    biases: bool = True
    iterations: int = Field(DEFAULT_ITERATIONS, ge=1, le=500)
    held_out: bool = Field(False, description="also the leave-one-out RMSE (one refit per known cell)")


class BlendRequest(MatrixRequest):
    hide: list[tuple[int, int]] = Field(
        default_factory=list,
        max_length=MAX_BLEND_CELLS,
        description="known cells [user, item] hidden from the fit and scored (rmse_held_out)",
    )


@router.get("/lab/api/matrix/seed", tags=["lab"])
def matrix_seed() -> dict[str, Any]:
    """The seed's 5 x 5 example: users, movies and the 14 observed ratings (null = missing), and defaults."""
    return seed_matrix()


@router.post("/lab/api/matrix/fit", tags=["lab"])
def matrix_fit(body: FitRequest) -> dict[str, Any]:
    """Fit biased MF by ALS to the given cells; returns predictions, U, I, biases and the fit error.

    With ``scale`` the predictions are clipped to it (``unclipped`` keeps the model's sums); with
    ``held_out`` the answer also carries ``rmse_held_out``, the error on ratings the fit did not see.
    """
    args = (body.factors, body.reg, body.biases, body.iterations)
    result = fit_biased_mf(body.ratings, *args, random_state=0)
    out = result.to_dict(scale=body.scale)
    out["rmse_held_out"] = None
    if body.held_out:
        held = leave_one_out_rmse(body.ratings, *args, scale=body.scale)
        out["rmse_held_out"] = None if held is None else round(held, 4)
    return out


@router.post("/lab/api/matrix/blend", tags=["lab"])
def matrix_blend(body: BlendRequest) -> dict[str, Any]:
    """Fill the matrix with the library's blend; every cell split into each member's prediction and share.

    Cross-fits every member on 5 folds and refits it (``tastebud.lab.blend``): at most
    ``MAX_BLEND_CELLS`` cells and at least 10 known ratings (the seed's 14 are enough to show the
    method; fewer is a 400 that says so).
    """
    return fit_blend(body.ratings, body.scale, body.hide).to_dict(scale=body.scale)


@router.get("/lab/api/matrix/sample", tags=["lab"])
def matrix_sample(
    request: Request,
    dataset: str = "synthetic",
    users: int = Query(30, ge=2, le=200),
    items: int = Query(40, ge=2, le=300),
    factors: int = Query(4, ge=0, le=16),
    reg: float = Query(1.0, ge=0, le=100),
    holdout: float = Query(0.1, ge=0, le=0.5),
) -> dict[str, Any]:
    """A block of a real data set (its most active users x most rated items), observed vs predicted.

    ``holdout`` of the observed cells (fixed seed) are hidden from the fit and scored, so the page
    shows how well the factorization predicts ratings it did not see.
    """
    ds = get_state(request).dataset(dataset)
    data = ds.data
    u_sel = np.sort(np.argsort(-data.user_counts(), kind="stable")[:users])
    i_sel = np.argsort(-ds.popularity(), kind="stable")[:items]
    block = data.matrix[u_sel][:, i_sel].tocoo()
    R = np.full((len(u_sel), len(i_sel)), np.nan)
    R[block.row, block.col] = block.data
    obs = np.argwhere(~np.isnan(R))
    rng = np.random.default_rng(0)
    n_hold = int(round(holdout * len(obs)))
    held = obs[rng.permutation(len(obs))[:n_hold]] if n_hold else np.empty((0, 2), int)
    R_fit = R.copy()
    R_fit[held[:, 0], held[:, 1]] = np.nan
    result = fit_biased_mf(R_fit, factors, reg, True, 30, random_state=0)
    scale = data.rating_scale if data.explicit else None
    predicted = np.asarray(clip_to_scale(result.predicted, scale))
    rmse_held = None
    if len(held):
        err = predicted[held[:, 0], held[:, 1]] - R[held[:, 0], held[:, 1]]
        rmse_held = round(float(np.sqrt(np.mean(err**2))), 4)
    titles = ds.titles()
    return {
        "dataset": dataset,
        "users": [_py(x) for x in data.users.ids[u_sel]],
        "items": [_py(x) for x in data.items.ids[i_sel]],
        "titles": [titles[i] for i in i_sel],
        "observed": [[None if np.isnan(v) else float(v) for v in row] for row in R],
        "predicted": np.round(predicted, 3).tolist(),
        "held_out": held.tolist(),
        "rmse_train": round(result.rmse, 4),
        "rmse_held_out": rmse_held,
        "density": round(float((~np.isnan(R)).mean()), 4),
        "scale": list(data.rating_scale or (1.0, 5.0)),
        "explicit": bool(data.explicit),
        "ms": round(result.seconds * 1000, 2),
    }


# ---------------------------------------------------------------------- explorer
@router.get("/lab/api/datasets", tags=["lab"])
def datasets(request: Request) -> list[dict[str, Any]]:
    """Data sets the explorer offers (synthetic always; ML-100K when $TASTEBUD_DATA has it)."""
    state = get_state(request)
    labels = {"synthetic": "Synthetic (built in)", "ml-100k": "MovieLens 100K"}
    return [{"name": n, "label": labels.get(n, n)} for n in state.dataset_names()]


@router.get("/lab/api/models", tags=["lab"])
def models(request: Request, dataset: str | None = None) -> list[dict[str, Any]]:
    """Models the lab can train (name, whether they take a history, whether they are slow)."""
    return get_state(request).model_info(dataset)


@router.get("/lab/api/users", tags=["lab"])
def users(request: Request, dataset: str = "synthetic", limit: int = Query(300, ge=1, le=5000)) -> dict[str, Any]:
    """The most active users first, with their number of interactions."""
    ds = get_state(request).dataset(dataset)
    counts = ds.data.user_counts()
    order = np.argsort(-counts, kind="stable")[:limit]
    return {
        "info": _jsonable(ds.data.info()),
        "label": ds.label,
        "users": [{"user": _py(ds.data.users.ids[u]), "count": int(counts[u])} for u in order],
    }


@router.get("/lab/api/items", tags=["lab"])
def items(
    request: Request, dataset: str = "synthetic", q: str = "", limit: int = Query(40, ge=1, le=2000)
) -> list[dict[str, Any]]:
    """The most popular items, optionally those whose title contains ``q``."""
    ds = get_state(request).dataset(dataset)
    order = np.argsort(-ds.popularity(), kind="stable")
    titles = ds.titles()
    needle = q.strip().lower()
    out = []
    for i in order:
        if needle and needle not in titles[i].lower() and needle != str(ds.data.items.ids[i]).lower():
            continue
        out.append(ds.item_record(int(i)))
        if len(out) >= limit:
            break
    return out


@router.get("/lab/api/history", tags=["lab"])
def history(
    request: Request, user: str, dataset: str = "synthetic", limit: int = Query(50, ge=1, le=2000)
) -> dict[str, Any]:
    """A user's items: title, genres and rating (best first)."""
    ds = get_state(request).dataset(dataset)
    return _history(ds, user, limit)


def _history(ds: Dataset, user: Any, limit: int) -> dict[str, Any]:
    uidx = int(ds.data.users.index([user], "user")[0])
    row = ds.data.matrix[uidx]
    order = np.lexsort((row.indices, -row.data))[:limit]
    entries = []
    for j in order:
        rec = ds.item_record(int(row.indices[j]))
        rec["rating"] = float(row.data[j])
        entries.append(rec)
    return {
        "user": _py(ds.data.users.ids[uidx]),
        "total": int(row.nnz),
        "explicit": bool(ds.data.explicit),
        "items": entries,
    }


class RecommendRequest(BaseModel):
    dataset: str = "synthetic"
    user: str | int
    models: list[str] = Field(min_length=1, max_length=30)
    k: int = Field(10, ge=1, le=100)


@router.post("/lab/api/recommend", tags=["lab"])
def recommend(request: Request, body: RecommendRequest) -> dict[str, Any]:
    """Recommendations for one user from several models, with scores and explanations."""
    state = get_state(request)
    names = state.check_models(body.dataset, body.models)
    ds = state.dataset(body.dataset)
    uidx = int(ds.data.users.index([body.user], "user")[0])
    had = ds.data.matrix[uidx].indices
    results = []
    for name in names:
        model, error, fit_s = state.fitted(body.dataset, name)
        entry: dict[str, Any] = {"model": name, "fit_s": round(fit_s, 3), "error": error, "items": []}
        if model is not None:
            recs, err = catch(lambda m=model: m.recommend([body.user], k=body.k, explain=True))
            entry["error"] = err
            if recs is not None:
                entry["items"] = _rec_items(ds, recs, 0, had)
                entry["score_kind"] = _score_kind(entry["items"], model)
        results.append(entry)
    user = _py(ds.data.users.ids[uidx])  # the vocabulary's id: 1, not "1", for an integer vocabulary
    return {"dataset": body.dataset, "user": user, "results": results, "overlap": _overlap(results)}


class ColdStartRequest(BaseModel):
    dataset: str = "synthetic"
    items: list[str | int] = Field(min_length=1, max_length=200)
    models: list[str] | None = Field(None, max_length=30)
    k: int = Field(10, ge=1, le=100)


@router.post("/lab/api/cold_start", tags=["lab"])
def cold_start(request: Request, body: ColdStartRequest) -> dict[str, Any]:
    """A new person picks items; every model that folds in a history recommends at once."""
    state = get_state(request)
    ds = state.dataset(body.dataset)
    info = {m["name"]: m for m in state.model_info(body.dataset)}
    if body.models is None:
        names = [n for n, m in info.items() if m["supports_history"] and not m["heavy"]]
    else:
        names = state.check_models(body.dataset, body.models)
    had = ds.data.items.index(list(body.items), "item")
    results = []
    for name in names:
        model, error, fit_s = state.fitted(body.dataset, name)
        entry: dict[str, Any] = {"model": name, "fit_s": round(fit_s, 3), "error": error, "items": []}
        if model is not None:
            if not model.supports_history:
                entry["error"] = f"{name} cannot recommend from a history without refitting"
            else:
                top = (
                    (model.rating_scale_[1] if getattr(model, "rating_scale_", None) else 1.0)
                    if model.predicts_ratings
                    else 1.0
                )
                values = [top] * len(body.items)
                recs, err = catch(
                    lambda m=model, v=values: m.recommend_for_history(list(body.items), v, k=body.k, explain=True)
                )
                entry["error"] = err
                if recs is not None:
                    entry["items"] = _rec_items(ds, recs, 0, had)
                    entry["score_kind"] = _score_kind(entry["items"], model)
                    entry["warnings"] = recs.warnings
        results.append(entry)
    picked = [ds.item_record(int(i)) for i in had]
    return {"dataset": body.dataset, "picked": picked, "results": results, "overlap": _overlap(results)}


@router.get("/lab/api/similar", tags=["lab"])
def similar(
    request: Request,
    item: str,
    dataset: str = "synthetic",
    models: list[str] = Query(default_factory=list),
    k: int = Query(10, ge=1, le=100),
) -> dict[str, Any]:
    """Items similar to ``item`` according to each model (those without similarity say so)."""
    state = get_state(request)
    ds = state.dataset(dataset)
    idx = int(ds.data.items.index([item], "item")[0])
    names = state.check_models(dataset, models or [m["name"] for m in state.model_info(dataset) if m["default"]])
    results = []
    for name in names:
        model, error, fit_s = state.fitted(dataset, name)
        entry: dict[str, Any] = {"model": name, "fit_s": round(fit_s, 3), "error": error, "items": []}
        if model is not None:
            recs, err = catch(lambda m=model: m.similar_items([ds.data.items.ids[idx]], k=k))
            entry["error"] = err
            if recs is not None:
                entry["items"] = _rec_items(ds, recs, 0)
                entry["score_kind"] = _score_kind(entry["items"], None, "similarity")
        results.append(entry)
    return {"dataset": dataset, "item": ds.item_record(idx), "results": results}


@router.get("/lab/api/embedding", tags=["lab"])
def embedding(
    request: Request, dataset: str = "synthetic", source: str = "svd", limit: int = Query(500, ge=10, le=5000)
) -> dict[str, Any]:
    """Item vectors projected to 2-D by PCA, coloured by genre (the ``limit`` most rated items).

    Sources: ``svd`` (the user x item matrix's leading singular vectors: always there), ``genres``
    (content vectors: genre indicators and release year), and ``model:NAME`` for each fitted
    model that keeps an item factor matrix.
    """
    state = get_state(request)
    ds = state.dataset(dataset)
    sources = [{"name": "svd", "label": "Co-occurrence (SVD of the user x item matrix)"}]
    genres = ds.genres()
    if any(genres):
        sources.append({"name": "genres", "label": "Content (genres and year)"})
    models = {}
    for d, name, model in state.fitted_models():
        if d == dataset:
            found = item_vectors(model)
            if found is not None:
                models[f"model:{name}"] = found
                sources.append(
                    {"name": f"model:{name}", "label": f"{name} item factors ({found[0]}, {found[1].shape[1]} dims)"}
                )
    keep = np.sort(np.argsort(-ds.popularity(), kind="stable")[:limit])
    if source == "svd":
        if ds.svd_vectors is None:
            ds.svd_vectors = _svd_item_vectors(ds.data.matrix)
        vec = ds.svd_vectors[keep]
    elif source == "genres" and any(genres):
        vec = _content_vectors(ds, keep)
    elif source in models:
        vec = models[source][1][keep]
    else:
        raise LabError(f"unknown embedding source '{source}'; available: {', '.join(s['name'] for s in sources)}")
    xy = pca_2d(_unit_rows(vec))
    primary = [genres[i][0] if genres[i] else "(none)" for i in keep]
    names, counts = np.unique(primary, return_counts=True)
    top = [str(n) for n in names[np.argsort(-counts, kind="stable")][:9]]
    titles = ds.titles()
    points = [
        {
            "item": _py(ds.data.items.ids[i]),
            "title": titles[i],
            "genre": g if g in top else "Other",
            "genres": genres[i],
            "x": round(float(x), 4),
            "y": round(float(y), 4),
            "count": int(ds.popularity()[i]),
        }
        for i, g, (x, y) in zip(keep, primary, xy, strict=True)
    ]
    legend = top + (["Other"] if any(p["genre"] == "Other" for p in points) else [])
    return {"dataset": dataset, "source": source, "sources": sources, "legend": legend, "points": points}


class EvaluateRequest(BaseModel):
    dataset: str = "synthetic"
    models: list[str] = Field(min_length=1, max_length=30)
    k: int = Field(10, ge=1, le=50)


@router.post("/lab/api/evaluate", tags=["lab"])
def evaluate(request: Request, body: EvaluateRequest) -> dict[str, Any]:
    """Each model trained on the split's train part, scored on its test part (tastebud.eval)."""
    state = get_state(request)
    names = state.check_models(body.dataset, body.models)
    ds = state.dataset(body.dataset)
    start = time.perf_counter()
    results = [state.evaluation(body.dataset, name, body.k) for name in names]
    split = ds.split
    return {
        "dataset": body.dataset,
        "split": split.name,
        "k": body.k,
        "report": _jsonable(split.report),
        "results": results,
        "seconds": round(time.perf_counter() - start, 3),
    }


# ---------------------------------------------------------------------- helpers
def _rec_items(ds: Dataset, recs: Any, row: int, history: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Recommended items with title, genres, score, rank and explanation.

    ``history`` (item indices the person had) tells which explanation contributions are items:
    an explanation pairs ids of items, neighbour users or features, which integer vocabularies
    cannot tell apart by themselves.
    """
    out = []
    had = set() if history is None else {int(i) for i in history}
    ids = recs.items_of(row)
    scores = recs.scores_of(row)
    valid = np.nonzero(~np.isnan(recs.scores[row]))[0]
    expl = recs.explanations[row] if recs.explanations is not None else None
    idx = ds.data.items.lookup(ids)
    for rank, (item, score, i, col) in enumerate(zip(ids, scores, idx, valid, strict=True), start=1):
        rec = ds.item_record(int(i)) if i >= 0 else {"item": item, "title": str(item), "genres": [], "count": 0}
        rec["score"] = round(float(score), 4) if np.isfinite(score) else None
        rec["rank"] = rank
        if expl is not None:
            rec["explanation"] = _explanation(ds, expl[col], had)
        out.append(rec)
    return out


def _explanation(ds: Dataset, e: Explanation, history: set[int]) -> dict[str, Any]:
    contribs = []
    for cid, w in e.contributions[:5]:
        label = str(cid)
        j = int(ds.data.items.lookup([cid])[0])
        j = j if j in history else -1
        if j >= 0:
            label = ds.titles()[j]
        contribs.append({"id": _py(cid), "label": label, "weight": round(float(w), 4), "is_item": bool(j >= 0)})
    return {"text": e.text, "contributions": contribs}


def _score_kind(items: list[dict[str, Any]], model: Recommender | None, otherwise: str = "score") -> str:
    """How the page prints a list's scores: ``count`` (all whole numbers), ``rating`` (a rating model's
    scores inside its scale; a neighbour model's sums of similarities are not ratings) or ``otherwise``."""
    scores = [x["score"] for x in items if x["score"] is not None]
    if scores and all(float(v).is_integer() for v in scores):
        return "count"
    scale = getattr(model, "rating_scale_", None) if model is not None and model.predicts_ratings else None
    if scores and scale is not None and all(scale[0] <= v <= scale[1] for v in scores):
        return "rating"
    return otherwise


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero): the map's geometry is the cosine one that
    ``similar_items`` ranks by, and a popular item's long vector no longer pulls the rest into a corner."""
    X = np.asarray(vectors, np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def _overlap(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Pairwise Jaccard overlap of the models' lists (1 = the same items)."""
    names = [r["model"] for r in results]
    sets = [{str(x["item"]) for x in r["items"]} for r in results]
    matrix = [[(len(a & b) / len(a | b)) if (a | b) else None for b in sets] for a in sets]
    return {"models": names, "jaccard": [[None if v is None else round(v, 3) for v in row] for row in matrix]}


def _svd_item_vectors(matrix: sp.csr_matrix, dims: int = 16) -> np.ndarray:
    from scipy.sparse.linalg import svds

    m = sp.csr_matrix(matrix, dtype=np.float64)
    d = max(1, min(dims, min(m.shape) - 1))
    _, s, vt = svds(m, k=d, random_state=0, v0=np.ones(min(m.shape)))
    return (vt.T * s)[:, ::-1]


def _content_vectors(ds: Dataset, keep: np.ndarray) -> np.ndarray:
    genres = ds.genres()
    vocab = sorted({g for i in keep for g in genres[i]})
    col = {g: j for j, g in enumerate(vocab)}
    X = np.zeros((len(keep), len(vocab) + 1))
    for r, i in enumerate(keep):
        for g in genres[i]:
            X[r, col[g]] = 1.0 / np.sqrt(len(genres[i]))
    feats = ds.data.item_features
    if feats is not None and "year" in feats.columns:
        year = feats["year"].reindex(ds.data.items.ids[keep]).astype("float64").to_numpy(na_value=np.nan)
        if np.isfinite(year).any():
            year = np.where(np.isfinite(year), year, np.nanmean(year))
            X[:, -1] = (year - year.mean()) / (year.std() or 1.0) * 0.3
    # a deterministic nudge separates items with identical genre sets, which would overlap exactly
    X[:, : len(vocab)] += np.random.default_rng(0).normal(0, 0.04, (len(keep), len(vocab)))
    return X


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def create_lab_app(models_dir: str | None = None, *, state: LabState | None = None) -> FastAPI:
    """A stand-alone lab: the page at ``/`` (and ``/lab/``) and its API under ``/lab/api``.

    ``models_dir`` is a saved model folder (or a folder of them) to show beside the models the lab
    trains itself; ``state`` lets tests pass a smaller configuration.
    """
    app = FastAPI(title="tastebud lab", summary="See recommendation at work", version=_version())
    app.state.tastebud_lab = state if state is not None else LabState(models_dir)
    if state is None and models_dir is not None:
        app.state.tastebud_lab.saved_models()  # a bad folder fails at start, not on first click
    app.include_router(router)

    @app.exception_handler(StarletteHTTPException)
    async def _no_route(request: Request, exc: StarletteHTTPException) -> Response:
        # unknown paths and methods never reach a lab route: the app answers them in the same shape
        return error_response(exc) or JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return _page()

    return app


def _version() -> str:
    from tastebud import __version__

    return __version__
