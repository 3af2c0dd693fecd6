"""The models bench_serve.py serves, built once and cached: a trained iALS model with its HNSW index
(issue #21) and a LightGBM ranker (issue #23).

Why trained factors: an index's recall depends on the geometry of the vectors it holds, so recall
over made-up vectors says nothing about the vectors a fitted model serves. The iALS model here is
fitted on a synthetic implicit data set with latent structure (``tastebud.data.synthetic``) the
size of the benchmark's catalogue; a few thousand generated people are held out of the fit, and
five of their items are the new-person histories the service folds in (``POST /recommendations``).

Recall is measured through the service's own engine (``tastebud.serve.engine.Engine``, the code
behind the HTTP routes, without HTTP) against exact ranking of the same vectors by the library
(``rank_rows`` / ``rank_history_idx``). efSearch is chosen on one set of people and recall is
reported on another, disjoint one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench_index import CACHE, recall

USER_PREFIX, ITEM_PREFIX = "u", "i"  # tastebud.data.synthetic's ids: "u0".., "i0"..
HISTORY_LENGTH = 5
EF_GRID = (64, 128, 256, 384, 512, 768, 1024)
TARGET_RECALL = 0.95
RANKER_RETRIEVERS = {"ease": {}, "ials": {}, "itemknn": {}, "rp3beta": {}, "popular": {}}


# The HNSW graphs tried, by geometry: on inner product directly, or with the vectors lifted to an
# equivalent L2 problem (tastebud.index.faiss, the default for HNSW). Which recalls more depends on
# the vectors: the lift wins on bench_index.py's synthetic clusters; trained iALS factors, whose
# norms spread widely (popular items are long vectors), may favour the other.
GEOMETRIES = {"inner product": False, "lifted to L2": True}


@dataclass
class IalsSetup:
    """What the iALS part of the benchmark serves and asks: the fitted model, an HNSW index per
    geometry, the held-out people's histories (item indices, one array each) and how long each
    step took."""

    model: Any
    indexes: dict[str, Any]
    histories: list[np.ndarray]
    info: dict[str, Any]


def synthetic_plays(
    n_items: int, n_users: int, n_interactions: int, held_out: int, seed: int = 0
) -> tuple[Any, list[np.ndarray]]:
    """Implicit plays of ``n_users`` people (the training data) and the item indices of
    ``held_out`` more people drawn from the same tastes but left out of it."""
    from tastebud.data.idmap import IdMap
    from tastebud.data.interactions import Interactions
    from tastebud.data.synthetic import generate

    total = n_users + held_out
    data = generate(
        total, n_items, int(n_interactions * total / n_users), factors=16, explicit=False, features=False,
        random_state=seed,
    )  # fmt: skip
    expected = np.char.add(USER_PREFIX, np.arange(total).astype(str))
    if not (data.users.ids.astype(str) == expected).all():
        raise RuntimeError("the generator's user ids are not u0..uN in index order; the wrk scripts assume so")
    keep = data.user_idx < n_users
    train = Interactions(
        IdMap(data.users.ids[:n_users], data.users.name), data.items, data.user_idx[keep], data.item_idx[keep],
        data.values[keep], data.timestamps[keep], explicit=False,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    rest = np.nonzero(~keep)[0]
    order = rest[np.argsort(data.user_idx[rest], kind="stable")]
    bounds = np.searchsorted(data.user_idx[order], np.arange(n_users, total + 1))
    histories = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        items = np.unique(data.item_idx[order[a:b]])
        if len(items) >= HISTORY_LENGTH:
            histories.append(np.sort(rng.choice(items, HISTORY_LENGTH, replace=False)).astype(np.int64))
    return train, histories


def params_key(model: Any, *more: Any) -> str:
    """A short hash of every parameter (defaults included) of ``model`` and of ``more``: a cache
    folder built under other settings, e.g. before a default changed, is never reused."""
    text = json.dumps([model.get_params(), *more], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ials_setup(
    n_items: int, n_users: int, n_interactions: int, *, factors: int, epochs: int, ef_construction: int,
    held_out: int, seed: int = 0,
) -> IalsSetup:  # fmt: skip
    """The fitted iALS model and its HNSW indexes, from the cache when an earlier run built them
    (the fit and the graph cost minutes at 1M items); a folder is complete once its info.json is."""
    from tastebud.core.base import Recommender
    from tastebud.core.registry import get_model
    from tastebud.index import load_index, make_index

    unfitted = get_model("ials")(factors=factors, epochs=epochs, random_state=seed)
    folder = CACHE / (
        f"serve-ials-{n_items}i-{n_users}u-{n_interactions}x-{held_out}h-efc{ef_construction}-{params_key(unfitted)}"
    )
    info_file = folder / "info.json"
    if info_file.is_file():
        info = {**json.loads(info_file.read_text()), "cached": True}
        with np.load(folder / "histories.npz", allow_pickle=False) as z:
            histories = np.split(z["items"], z["bounds"][1:-1])
        indexes = {g: load_index(folder / f"index-{n}") for n, g in enumerate(GEOMETRIES)}
        return IalsSetup(Recommender.load(folder / "model"), indexes, histories, info)
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    train, histories = synthetic_plays(n_items, n_users, n_interactions, held_out, seed)
    generate_s = time.perf_counter() - t
    t = time.perf_counter()
    model = unfitted.fit(train)
    fit_s = time.perf_counter() - t
    indexes, build_s = {}, {}
    for geometry, lifted in GEOMETRIES.items():
        t = time.perf_counter()
        index = make_index("HNSW32", ef_construction=ef_construction, euclidean=lifted)
        indexes[geometry] = index.build(model.item_factors_)
        build_s[geometry] = time.perf_counter() - t
    counts = np.bincount(train.item_idx, minlength=train.n_items)
    info = {
        "interactions": len(train),
        "users": train.n_users,
        "items": train.n_items,
        "items_with_plays": float((counts > 0).mean()),
        "generate_s": generate_s,
        "fit_s": fit_s,
        "build_s": build_s,
        "threads": os.cpu_count(),
        "params": model.get_params(),
    }
    model.save(folder / "model")
    for n, index in enumerate(indexes.values()):
        index.save(folder / f"index-{n}")
    lengths = np.array([len(h) for h in histories], np.int64)
    np.savez(
        folder / "histories.npz", items=np.concatenate(histories), bounds=np.concatenate([[0], np.cumsum(lengths)])
    )
    tmp = info_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, info_file)
    return IalsSetup(model, indexes, histories, info)


def serving_engine(model: Any, index: Any | None) -> Any:
    """The service's engine over ``model`` (from ``index`` when given), as `tastebud serve` builds it from the registry."""
    from tastebud.serve.engine import Engine

    indexes = {model.name: index} if index is not None else None
    engine = Engine({model.name: model}, serving_policy(model.name), "bench", indexes=indexes)
    if index is not None and engine.served[model.name].index is None:
        raise RuntimeError(f"the engine does not serve '{model.name}' from the index")
    return engine


