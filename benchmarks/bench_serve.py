"""Serving under load: wrk against a real `tastebud serve --workers 2` on 127.0.0.1, 1M-item catalogue.

The served model is an iALS model (the real class) whose factors are synthetic: 1M items x 64,
100k users (the vectors of bench_index.py). Known users are answered from the HNSW index
(M=32, efConstruction=200, efSearch=256); a new person's history is folded in by iALS's exact
least-squares solve (``history_vector``) and the index is searched with that vector.

First the machine's own latency noise is measured (``machine_noise``: short units of pure-Python
work, nothing else running), then the runs (wrk, one thread; each bounded to ``--seconds``):

1. GET /users/{id}/recommendations, random known users, paced at the target 500 req/s (16
   connections with exponential think times: close to Poisson arrivals);
2. the same, unpaced (8 connections: the most this machine serves);
3. the paced and the unpaced run again while POST /admin/reload swaps the version;
4. POST /recommendations from a five-item history (random items), paced and unpaced;
5. POST /events, one event per request, unpaced; afterwards every acknowledged event is counted
   in the SQLite store (none may be missing).

Beside wrk's latency each row shows the latency inside the app, from the service's own histogram
(GET /metrics, which counts every worker), so the time spent outside it can be read off.

    python benchmarks/bench_serve.py [--seconds 15]

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
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_section  # noqa: E402
from tastebud.core.registry import get_model  # noqa: E402
from tastebud.serve.fleet import POLL_SECONDS  # noqa: E402

TOKEN = "bench-token"
USERS_ROUTE = "/users/{user_id}/recommendations"
N_USERS = 100_000
EF_CONSTRUCTION = 200  # a well-built graph reaches recall@10 >= 0.95 at a small efSearch
EF_SEARCH = 256  # recall@10 0.957 on this graph (printed with the results)


# The code this benchmark's section measures (besides common.COMMON_PATHS); make bench-check reads it.
MEASURES = [
    "src/tastebud/serve",
    "src/tastebud/index",
    "src/tastebud/models/ials.py",
]


def build_registry(root: Path, n_items: int) -> tuple[Any, Any]:
    """A registry whose v0001 and v0002 serve the same 1M-item model (v0002 for the hot reload).

    Returns the served (model, index), for :func:`index_quality`."""
    import scipy.sparse as sp

    from bench_index import cached_hnsw, synthetic_factors
    from tastebud.data.idmap import IdMap
    from tastebud.serve.engine import PolicyConfig
    from tastebud.serve.registry import ModelRegistry

    users, items = synthetic_factors(n_items, N_USERS)
    index, _ = cached_hnsw(items, ef_construction=EF_CONSTRUCTION)  # built once; bench_index.py shares the cache
    index.ef_search = EF_SEARCH
    # an iALS model with synthetic factors: the served model is the real class (fold-in of new
    # people by its exact least-squares solve), only the 1M-item factors are made up
    model = get_model("ials")(factors=users.shape[1])
    rng = np.random.default_rng(5)
    model.users_, model.items_ = IdMap(np.arange(N_USERS)), IdMap(np.arange(n_items))
    rows = np.repeat(np.arange(N_USERS), 10)
    model.user_items_ = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, rng.integers(0, n_items, len(rows)))), shape=(N_USERS, n_items)
    )
    model.user_factors_, model.item_factors_ = users, items
    reg = ModelRegistry(root)
    policy = PolicyConfig(collaborative=["ials"], short_history=0)
    for _ in range(2):
        stage = reg.stage()
        model.save(stage / "models" / "ials")
        index.save(stage / "index" / "ials")
        spec = {
            "models": ["ials"],
            "policy": policy.to_dict(),
            "indexes": ["ials"],
            "events_through_seq": 0,
        }
        reg.publish(stage, spec, make_current=False)
    reg.set_current("v0001")
    return model, index


def index_quality(model: Any, index: Any) -> dict[str, tuple[float, float]]:
    """What the service answers with: the served index against exact search, for known users and
    for five random items folded in (the POST /recommendations queries); (recall@10, score share)."""
    from bench_index import recall

    users, items = model.user_factors_, model.item_factors_
    n_items = len(items)
    rng = np.random.default_rng(7)
    histories = [rng.integers(0, n_items, 5) for _ in range(300)]
    folded = np.stack([model.history_vector(h, np.ones(5, np.float32)) for h in histories]).astype(np.float32)
    quality = {}
    for name, queries, exclude in (("users", users[:500], None), ("histories", folded, histories)):
        scores = queries @ items.T
        if exclude is not None:
            for r, h in enumerate(exclude):
                scores[r, h] = -np.inf
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        exact = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1)
        got, _ = index.search(queries, 10, exclude=exclude)
        # share of the exact top 10's total score that the returned 10 reach (near ties cost
        # recall by id but not score)
        mass = np.take_along_axis(scores, got, 1).sum(1) / np.take_along_axis(scores, exact, 1).sum(1)
        quality[name] = (recall(got, exact), float(np.mean(mass)))
    return quality


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
  return wrk.format("GET", "/users/" .. math.random(0, %(n_users)d - 1) .. "/recommendations?k=10")
end
"""
)

LUA_HISTORY = (
    LUA_COMMON
    + r"""
function request()
  local items = {}
  for i = 1, 5 do items[i] = math.random(0, %(n_items)d - 1) end
  local body = '{"items": [' .. table.concat(items, ",") .. '], "k": 10}'
  return wrk.format("POST", "/recommendations", {["Content-Type"] = "application/json"}, body)
end
"""
)

