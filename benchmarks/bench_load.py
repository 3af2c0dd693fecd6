"""Load: `wrk` against the real server (`tastebud serve` on 127.0.0.1) with sustained mixed traffic:
recommendations by user id, recommendations from a five-item history, and events. Reports
throughput, p50/p95/p99 latency, errors, and events stored vs. requested; zero errors required.

    .venv/bin/python benchmarks/bench_load.py [--duration 20] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
LUA = HERE / "wrk" / "mixed.lua"
TOKEN = "load-token-0123456789abcdef"


# The code this benchmark's section measures (besides common.COMMON_PATHS); make bench-check reads it.
MEASURES = [
    "src/tastebud/serve",
    "src/tastebud/index",
    "src/tastebud/models/ials.py",
    "src/tastebud/models/knn.py",
]


def ensure_wrk() -> str:
    """wrk from Debian; installed with apt-get when missing (needs root, as in CI)."""
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True, timeout=300)
        path = shutil.which("wrk")
        if path:
            return path
    raise SystemExit("wrk is not installed: `apt-get install wrk` (or `make system-deps`)")


def build_registry(root: Path, n_users: int, n_items: int, n_interactions: int) -> Path:
    import tastebud as tb
    from tastebud.data.synthetic import generate
    from tastebud.serve.retrain import publish_version

    data = generate(n_users=n_users, n_items=n_items, n_interactions=n_interactions, random_state=0)
    models = {
        "popular": tb.get_model("popular")().fit(data),
        "itemknn": tb.get_model("itemknn")(neighbors=50).fit(data),
        "ials": tb.get_model("ials")(factors=32, epochs=5, random_state=0).fit(data),
    }
    publish_version(root, models, data, {"collaborative": ["ials", "itemknn"], "short_history": 5})
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_load(
    workdir: Path,
    duration: int = 20,
    connections: int = 16,
    threads: int = 2,
    n_users: int = 2000,
    n_items: int = 500,
    n_interactions: int = 40_000,
    reload_every: float = 4.0,
) -> dict[str, Any]:
    """Start the real server on loopback, run wrk with mixed traffic, stop it; return the numbers."""
    wrk = ensure_wrk()
    reg = build_registry(workdir / "reg", n_users, n_items, n_interactions)
    events_db = workdir / "events.db"
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", TASTEBUD_TOKEN=TOKEN)
    log = open(workdir / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-c", "from tastebud.cli import app; app()", "serve", "--model", str(reg),
         "--port", str(port), "--events", str(events_db)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise SystemExit(f"server exited: {(workdir / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not start")
            time.sleep(0.2)
        # warm up (compiled kernels, caches): one request of each kind, outside the measurement
        with httpx.Client(base_url=url, timeout=180) as http:
            for j in range(3):
                http.get(f"/users/u{j}/recommendations?k=10").raise_for_status()
                http.post("/recommendations", json={"items": [f"i{j}", f"i{j + 1}"], "k": 10}).raise_for_status()
            http.post(
                "/events",
                json={"user": "warm", "item": "i0", "event_id": "warm-up"},
                headers={"Authorization": f"Bearer {TOKEN}"},
            ).raise_for_status()
        wenv = dict(env, TB_USERS=str(n_users), TB_ITEMS=str(n_items), TB_RUN=f"r{int(time.time())}")
        # hot reloads while the load runs: a model swap must not fail a single request
        stop, reloads = threading.Event(), {"ok": 0, "failed": 0}

        def reloader() -> None:
            with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                while not stop.wait(reload_every):
                    try:
                        ok = http.post("/admin/reload").status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    reloads["ok" if ok else "failed"] += 1

        thread = threading.Thread(target=reloader, daemon=True)
        if reload_every > 0:
            thread.start()
        proc = subprocess.run(
            [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(LUA), url],
            capture_output=True, text=True, env=wenv, timeout=duration + 120,
        )  # fmt: skip
        stop.set()
        if reload_every > 0:
            thread.join(timeout=90)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"wrk produced no result:\n{proc.stdout}\n{proc.stderr}")
        out: dict[str, Any] = json.loads(line[len("RESULT ") :])
        out["stderr"] = proc.stderr.strip()[-1000:]
        out["reloads"], out["reloads_failed"] = reloads["ok"], reloads["failed"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    con = sqlite3.connect(events_db)
    out["events_stored"] = int(con.execute("SELECT COUNT(*) FROM events WHERE event_id != 'warm-up'").fetchone()[0])
    con.close()
    out["duration_s"] = out["duration_us"] / 1e6
    out["rps"] = out["requests"] / out["duration_s"]
    out["errors"] = out["connect_errors"] + out["read_errors"] + out["write_errors"] + out["timeouts"] + out["non2xx"]
    # wrk counts a request when it is written; at most one per connection is still in flight at the end
    out["events_lost"] = max(0, out["events_requested"] - connections - out["events_stored"])
    out["connections"], out["threads"] = connections, threads
    out["catalogue"] = f"{n_users} users x {n_items} items, popular + itemknn + ials (rrf)"
    return out


def markdown(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"`wrk -t{r['threads']} -c{r['connections']} -d{r['duration_s']:.0f}s` against `tastebud serve` on "
            f"127.0.0.1 (SQLite event store, {r['catalogue']}); mixed traffic: 50% "
            "`GET /users/{id}/recommendations`, 30% `POST /recommendations` (5-item history), 20% `POST /events`. "
            f"A hot reload (`POST /admin/reload`) every few seconds during the run ({r['reloads']} reloads). "
            "Shared 2-core machine; the load generator runs on the same cores.",
            "",
            "| requests | duration (s) | requests/s | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | errors | events requested | events stored |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {r['requests']} | {r['duration_s']:.1f} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['errors']} | {r['events_requested']} | {r['events_stored']} |",
            "",
            "Reproduce: `.venv/bin/python benchmarks/bench_load.py --duration 20 --connections 16`.",
        ]
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tastebud-load-") as tmp:
        r = run_load(Path(tmp), args.duration, args.connections, args.threads)
    text = markdown(r)
    print(text)
    if r["stderr"]:
        print(r["stderr"], file=sys.stderr)
    sys.path.insert(0, str(HERE))
    from common import write_section

    write_section("load", text, measures=MEASURES)
    if r["errors"] or r["events_lost"]:
        print(f"FAILED: {r['errors']} errors, {r['events_lost']} events lost", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
