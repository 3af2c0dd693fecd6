"""Shared helpers of the reliability tests: a small registry, a real server in a subprocess,
and the counters that ``scripts/reliability.py`` sums into its table."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

import tastebud as tb

TOKEN = "reliability-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO = Path(__file__).resolve().parents[2]


def record(**counts: int) -> None:
    """Add to the reliability table (a JSON line in $TASTEBUD_RELIABILITY_LOG, when set)."""
    path = os.environ.get("TASTEBUD_RELIABILITY_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({k: int(v) for k, v in counts.items()}) + "\n")


def make_data(n_users: int = 40) -> tb.Interactions:
    """Integer user ids 1..n_users, items 100..129, ratings 1..5, timestamps."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(1, n_users + 1):
        for i in rng.choice(np.arange(100, 130), 8, replace=False):
            rows.append((u, int(i), float(rng.integers(1, 6)), 1_000_000 + len(rows)))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "ts"])
    return tb.Interactions.from_frame(frame, rating="rating", time="ts", scale=(1, 5))


def build_registry(root: Path, data: tb.Interactions | None = None) -> Path:
    """A registry with one published version (popular + bias: fast to fit, load and publish)."""
    from tastebud.serve.retrain import publish_version

    data = data if data is not None else make_data()
    models = {"popular": tb.get_model("popular")().fit(data), "bias": tb.get_model("bias")().fit(data)}
    publish_version(root, models, data, {"collaborative": ["popular", "bias"], "short_history": 5})
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str) -> list[str]:
    """The ``tastebud`` command line, run by this interpreter."""
    return [sys.executable, "-c", "from tastebud.cli import app; app()", *args]


class Server:
    """``tastebud serve`` in a subprocess on 127.0.0.1 (killed, never left behind)."""

    def __init__(self, registry: Path, events: Path, extra: tuple[str, ...] = ()) -> None:
        self.registry, self.events, self.extra = registry, events, extra
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> Server:
        args = cli(
            "serve", "--model", str(self.registry), "--port", str(self.port), "--token", TOKEN,
            "--events", str(self.events), *self.extra,
        )  # fmt: skip
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.log = open(self.events.parent / f"server-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /health within {timeout:.0f} s: {self.tail()}")

    def tail(self) -> str:
        try:
            return (self.events.parent / f"server-{self.port}.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, no buffer is flushed."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self.log.closed:
            self.log.close()


def get_json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None
