"""Serving under load: wrk against a real `tastebud serve --workers 2` on 127.0.0.1, 1M-item catalogue.

The served model is an iALS model *trained* on a synthetic implicit data set with latent structure
at the catalogue's size (1M items, 100k people, 10M plays, 64 factors; issue #21), built and cached
by serve_models.py together with its HNSW index (M=32, efConstruction=200). Known users are
answered from the index; a new person's history is folded in by iALS's exact least-squares solve
(``history_vector``) and the index is searched with that vector.

Before the load runs, the index's recall@10 is measured through the service's engine against the
library's exact ranking of the same vectors, for known users and for five-item histories of people
held out of the fit; efSearch is chosen on a tuning set of queries and recall reported on another.

Then the machine's own latency noise is measured (``machine_noise``: short units of pure-Python
work, nothing else running), then the runs (wrk, one thread; each bounded to ``--seconds``):

1. GET /users/{id}/recommendations, random known users, paced at the target 500 req/s (16
   connections with exponential think times: close to Poisson arrivals);
2. the same, unpaced (8 connections: the most this machine serves);
3. the paced and the unpaced run again while POST /admin/reload swaps the version;
4. POST /recommendations from a held-out person's five-item history, paced and unpaced;
5. POST /events, one event per request, unpaced; afterwards every acknowledged event is counted
   in the SQLite store (none may be missing);
6. (``--part ranker``, its own section ``ranker_serve``) a LightGBM ranker (500 candidates per
   retriever, fitted on ML-100K) served alone, GET /users/{id}/recommendations?k=10 paced to 50
   req/s (issue #23), with a cProfile of the engine call; once from the retrievers' exact lists and
   once with iALS's candidates from an HNSW index published with the version.

Beside wrk's latency each row shows the latency inside the app, from the service's own histogram
(GET /metrics, which counts every worker), so the time spent outside it can be read off.

    python benchmarks/bench_serve.py [--seconds 15]     # both sections (fits and graph cached after the first run)
    python benchmarks/bench_serve.py --part ranker      # the ranker's section alone (needs no 1M-item graph)
    python benchmarks/bench_serve.py --quick            # smoke test at 50k items, writes nothing

Needs `wrk` (Debian: apt-get install -y wrk). The server and wrk share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, markdown_table, write_section  # noqa: E402
from serve_models import (  # noqa: E402
    EF_GRID,
    GEOMETRIES,
    ITEM_PREFIX,
    RANKER_RETRIEVERS,
    TARGET_RECALL,
    USER_PREFIX,
    choose_index,
    engine_recall,
    exact_lists,
    ials_setup,
    profile_engine,
    ranker_setup,
    serving_engine,
    serving_policy,
)
from tastebud.serve.fleet import POLL_SECONDS  # noqa: E402

TOKEN = "bench-token"
USERS_ROUTE = "/users/{user_id}/recommendations"
FACTORS = 64
EF_CONSTRUCTION = 200  # a well-built graph reaches recall@10 >= 0.95 at a small efSearch


# The code each section measures (besides common.COMMON_PATHS); make bench-check reads it from the stamp.
MEASURES = [
    "benchmarks/serve_models.py",
    "benchmarks/bench_index.py",  # recall() and the cache folder
    "src/tastebud/serve",
    "src/tastebud/index",
    "src/tastebud/models/ials.py",
    "src/tastebud/kernels/ials.py",
    "src/tastebud/models/_common.py",
]
RANKER_MEASURES = [
    "benchmarks/serve_models.py",
    "benchmarks/bench_index.py",  # the cache folder
    "src/tastebud/serve",
    "src/tastebud/index",  # iALS's candidates from HNSW in the second version
    "src/tastebud/models/ranker.py",
    "src/tastebud/kernels/trees.py",
    # the ranker's retrievers, asked for their candidates on every request
    "src/tastebud/models/ease.py",
    "src/tastebud/models/ials.py",
    "src/tastebud/kernels/ials.py",
    "src/tastebud/models/knn.py",
    "src/tastebud/models/_item_item.py",
    "src/tastebud/models/rp3beta.py",
    "src/tastebud/models/baseline.py",
    "src/tastebud/kernels/knn.py",
    "src/tastebud/models/_common.py",
]


def publish_versions(root: Path, model: Any, index: Any, versions: int = 2) -> None:
    """A registry whose versions (v0001, v0002, ...) all serve ``model`` from ``index`` (a second
    version is there for the hot reload)."""
    from tastebud.serve.registry import ModelRegistry

    reg = ModelRegistry(root)
    indexes = [model.name] if index is not None else []
    for _ in range(versions):
        stage = reg.stage()
        model.save(stage / "models" / model.name)
        if index is not None:
            index.save(stage / "index" / model.name)
        spec = {
            "models": [model.name],
            "policy": serving_policy(model.name).to_dict(),
            "indexes": indexes,
            "events_through_seq": 0,
        }
        reg.publish(stage, spec, make_current=False)
    reg.set_current("v0001")


def build_registry(root: Path, n_items: int, n_users: int = 100_000) -> None:
    """bench_reload.py's registry: two versions of an iALS model whose 1M-item factors are made up
    (bench_index.py's vectors, its cached HNSW graph at efConstruction 200, efSearch 256). A reload
    costs the same whatever the factors hold; this one needs no fit."""
    import scipy.sparse as sp

    from bench_index import cached_hnsw, synthetic_factors
    from tastebud.core.registry import get_model
    from tastebud.data.idmap import IdMap

    users, items = synthetic_factors(n_items, n_users)
    index, _ = cached_hnsw(items, ef_construction=EF_CONSTRUCTION)  # built once; bench_index.py shares the cache
    index.ef_search = 256
    model = get_model("ials")(factors=users.shape[1])
    rng = np.random.default_rng(5)
    model.users_, model.items_ = IdMap(np.arange(n_users)), IdMap(np.arange(n_items))
    rows = np.repeat(np.arange(n_users), 10)
    model.user_items_ = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, rng.integers(0, n_items, len(rows)))), shape=(n_users, n_items)
    )
    model.user_factors_, model.item_factors_ = users, items
    publish_versions(root, model, index)


# ---------------------------------------------------------------------------- wrk
LUA_COMMON = r"""
local threads = {}
function setup(thread) thread:set("tid", #threads) table.insert(threads, thread) end
function init(args)
  acked = 0; sent = 0
  math.randomseed(os.time() + tid * 7919)
  pace = tonumber(args[1]) or 0
  tag = args[2] or "run"
end
-- think time between a connection's requests: exponential with mean `pace` ms, so the
-- connections drift apart like independent people instead of firing in lockstep bursts
function delay()
  if pace <= 0 then return 0 end
  return math.floor(-math.log(1 - math.random()) * pace + 0.5)
end
function response(status, headers, body) if status >= 200 and status < 300 then acked = acked + 1 end end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("acked") end
  io.write(string.format("ACKED %%d\n", total))
end
"""

LUA_USERS = (
    LUA_COMMON
    + r"""
function request()
  return wrk.format("GET", "/users/%(user_prefix)s" .. math.random(0, %(n_users)d - 1) .. "/recommendations?k=10")
end
"""
)

# the people of a small catalogue, by id (a table: their ids need not follow a pattern)
LUA_USER_IDS = (
    LUA_COMMON
    + r"""
local ids = {%(ids)s}
function request()
  return wrk.format("GET", "/users/" .. ids[math.random(1, #ids)] .. "/recommendations?k=10")
end
"""
)

# held-out people's five-item histories, one ready JSON body each
LUA_HISTORY = (
    LUA_COMMON
    + r"""
local bodies = {%(bodies)s}
function request()
  return wrk.format("POST", "/recommendations", {["Content-Type"] = "application/json"}, bodies[math.random(1, #bodies)])
end
"""
)

LUA_EVENTS = (
    LUA_COMMON
    + r"""
function request()
  sent = sent + 1
  local body = string.format('{"user": "listener-%%d-%%d", "item": "%(item_prefix)s%%d", "event_id": "%%s-%%d-%%d"}',
    tid, sent %% 5000, math.random(0, %(n_items)d - 1), tag, tid, sent)
  return wrk.format("POST", "/events", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(token)s"}, body)
end
"""
)


def lua_strings(values: list[str]) -> str:
    """A Lua table body of string literals (long brackets: no escaping of JSON quotes)."""
    return ", ".join(f"[[{v}]]" for v in values)


def run_wrk(
    port: int, lua: str, seconds: int, connections: int, pace_ms: int = 0, tag: str = "run", route: str | None = None
) -> dict:
    """One wrk run; with ``route``, also the run's latency inside the app, from the service's own
    histogram (``in_app_p50`` / ``in_app_p99``: the bucket bounds, in ms, that hold them)."""
    before = latency_buckets(port, route) if route else {}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(lua)
        script = fh.name
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        script,
        f"http://127.0.0.1:{port}",
        "--",
        str(pace_ms),
        tag,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    os.unlink(script)
    result = parse_wrk(out)
    if route:
        time.sleep(2.5 * POLL_SECONDS)  # every worker has published its counts (serve/fleet.py)
        after = latency_buckets(port, route)
        result.update(in_app_p50=bucket_quantile(before, after, 0.5), in_app_p99=bucket_quantile(before, after, 0.99))
    return result


BUCKET_LINE = re.compile(r'^tastebud_request_seconds_bucket\{route="(?P<route>.*?)",le="(?P<le>.*?)"\} (?P<n>\S+)$')


def latency_buckets(port: int, route: str) -> dict[float, float]:
    """The fleet's cumulative latency histogram of ``route`` from GET /metrics: bound (s) -> count."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    found = (BUCKET_LINE.match(line) for line in text.splitlines())
    return {float(m["le"]): float(m["n"]) for m in found if m and m["route"] == route}


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound (ms) of the bucket that holds quantile ``q`` of the requests counted between
    two scrapes (nan when none were)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return float("nan")
    return next(b for b, c in zip(bounds, counts, strict=True) if c >= q * counts[-1]) * 1000


def parse_wrk(out: str) -> dict:
    def ms(text: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", text)
        if not m:
            return float("nan")
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    res = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    res["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[f"p{pct}"] = ms(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(map(int, m.groups())) if m else 0
    m = re.search(r"ACKED (\d+)", out)
    res["acked"] = int(m.group(1)) if m else 0
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, timeout: float = 600) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError("server did not start")


# The machine's own latency noise: 1.5 ms units of pure-Python work separated by random pauses
# (mean 3 ms), one process per core and nothing else running. On a quiet machine every unit takes
# about 1.5 ms; a unit that takes 15 ms met a stall outside tastebud (a virtual CPU not running),
# and a request meeting such a stall waits as long.
NOISE_PROBE = r"""
import json, random, sys, time
def work(n):
    s = 0
    for i in range(n):
        s += i * i
    return s
t = time.perf_counter(); work(20000); n = max(1, int(20000 * 0.0015 / (time.perf_counter() - t)))
random.seed(int(sys.argv[2])); took = []; end = time.time() + float(sys.argv[1])
while time.time() < end:
    t = time.perf_counter(); work(n); took.append(time.perf_counter() - t)
    time.sleep(random.expovariate(1 / 0.003))
print(json.dumps(took))
"""


def machine_noise(seconds: float) -> dict[float, float]:
    """Percentiles (ms) of how long a 1.5 ms unit of work takes here (see NOISE_PROBE)."""
    procs = [
        subprocess.Popen([sys.executable, "-c", NOISE_PROBE, str(seconds), str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(os.cpu_count() or 1)
    ]
    took = np.concatenate([json.loads(p.communicate(timeout=seconds + 60)[0]) for p in procs]) * 1000
    return {q: float(np.percentile(took, q)) for q in (50, 99, 99.9)}


@contextmanager
def serving(root: Path, workers: int) -> Iterator[tuple[int, float]]:
    """`tastebud serve --model root --workers N` on a free port: yields (port, seconds to ready)."""
    port = free_port()
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tastebud", "serve", "--model", str(root), "--port", str(port)]
        + ["--workers", str(workers)],
        env=dict(os.environ, TASTEBUD_TOKEN=TOKEN),
    )
    try:
        wait_ready(port)
        yield port, time.perf_counter() - t
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def paced_think_ms(connections: int, rate: float, response_ms: float) -> int:
    """Mean think time per connection so that ``connections`` offer a little more than ``rate``
    req/s (6% above, so that the rate measured is at least the target) when a response takes
    ``response_ms``."""
    return max(0, round(connections * 1000 / (1.06 * rate) - response_ms))


def ials_runs(port: int, args: argparse.Namespace, fmt: dict[str, Any], conns: int, pace: int) -> tuple[list, str]:
    """The wrk runs against the iALS version: known users, hot reloads, histories, events."""
    import httpx

    rows = []
    run_wrk(port, LUA_USERS % fmt, 3, 4)  # warm-up
    r = run_wrk(port, LUA_USERS % fmt, args.seconds, conns, pace, route=USERS_ROUTE)
    rows.append({"run": f"GET /users/{{id}}/recommendations, paced to {args.target}/s", **r})
    r = run_wrk(port, LUA_USERS % fmt, args.seconds, 8, route=USERS_ROUTE)
    rows.append({"run": "GET /users/{id}/recommendations, unpaced (max)", **r})

    # a hot reload in the middle of a run, paced and unpaced (v0001 -> v0002, then back)
    def with_reload(version: str, pace_ms: int, connections: int) -> tuple[dict, dict]:
        info: dict = {}

        def do_reload() -> None:
            time.sleep(args.seconds / 3)
            t0 = time.perf_counter()
            resp = httpx.post(
                f"http://127.0.0.1:{port}/admin/reload",
                json={"version": version},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=300,
            )
            info.update(status=resp.status_code, seconds=time.perf_counter() - t0, version=resp.json().get("version"))

        th = threading.Thread(target=do_reload)
        th.start()
        res = run_wrk(port, LUA_USERS % fmt, args.seconds, connections, pace_ms, route=USERS_ROUTE)
        th.join()
        return res, info

    for label, version, pace_ms, connections in (("paced", "v0002", pace, conns), ("unpaced", "v0001", 0, 8)):
        r, info = with_reload(version, pace_ms, connections)
        took = info.get("seconds", float("nan"))
        rows.append(
            {
                "run": f"GET /users/{{id}}/recommendations, {label}, hot reload (took {took:.1f}s, -> {info.get('version')})",
                **r,
            }
        )
    r = run_wrk(port, LUA_HISTORY % fmt, args.seconds, conns, pace, route="/recommendations")
    rows.append({"run": f"POST /recommendations (5-item history), paced to {args.target}/s", **r})
    r = run_wrk(port, LUA_HISTORY % fmt, args.seconds, 8, route="/recommendations")
    rows.append({"run": "POST /recommendations (5-item history), unpaced (max)", **r})
    root = fmt["root"]
    tag = f"b{int(time.time())}"
    before = sqlite_count(root / "events.db")
    r = run_wrk(port, LUA_EVENTS % fmt, args.seconds, 32, 0, tag, route="/events")
    stored = sqlite_count(root / "events.db") - before
    rows.append({"run": "POST /events (1 event per request, unpaced)", **r})
    lost = max(0, r["acked"] - stored)
    verdict = "none lost" if lost == 0 else f"{lost} LOST"
    events_note = (
        f"POST /events: {r['acked']:,} events acknowledged (2xx), {stored:,} stored in the SQLite store afterwards "
        f"({verdict}); durable = WAL + synchronous=FULL, group commit."
    )
    return rows, events_note


def latency_frame(rows: list[dict]) -> pd.DataFrame:
    """wrk's and the app's latency per run, formatted for the section."""
    cols = ["run", "rps", "p50", "p90", "p99", "in_app_p50", "in_app_p99", "requests", "non2xx", "socket_errors"]
    frame = pd.DataFrame(rows)[cols]
    frame.columns = [
        "run", "req/s", "p50 ms", "p90 ms", "p99 ms", "in app: p50 ms", "in app: p99 ms", "requests", "non-2xx",
        "socket errors",
    ]  # fmt: skip
    for col in ("req/s", "p50 ms", "p90 ms", "p99 ms"):
        frame[col] = frame[col].map(lambda v: f"{v:,.1f}")
    for col in ("in app: p50 ms", "in app: p99 ms"):
        frame[col] = frame[col].map(lambda v: f"<= {v:g}")
    return frame


def in_process_latency(engine: Any, users: list[Any], k: int = 10) -> tuple[float, float]:
    """(p50, p99) ms of ``engine.recommend_user`` called in this process, one person at a time."""
    took = []
    for u in users:
        t = time.perf_counter()
        engine.recommend_user(u, k=k)
        took.append(time.perf_counter() - t)
    return float(np.percentile(took, 50) * 1e3), float(np.percentile(took, 99) * 1e3)


def profile_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """:func:`serve_models.profile_engine` rows, formatted for the section."""
    frame = pd.DataFrame(rows)
    frame["calls / request"] = frame["calls / request"].map(lambda v: f"{v:g}")
    for col in ("own ms / request", "cumulative ms / request"):
        frame[col] = frame[col].map(lambda v: f"{v:.2f}")
    frame["share of own time"] = frame["share of own time"].map(lambda v: f"{v:.0%}")
    return frame


def trees_vs_lightgbm(model: Any, users: np.ndarray, explained: int = 10) -> pd.DataFrame:
    """The ranker's compiled trees (``tastebud.kernels.trees``) against LightGBM on the same rows,
    one thread each, interleaved person by person (A B A B), after a warm-up person timed apart:
    the raw scores of a person's merged candidates, and the SHAP values of ``explained`` of them."""
    from tastebud.kernels import trees

    forest, booster = model._forest(), model._booster
    stats = model._stats()
    sides = {
        "scores of every candidate": (
            lambda X: trees.predict_raw(forest, X, threads=1),
            lambda X: booster.predict(X, raw_score=True, num_threads=1),
        ),
        f"SHAP values of {explained} candidates": (
            lambda X: trees.contributions(forest, X[:explained], threads=1),
            lambda X: booster.predict(X[:explained], pred_contrib=True, num_threads=1),
        ),
    }
    took: dict[tuple[str, str], list[tuple[float, float]]] = {}
    rows_seen = []
    for n, u in enumerate(users):
        X = model._matrix(model._batch(model.retrievers_fitted, stats, users=np.array([u])))
        rows_seen.append(len(X))
        for what, pair in sides.items():
            for side, fn in zip(("tastebud kernels/trees", "LightGBM"), pair, strict=True):
                wall, cpu = time.perf_counter(), time.process_time()
                fn(X)
                if n:  # the first person is the warm-up
                    took.setdefault((what, side), []).append((time.perf_counter() - wall, time.process_time() - cpu))
    out = []
    for (what, side), runs in took.items():
        wall, cpu = np.array(runs).T * 1e3
        other = np.array(took[(what, "LightGBM")]).T[0] * 1e3
        ratio = wall / other
        out.append({
            "work": what, "side": side, "threads": 1,
            "wall ms, median (min-max)": f"{np.median(wall):.2f} ({wall.min():.2f}-{wall.max():.2f})",
            "CPU ms, median (min-max)": f"{np.median(cpu):.2f} ({cpu.min():.2f}-{cpu.max():.2f})",
            "wall / LightGBM's, per person": f"{np.median(ratio):.2f} ({ratio.min():.2f}-{ratio.max():.2f})",
            "people": len(runs),
        })  # fmt: skip
    frame = pd.DataFrame(out)
    frame.attrs["rows"] = int(np.median(rows_seen))
    return frame


def ranker_part(args: argparse.Namespace, work: Path) -> str:
    """Issue #23: a LightGBM ranker (``candidates`` per retriever) served by `tastebud serve`,
    GET /users/{id}/recommendations?k=10 paced to ``--ranker-rate``; with a profile of the engine
    call. Twice: the retrievers' exact lists (the rule below ``ann_min_items``), and iALS's
    candidates from an HNSW32 index published with the version (the path of a large catalogue)."""
    from tastebud.serve.engine import Engine, PolicyConfig
    from tastebud.serve.retrain import publish_version

    synthetic = (1000, 600, 25_000) if args.quick else (2000, 1000, 60_000)
    model, info = ranker_setup(args.ranker_data, args.candidates, synthetic)
    rng = np.random.default_rng(13)
    ids = model.users_.ids
    asked = list(rng.choice(ids, 200))
    setups = {
        "exact lists": serving_policy(model.name),
        "iALS from HNSW32": PolicyConfig(collaborative=[model.name], short_history=0, ann_min_items=1),
    }
    conns = 8
    lua = LUA_USER_IDS % {"ids": lua_strings([str(i) for i in ids])}
    runs, inside, lists, profile, kernels, pace, start_s = [], [], {}, {}, None, 0, {}
    for label, policy in setups.items():
        root = work / f"ranker-registry-{len(runs)}"
        publish_version(root, {model.name: model}, policy=policy)
        engine = Engine.load(root)
        for u in ids[:3]:
            engine.recommend_user(u, k=10)  # warm: compiled kernels, caches
        p50, p99 = in_process_latency(engine, asked)
        inside.append({"retrievers' candidates": label, "p50 ms": f"{p50:.1f}", "p99 ms": f"{p99:.1f}"})
        lists[label] = [engine.recommend_user(u, k=10).items for u in asked]
        if not runs:  # the profile and the trees' timing once, on the exact lists
            profile = profile_engine(engine, list(rng.choice(ids, 100)))
            kernels = trees_vs_lightgbm(model, rng.choice(model.n_users, 31, replace=False))
            pace = paced_think_ms(conns, args.ranker_rate, 1.5 * p50)  # HTTP and queueing add to the engine's time
        del engine
        with serving(root, args.workers) as (port, start_s[label]):
            run_wrk(port, lua, 3, 2)  # warm-up
            r = run_wrk(port, lua, args.ranker_seconds, conns, pace, route=USERS_ROUTE)
        r["run"] = f"ranker, {label}: GET /users/{{id}}/recommendations?k=10, paced to {args.ranker_rate}/s"
        runs.append(r)
    met = all(r["p99"] <= 50 and r["rps"] >= args.ranker_rate * 0.95 and not r["non2xx"] for r in runs)
    exact, approx = lists.values()
    overlap = np.mean([len(set(a) & set(e)) / max(1, len(e)) for a, e in zip(approx, exact, strict=True)])
    hot = {part: profile_table(rows) for part, rows in profile.items()}
    cached = " (fitted in an earlier run, cached)" if info.get("cached") else ""
    assert kernels is not None
    return f"""## Ranker serving latency (issue #23)

A `ranker` over {", ".join(RANKER_RETRIEVERS)} with `candidates={args.candidates}` per retriever (LightGBM
LambdaRank, {info["trees"]} trees, 1 thread) fitted on {info["data"]} ({info["users"]:,} users, {info["items"]:,}
items, {info["interactions"]:,} interactions) in {info["fit_s"]:.0f}s{cached}, published with `publish_version`
and served alone by `tastebud serve --workers {args.workers}`: known users, k=10, explanations included (the
route's default), {conns} connections with exponential think times (mean {pace} ms) for a rate a little above
{args.ranker_rate}/s. Target: p99 <= 50 ms on 2 cores ({"met" if met else "NOT met"}).

Two versions of the same model: the retrievers' exact lists (what the service does below
`ann_min_items`, {PolicyConfig().ann_min_items:,} items), and `ann_min_items=1`, which puts iALS, the
retriever whose scores are inner products, behind an HNSW32 index built at publish time
(`index/ranker/ials` in the version; the others have no vectors and keep their exact lists). That is
the path a large catalogue takes; on {info["items"]:,} items it costs more than it saves. The final
top-10 lists of the two agree on {overlap:.1%} of their items (the same 200 people).

{markdown_table(latency_frame(runs))}

In this process, one person at a time (200 people, no HTTP), `Engine.recommend_user`:

{markdown_table(pd.DataFrame(inside))}

Where the time of the exact lists goes (cProfile over 100 calls, per request), by tastebud's steps
(time inside each, callees included):

{markdown_table(hot["tastebud"])}

and the functions with the most time of their own (the hot spots):

{markdown_table(hot["own"])}

The booster runs through `tastebud.kernels.trees` (its raw scores and exact TreeSHAP values, equal
to LightGBM's to rounding); beside LightGBM on the same rows (a person's merged candidates, median
{kernels.attrs["rows"]} rows; the first person a warm-up, timed apart and left out), one thread each, the two
interleaved person by person:

{markdown_table(kernels)}

Server start {", ".join(f"{v:.0f}s ({k})" for k, v in start_s.items())}."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000, help="catalogue size (items)")
    parser.add_argument("--users", type=int, default=100_000, help="people in the training data")
    parser.add_argument("--interactions", type=int, default=10_000_000, help="plays in the training data")
    parser.add_argument("--epochs", type=int, default=8, help="iALS sweeps")
    parser.add_argument(
        "--ef-search",
        type=int,
        default=0,
        help="efSearch to serve with (0: geometry and efSearch chosen on tuning queries)",
    )
    parser.add_argument("--geometry", choices=list(GEOMETRIES), default="inner product", help="with --ef-search")
    parser.add_argument("--queries", type=int, default=1000, help="queries of each kind, tuning and reported apart")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--target", type=int, default=500, help="paced request rate")
    parser.add_argument("--workers", type=int, default=2, help="tastebud serve --workers (one per core)")
    parser.add_argument("--ranker-data", choices=("ml-100k", "synthetic"), default=None)
    parser.add_argument("--candidates", type=int, default=500, help="the ranker's candidates per retriever")
    parser.add_argument("--ranker-rate", type=int, default=50, help="paced request rate for the ranker")
    parser.add_argument("--ranker-seconds", type=int, default=45)
    parser.add_argument(
        "--part",
        choices=("all", "index", "ranker"),
        default="all",
        help="the 1M-item index section (serve), the ranker section (ranker_serve), or both",
    )
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 50k items, short runs, synthetic ranker data; implies --no-write",
    )
    args = parser.parse_args()
    if args.quick:
        args.n, args.users, args.interactions, args.epochs = 50_000, 10_000, 500_000, 5
        args.queries, args.seconds, args.ranker_seconds, args.no_write = 300, 5, 10, True
        args.ranker_data = args.ranker_data or "synthetic"
    if args.ranker_data is None:
        args.ranker_data = "ml-100k" if (DATA / "ml-100k" / "u.data").is_file() else "synthetic"
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")

    work = Path(tempfile.mkdtemp(prefix="tastebud-bench-serve-"))
    try:
        if args.part in ("all", "index"):
            body = index_part(args, work)
            if not args.no_write:
                write_section("serve", body, measures=MEASURES)
            print(body)
        if args.part in ("all", "ranker"):
            load = os.getloadavg()[0]
            body = ranker_part(args, work) + (
                f"\n\nReproduce: `python benchmarks/bench_serve.py --part ranker` (needs wrk). The load average "
                f"before the run was {load:.1f}; wrk and the server compete for the same {os.cpu_count()} cores."
            )
            if not args.no_write:
                write_section("ranker_serve", body, measures=RANKER_MEASURES)
            print(body)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def index_part(args: argparse.Namespace, work: Path) -> str:
    """Issue #21: the 1M-item iALS model behind its HNSW index, its recall and the wrk runs."""
    root = work / "registry"
    q = args.queries
    setup = ials_setup(
        args.n, args.users, args.interactions, factors=FACTORS, epochs=args.epochs, ef_construction=EF_CONSTRUCTION,
        held_out=int(2.2 * q), seed=0,
    )  # fmt: skip
    model, info = setup.model, setup.info
    if len(setup.histories) < 2 * q:
        sys.exit(f"only {len(setup.histories)} held-out histories for {2 * q} queries; lower --queries")
    people = np.random.default_rng(11).permutation(model.n_users)
    tune_users, report_users = people[:q], people[q : 2 * q]
    tune_hist, report_hist = setup.histories[:q], setup.histories[q : 2 * q]
    t = time.perf_counter()
    if args.ef_search:
        geometry, ef, tried = args.geometry, args.ef_search, []
    else:
        geometry, ef, tried = choose_index(model, setup.indexes, tune_users, tune_hist)
    index = setup.indexes[geometry]
    index.ef_search = ef
    engine = serving_engine(model, index)
    quality = engine_recall(engine, model, report_users, report_hist, exact_lists(model, report_users, report_hist))
    quality_s = time.perf_counter() - t
    del engine
    t = time.perf_counter()
    publish_versions(root, model, index)
    publish_s = time.perf_counter() - t
    histories = [json.dumps({"items": model.items_.ids[h].tolist(), "k": 10}) for h in report_hist]
    n_users, n_items = model.n_users, model.n_items
    del model, index, setup
    noise = machine_noise(8)
    fmt = {
        "n_users": n_users, "n_items": n_items, "token": TOKEN, "user_prefix": USER_PREFIX, "item_prefix": ITEM_PREFIX,
        "bodies": lua_strings(histories), "root": root,
    }  # fmt: skip
    conns = 16
    pace = paced_think_ms(conns, args.target, 2.0)  # a response takes about 2 ms
    with serving(root, args.workers) as (port, start_s):
        rows, events_note = ials_runs(port, args, fmt, conns, pace)

    tuning = "The geometry and efSearch were given on the command line (`--geometry`, `--ef-search`)."
    if tried:
        grid = pd.DataFrame(tried)
        for col in ("users", "histories"):
            grid[col] = grid[col].map(lambda v: f"{v:.3f}")
        grid.columns = ["HNSW32 over", "efSearch", "recall@10, known users", "recall@10, 5-item histories"]
        reached = any(min(t["users"], t["histories"]) >= TARGET_RECALL for t in tried)
        tuning = (
            f"The geometry and efSearch served ({geometry}, {ef}) were chosen on a separate tuning set ({q} other "
            f"users, {q} other held-out people): per geometry, efSearch {', '.join(map(str, EF_GRID))} in order, "
            f"stopping at the first with recall@10 >= {TARGET_RECALL} for both kinds of query; the smallest such "
            + (
                "efSearch wins."
                if reached
                else "efSearch would win, but none reached it: the best worst-kind recall was taken."
            )
            + f" Both graphs: M=32, efConstruction={EF_CONSTRUCTION}; built in "
            + ", ".join(f"{sec:.0f}s ({g})" for g, sec in info["build_s"].items())
            + f".\n\n{markdown_table(grid)}"
        )
    cached = " (built in an earlier run and cached under $TASTEBUD_BENCH_CACHE)" if info.get("cached") else ""
    reproduce = "python benchmarks/bench_serve.py --part index" + (
        " --quick" if args.quick else f" --seconds {args.seconds}" if args.seconds != 15 else ""
    )
    body = f"""## Serving ({n_items:,}-item catalogue, trained iALS, HNSW32 over {geometry} (efConstruction={EF_CONSTRUCTION}, efSearch={ef}), {FACTORS}-d factors, {n_users:,} users)

The served model is `ials` *trained*: {FACTORS} factors, {args.epochs} sweeps, fitted on a synthetic implicit data set with
latent structure (`tastebud.data.synthetic`: {info["users"]:,} people, {n_items:,} items, {info["interactions"]:,}
plays; {info["items_with_plays"]:.0%} of the items were played at least once, the rest have zero vectors) in
{info["fit_s"]:.0f}s on {info["threads"]} cores (data generated in {info["generate_s"]:.0f}s){cached}. Known users are answered from the HNSW index; a new person's history is folded in by
iALS's exact least-squares solve (`history_vector`) and the index is searched with that vector.

Index quality, through the service's engine (`Engine.recommend_user` / `recommend_history`, the code behind
the routes) against the library's exact ranking of the same vectors (`rank_rows` / `rank_history_idx`),
training items excluded: recall@10 **{quality["users"]:.3f}** for {q} known users and **{quality["histories"]:.3f}** for {q}
five-item histories of people held out of the fit (five of their own plays: the POST queries below). Target
(issue #21): >= {TARGET_RECALL} for both. {tuning}

wrk (1 thread; {args.seconds}s per run) against `tastebud serve --workers {args.workers}` (uvicorn) on 127.0.0.1; wrk and the
server share the same {os.cpu_count()} cores. Paced runs: {conns} connections, each waiting a random
think time between requests (exponential, mean {pace} ms, wrk `delay()`), so the offered rate is a little above
{args.target}/s and arrivals are close to Poisson (a fixed delay keeps the connections in lockstep:
16 requests arrive together every ~30 ms, and the last of each burst waits for the other 15);
latency is measured from send to response. Unpaced runs: 8 connections sending back to back
(the server's maximum rate). The fleet deals connections out evenly between its workers. Target: >= 500 req/s
with p99 <= 25 ms, zero errors. GET asks for random known users; POST sends the {q} reported histories.

{markdown_table(latency_frame(rows))}

"In app" is the service's own latency histogram (`tastebud_request_seconds` of GET /metrics,
which counts every worker of the fleet): from the request reaching the app to the response
handed back to uvicorn, shown as the bucket bound that holds the percentile. The rest of wrk's
figure is spent outside the app: HTTP parsing, waiting in the worker's event loop behind the
request before it, the kernel's loopback, wrk itself, and stalls of the machine.

{events_note}

Index quality measured in {quality_s:.0f}s; registry publish (2 versions) {publish_s:.0f}s; server start
(loading the model and index) {start_s:.0f}s.

The machine's own noise, measured before the runs with nothing else running: 1.5 ms units of
pure-Python work with random pauses between them (one process per core, 8 s) took p50
{noise[50]:.1f} ms, p99 {noise[99]:.1f} ms and p99.9 {noise[99.9]:.1f} ms. A unit far above 1.5 ms met a stall
outside tastebud (a virtual CPU not running); a request that meets one waits as long, and so do
the requests queued behind it.

Reproduce: `{reproduce}` (needs wrk; `--quick` for a smoke test at 50k items that writes
nothing). The load average before the run was {os.getloadavg()[0]:.1f}; wrk and the server compete for the same
{os.cpu_count()} cores."""
    return body


def sqlite_count(path: Path) -> int:
    import sqlite3

    con = sqlite3.connect(path)
    try:
        return int(con.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        con.close()


if __name__ == "__main__":
    main()