def serving_policy(name: str) -> Any:
    """Every person with a history goes to ``name`` (no short-history path): what the benchmark serves."""
    from tastebud.serve.engine import PolicyConfig

    return PolicyConfig(collaborative=[name], short_history=0)


def exact_lists(model: Any, users: np.ndarray, histories: list[np.ndarray], k: int = 10) -> dict[str, np.ndarray]:
    """The library's exact top-k of the same vectors, training items excluded: what the index should return."""
    exact_users, _ = model.rank_rows(users, k, exclude_seen=True)
    return {"users": exact_users, "histories": np.stack([model.rank_history_idx(h, None, k)[0] for h in histories])}


def engine_recall(
    engine: Any, model: Any, users: np.ndarray, histories: list[np.ndarray], exact: dict[str, np.ndarray], k: int = 10
) -> dict[str, float]:
    """recall@k of the engine's lists (known users by id; histories by item id, as the HTTP routes
    pass them) against :func:`exact_lists` of the same queries."""
    got_users = [model.items_.lookup(engine.recommend_user(u, k=k).items) for u in model.users_.ids[users]]
    got_hist = [
        model.items_.lookup(engine.recommend_history(model.items_.ids[h].tolist(), k=k).items) for h in histories
    ]
    return {
        "users": recall(_padded(got_users, k), exact["users"]),
        "histories": recall(_padded(got_hist, k), exact["histories"]),
    }


def _padded(rows: list[np.ndarray], k: int) -> np.ndarray:
    out = np.full((len(rows), k), -1, np.int64)
    for r, row in enumerate(rows):
        out[r, : len(row)] = row[:k]
    return out


