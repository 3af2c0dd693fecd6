"""Several worker processes serving one version: ``tastebud serve --workers N``.

One Python process answers on about one core (the GIL), so a machine with N cores runs N
uvicorn workers that share the listening socket. A ``POST /admin/reload`` reaches only one of
them; the fleet therefore shares a small control file, JSON ``{"version", "generation"}``
written atomically. The worker that was asked loads the version and bumps ``generation``; every
worker polls the file twice a second and follows. Loading takes an exclusive ``flock`` on
``<control>.lock``, so at most one worker of the fleet loads at any moment (a rolling reload):
the others keep answering at full speed, and no request fails. Beside the control file each
worker publishes its metrics, so that ``GET /metrics``, whichever worker answers it, counts the
whole fleet.

Connections are dealt out evenly. Workers that share one listening socket race for each new
connection, and one wake-up can accept several: wrk's 8 connections opened at once landed 5/3,
and the worker with 5 queues two thirds more requests (its latency sets the p99). Like nginx's
``accept_mutex`` / ``ngx_accept_disabled``, a worker here holds back from accepting while it has
more open connections than the least loaded live worker (:class:`ConnectionShares`, a small
shared table), for at most :data:`MAX_HOLD_SECONDS`, then accepts anyway, so a stalled worker
never leaves a connection waiting. :func:`run_fleet` starts the workers (uvicorn servers with
that accept loop) and restarts one that dies.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from tastebud.core.persist import atomic_write_bytes

POLL_SECONDS = 0.5
HOLD_SECONDS = 0.002  # one hold-back step of a worker with more connections than another
MAX_HOLD_SECONDS = 0.02  # after this a held-back connection is accepted by whoever holds it
HEARTBEAT_SECONDS = 0.1  # a worker republishes its connection count this often
STALE_SECONDS = 1.0  # a worker silent this long (dead, restarting) is left out of the balance
CRASH_SECONDS = 30.0  # a worker that dies sooner than this after its start counts as a crash
CRASH_LOOP = 3  # that many crashes in a row stop the fleet
APP = "tastebud.serve.app:app_from_env"
log = logging.getLogger("tastebud.serve")


class FleetControl:
    """The version a fleet of workers serves, and a lock that lets one worker load at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._seen: tuple[int, int] | None = None

    def read(self) -> tuple[str | None, int]:
        """(version, generation); version None means "whatever the source serves by default"."""
        raw = json.loads(self.path.read_text(encoding="utf-8"))
        return raw.get("version"), int(raw.get("generation", 0))

    def write(self, version: str | None, generation: int) -> None:
        atomic_write_bytes(self.path, json.dumps({"version": version, "generation": generation}).encode("utf-8"))

    def changed(self) -> bool:
        """Whether the file was rewritten since the last call (a stat, no read, on the poll path)."""
        st = self.path.stat()
        key = (st.st_mtime_ns, st.st_ino)
        if key == self._seen:
            return False
        self._seen = key
        return True

    def publish_metrics(self, snapshot: dict[str, Any]) -> None:
        """This worker's metrics (``Metrics.snapshot``), for the scrapes the other workers answer.

        Replaced by a rename, so a reader never sees half a file; not fsynced: the folder lives
        only as long as the fleet (a dead worker's last file stays, so the fleet's counters never
        go back)."""
        folder = self.path.with_name("metrics")
        folder.mkdir(exist_ok=True)
        tmp = folder / f".{os.getpid()}.tmp"
        tmp.write_text(json.dumps(snapshot), encoding="utf-8")
        os.replace(tmp, folder / f"{os.getpid()}.json")

    def others_metrics(self) -> list[dict[str, Any]]:
        """The last published metrics of every other worker, alive or gone."""
        out = []
        for path in sorted(self.path.with_name("metrics").glob("*.json")):
            if path.stem == str(os.getpid()):
                continue
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):  # a worker's folder being removed at shutdown
                continue
        return out

    @contextmanager
    def loading(self) -> Iterator[None]:
        """Hold the fleet's load lock: one worker loads a version at a time."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class ConnectionShares:
    """Open connections per worker, in a file every worker maps: row ``slot`` is (count,
    heartbeat), written only by its own worker, read by all. No lock: each value is one aligned
    8-byte word, and a stale read only makes the balance a connection less even for a moment."""

    def __init__(self, path: str | Path, slot: int) -> None:
        self.table = np.memmap(path, dtype=np.float64, mode="r+").reshape(-1, 2)
        self.slot = slot

    @staticmethod
    def create(path: str | Path, workers: int) -> None:
        Path(path).write_bytes(np.zeros((workers, 2), np.float64).tobytes())

    def publish(self, connections: int) -> None:
        self.table[self.slot] = (connections, time.monotonic())

    def fewest_elsewhere(self) -> float:
        """The smallest connection count among the other live workers (inf if there are none)."""
        now = time.monotonic()
        others = [c for i, (c, beat) in enumerate(self.table) if i != self.slot and now - beat < STALE_SECONDS]
        return min(others, default=float("inf"))


class BalancedAcceptor:
    """Accepts one connection per readiness event, holding back while this worker has more
    connections than another (see the module docstring). Quacks like an asyncio ``Server`` for
    uvicorn's shutdown: ``close`` and ``wait_closed``."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[Callable[[], None]], asyncio.Protocol],
        shares: ConnectionShares,
    ) -> None:
        """``protocol_factory(lost)`` makes the protocol of one accepted connection; the protocol
        calls ``lost()`` when its connection ends (:func:`reporting_lost` makes such a class)."""
        self.loop = asyncio.get_running_loop()
        self.sock, self.factory, self.shares = sock, protocol_factory, shares
        self.open = 0  # accepted and not yet lost, counted here: exact at every accept decision
        self.sock.setblocking(False)
        self.held_since: float | None = None
        self.closed = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.loop.add_reader(self.sock.fileno(), self._ready)
        self._beat()

    def _beat(self) -> None:
        if not self.closed:
            self.shares.publish(self.open)
            self.loop.call_later(HEARTBEAT_SECONDS, self._beat)

    def _rearm(self) -> None:
        if not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._ready)

    def _ready(self) -> None:
        mine = self.open
        self.shares.publish(mine)
        now = time.monotonic()
        if mine > self.shares.fewest_elsewhere():
            self.held_since = self.held_since or now
            if now - self.held_since < MAX_HOLD_SECONDS:  # let a less loaded worker take it
                self.loop.remove_reader(self.sock.fileno())
                self.loop.call_later(HOLD_SECONDS, self._rearm)
                return
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):  # another worker took it
            self.held_since = None
            return
        except OSError as exc:  # out of file descriptors and the like: back off, keep serving
            log.warning("accept failed: %s", exc)
            self.loop.remove_reader(self.sock.fileno())
            self.loop.call_later(0.1, self._rearm)
            return
        self.held_since = None
        self.open += 1
        self.shares.publish(self.open)
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = self.loop.create_task(self._connect(conn))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(partial(self.factory, self._lost), conn)
        except OSError:
            self.open -= 1
            conn.close()

    def _lost(self) -> None:
        """A connection this worker accepted has ended (called by its protocol)."""
        self.open -= 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())

    async def wait_closed(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


def reporting_lost(protocol_class: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """A subclass of ``protocol_class`` (uvicorn's HTTP protocol) taking a ``lost`` callback, which
    it calls when its connection ends, before the protocol's own ``connection_lost``: how a
    :class:`BalancedAcceptor` counts its open connections. Built once per server, since uvicorn's
    configuration picks the class (httptools or h11)."""

    class ReportingLost(protocol_class):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, lost: Callable[[], None], **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.report_lost = lost

        def connection_lost(self, exc: Exception | None) -> None:
            self.report_lost()
            super().connection_lost(exc)

    return ReportingLost


def _balanced_server(config: Any, shares: ConnectionShares) -> Any:
    """A uvicorn ``Server`` whose listening socket is served by a :class:`BalancedAcceptor`."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    class BalancedServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await self.lifespan.startup()
            if self.lifespan.should_exit:
                raise SystemExit(STARTUP_FAILURE)

            protocol_class = reporting_lost(self.config.http_protocol_class)  # the class uvicorn's startup uses

            def create_protocol(lost: Callable[[], None]) -> asyncio.Protocol:
                return protocol_class(
                    config=self.config, server_state=self.server_state, app_state=self.lifespan.state, lost=lost
                )

            self.servers = [BalancedAcceptor(s, create_protocol, shares) for s in sockets or []]
            self.started = True

    return BalancedServer(config)


def _worker(options: dict[str, Any], sock: socket.socket, shares_path: str, slot: int) -> None:
    import uvicorn

    config = uvicorn.Config(APP, factory=True, **options)
    _balanced_server(config, ConnectionShares(shares_path, slot)).run(sockets=[sock])


def run_fleet(options: dict[str, Any], workers: int, shares_path: str | Path) -> None:
    """Serve ``APP`` with ``workers`` processes on one socket until SIGINT / SIGTERM.

    ``options`` are ``uvicorn.Config`` keywords (host, port, log_level, ...). A worker that dies
    is replaced in its slot. One that fails to start, or :data:`CRASH_LOOP` replacements in a row
    that each die within :data:`CRASH_SECONDS`, stop the fleet with a :class:`RuntimeError`
    (they would fail again)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    config = uvicorn.Config(APP, factory=True, **options)
    sock = config.bind_socket()
    sock.listen(config.backlog)  # once, here: the workers accept from it themselves
    ConnectionShares.create(shares_path, workers)
    spawn = multiprocessing.get_context("spawn")

    started: dict[int, float] = {}

    def start(slot: int) -> Any:
        proc = spawn.Process(target=_worker, args=(options, sock, str(shares_path), slot), daemon=False)
        proc.start()
        started[slot] = time.monotonic()
        return proc

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs = [start(slot) for slot in range(workers)]
    quick_deaths = 0
    failure = None
    try:
        while not stop.wait(0.5) and failure is None:
            for slot, proc in enumerate(procs):
                if proc.is_alive() or stop.is_set():
                    continue
                quick_deaths = quick_deaths + 1 if time.monotonic() - started[slot] < CRASH_SECONDS else 0
                if proc.exitcode == STARTUP_FAILURE or quick_deaths >= CRASH_LOOP:
                    failure = f"worker {proc.pid} failed to start (exit {proc.exitcode}); see its log above"
                    break
                log.warning("worker %d died (exit %s); starting another", proc.pid, proc.exitcode)
                procs[slot] = start(slot)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: uvicorn's graceful shutdown
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure is not None:
        raise RuntimeError(failure)


__all__ = ["POLL_SECONDS", "BalancedAcceptor", "ConnectionShares", "FleetControl", "reporting_lost", "run_fleet"]