LUA_EVENTS = (
    LUA_COMMON
    + r"""
function request()
  sent = sent + 1
  local body = string.format('{"user": "listener-%%d-%%d", "item": %%d, "event_id": "%%s-%%d-%%d"}',
    tid, sent %% 5000, math.random(0, %(n_items)d - 1), tag, tid, sent)
  return wrk.format("POST", "/events", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(token)s"}, body)
end
"""
)


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--target", type=int, default=500, help="paced request rate")
    parser.add_argument("--workers", type=int, default=2, help="tastebud serve --workers (one per core)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    import httpx

    work = Path(tempfile.mkdtemp(prefix="tastebud-bench-serve-"))
    root = work / "registry"
    t = time.perf_counter()
    model, index = build_registry(root, args.n)
    build_s = time.perf_counter() - t
    quality = index_quality(model, index)
    del model, index
    noise = machine_noise(8)
    port = free_port()
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tastebud", "serve", "--model", str(root), "--port", str(port)]
        + ["--workers", str(args.workers)],
        env=dict(os.environ, TASTEBUD_TOKEN=TOKEN),
    )
    rows = []
    try:
        wait_ready(port)
        start_s = time.perf_counter() - t
        fmt = {"n_users": N_USERS, "n_items": args.n, "token": TOKEN}
        conns = 16
        # a connection's cycle is its think time plus a response (about 2 ms); aim 6% above the
        # target so that the rate measured is at least the target
        pace = max(0, round(conns * 1000 / (1.06 * args.target)) - 2)
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
                info.update(
                    status=resp.status_code, seconds=time.perf_counter() - t0, version=resp.json().get("version")
                )

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
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    cols = ["run", "rps", "p50", "p90", "p99", "in_app_p50", "in_app_p99", "requests", "non2xx", "socket_errors"]
    frame = pd.DataFrame(rows)[cols]
    frame.columns = [
        "run",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "in app: p50 ms",
        "in app: p99 ms",
        "requests",
        "non-2xx",
        "socket errors",
    ]
    for col in ("req/s", "p50 ms", "p90 ms", "p99 ms"):
        frame[col] = frame[col].map(lambda v: f"{v:,.1f}")
    for col in ("in app: p50 ms", "in app: p99 ms"):
        frame[col] = frame[col].map(lambda v: f"<= {v:g}")
    body = f"""## Serving ({args.n:,}-item catalogue, HNSW32 (efConstruction={EF_CONSTRUCTION}, efSearch={EF_SEARCH}) over 64-d factors, {N_USERS:,} users)

wrk (1 thread; {args.seconds}s per run) against `tastebud serve --workers {args.workers}` (uvicorn) on 127.0.0.1; wrk and the
server share the same {os.cpu_count()} cores. Paced runs: {conns} connections, each waiting a random
think time between requests (exponential, mean {pace} ms, wrk `delay()`), so the offered rate is a little above
{args.target}/s and arrivals are close to Poisson (a fixed delay keeps the connections in lockstep:
16 requests arrive together every ~30 ms, and the last of each burst waits for the other 15);
latency is measured from send to response. Unpaced runs: 8 connections sending back to back
(the server's maximum rate). The fleet deals connections out evenly between its workers. Target: >= 500 req/s with p99 <= 25 ms, zero errors. The served model is
`ials` with synthetic factors. Against exact search the index answers known users (500) with
recall@10 {quality["users"][0]:.3f} and five random items folded in (300 histories, the POST
queries) with recall@10 {quality["histories"][0]:.3f}; the returned ten reach {quality["users"][1]:.1%} and
{quality["histories"][1]:.1%} of the exact top ten's total score. The fold-in solves against
`Y^T Y + reg I` over a million synthetic items, so five unrelated items give a query whose top scores
are near ties; that costs recall by id more than score.

{markdown_table(frame)}

"In app" is the service's own latency histogram (`tastebud_request_seconds` of GET /metrics,
which counts every worker of the fleet): from the request reaching the app to the response
handed back to uvicorn, shown as the bucket bound that holds the percentile. The rest of wrk's
figure is spent outside the app: HTTP parsing, waiting in the worker's event loop behind the
request before it, the kernel's loopback, wrk itself, and stalls of the machine.

{events_note}

Registry publish (2 versions, index built once and cached by bench_index) {build_s:.0f}s; server start
(loading the model and index) {start_s:.0f}s.

The machine's own noise, measured before the runs with nothing else running: 1.5 ms units of
pure-Python work with random pauses between them (one process per core, 8 s) took p50
{noise[50]:.1f} ms, p99 {noise[99]:.1f} ms and p99.9 {noise[99.9]:.1f} ms. A unit far above 1.5 ms met a stall
outside tastebud (a virtual CPU not running); a request that meets one waits as long, and so do
the requests queued behind it.

Reproduce: `python benchmarks/bench_serve.py --seconds {args.seconds}` (needs wrk). The load average
before the run was {load_before:.1f}; wrk and the server compete for the same 2 cores."""
    write_section("serve", body, measures=MEASURES)
    print(body)
    shutil.rmtree(work, ignore_errors=True)


def sqlite_count(path: Path) -> int:
    import sqlite3

    con = sqlite3.connect(path)
    try:
        return int(con.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        con.close()


if __name__ == "__main__":
    main()