def choose_index(
    model: Any, indexes: dict[str, Any], users: np.ndarray, histories: list[np.ndarray]
) -> tuple[str, int, list[dict]]:
    """(geometry, efSearch) to serve, chosen on these (tuning) queries: per geometry the smallest
    efSearch of :data:`EF_GRID` whose recall@10 reaches :data:`TARGET_RECALL` for both kinds of
    query, then the geometry with the smaller one; when none reaches it, the best worst-kind recall.
    Also every setting tried, in order."""
    exact = exact_lists(model, users, histories)
    tried = []
    for geometry, index in indexes.items():
        engine = serving_engine(model, index)
        for ef in EF_GRID:
            index.ef_search = ef
            tried.append(
                {"geometry": geometry, "ef_search": ef, **engine_recall(engine, model, users, histories, exact)}
            )
            if min(tried[-1]["users"], tried[-1]["histories"]) >= TARGET_RECALL:
                break
    reached = [t for t in tried if min(t["users"], t["histories"]) >= TARGET_RECALL]
    best = (
        min(reached, key=lambda t: t["ef_search"])
        if reached
        else max(tried, key=lambda t: min(t["users"], t["histories"]))
    )
    return best["geometry"], best["ef_search"], tried


# ---------------------------------------------------------------------------- the ranker (#23)
def ranker_setup(
    data_name: str, candidates: int, synthetic: tuple[int, int, int] = (2000, 1000, 60_000), seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """A ranker over :data:`RANKER_RETRIEVERS` fitted on ``data_name`` ("ml-100k", or "synthetic":
    ``synthetic`` = people, items, interactions), cached like the iALS model; and what it was
    fitted on and how long it took."""
    from tastebud.core.base import Recommender
    from tastebud.core.registry import get_model

    size = "" if data_name == "ml-100k" else "-" + "x".join(map(str, synthetic))
    unfitted = get_model("ranker")(retrievers=RANKER_RETRIEVERS, candidates=candidates, random_state=seed)
    retrievers = {name: get_model(name)(**params).get_params() for name, params in RANKER_RETRIEVERS.items()}
    folder = CACHE / f"serve-ranker-{data_name}{size}-{params_key(unfitted, retrievers)}"
    info_file = folder / "info.json"
    if info_file.is_file():
        return Recommender.load(folder / "model"), {**json.loads(info_file.read_text()), "cached": True}
    if data_name == "ml-100k":
        from tastebud.data.movielens import load_ml100k

        data = load_ml100k()
    else:
        from tastebud.data.synthetic import generate

        data = generate(*synthetic, explicit=False, random_state=seed)
    t = time.perf_counter()
    model = unfitted.fit(data)
    info = {
        "data": data_name,
        "users": data.n_users,
        "items": data.n_items,
        "interactions": len(data),
        "fit_s": time.perf_counter() - t,
        "trees": model.trees_,
    }
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model")
    tmp = info_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, info_file)
    return model, info


def profile_engine(engine: Any, users: list[Any], k: int = 10, top: int = 10) -> dict[str, list[dict[str, Any]]]:
    """cProfile of ``engine.recommend_user`` over ``users``, per request: the functions with the
    most own time (``"own"``: the hot spots) and tastebud's functions with the most time inside
    them (``"tastebud"``: which step of the serving path spends it)."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    for u in users:
        engine.recommend_user(u, k=k)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values()) or 1.0

    def row(key: tuple[str, int, str], value: tuple) -> dict[str, Any]:
        (file, line, name), (_, calls, own, cum, _) = key, value
        where = file.split("src/tastebud/")[-1] if "src/tastebud/" in file else Path(file).name
        return {
            "function": f"{where}:{line} {name}",
            "calls / request": calls / len(users),
            "own ms / request": own / len(users) * 1e3,
            "cumulative ms / request": cum / len(users) * 1e3,
            "share of own time": own / total,
        }

    own = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]
    ours = [kv for kv in stats.items() if "src/tastebud/" in kv[0][0]]
    cumulative = sorted(ours, key=lambda kv: -kv[1][3])[:top]
    return {"own": [row(*kv) for kv in own], "tastebud": [row(*kv) for kv in cumulative]}
