"""What one service process holds while it runs, and how it changes versions.

:class:`State` owns the served :class:`Engine`, the event store and the metrics. A reload loads
the new version beside the old one, then swaps one reference (a request in flight finishes on the
version it started with); in a fleet (``serve/fleet.py``) one worker loads at a time and the
others follow. Loading runs at a low priority and is followed by a garbage-collector settle, so
the requests being answered meanwhile lose as little as possible.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

from tastebud.core.errors import TastebudError
from tastebud.serve.config import ServeConfig, default_events_url
from tastebud.serve.engine import Engine
from tastebud.serve.events import open_store
from tastebud.serve.fleet import POLL_SECONDS, FleetControl
from tastebud.serve.metrics import Metrics
from tastebud.serve.registry import is_model_folder

log = logging.getLogger("tastebud.serve")

SETTLE_SECONDS = 1.0  # how long a replaced version may take to go (requests still holding it)


class State:
    """The served version, the event store, the metrics and, in a fleet, the control file."""

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
        self._declare_metrics()

    def _declare_metrics(self) -> None:
        m = self.metrics
        m.counter("tastebud_requests_total", "HTTP requests by route and status.")
        m.histogram("tastebud_request_seconds", "Request latency in seconds by route.")
        m.counter(
            "tastebud_recommendations_total", "Recommendation lists served, by path (popular, history, collaborative)."
        )
        m.counter("tastebud_events_stored_total", "Events stored durably.")
        m.counter("tastebud_events_duplicate_total", "Events ignored because their idempotency key was already stored.")
        m.counter("tastebud_reloads_total", "Model reloads by outcome.")
        m.gauge("tastebud_uptime_seconds", "Seconds since the service started.", lambda: time.time() - self.started)
        m.gauge("tastebud_event_commits", "Group commits of the event store.", lambda: self.store.commits)

    @asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """The app's lifespan: a fleet worker polls the control file while serving; the event
        store is closed at the end."""
        stop = threading.Event()
        poller = None
        if self.fleet is not None:

            def poll() -> None:
                while not stop.wait(POLL_SECONDS):
                    try:
                        self.follow()
                    except Exception:  # noqa: BLE001 - the poller must outlive a bad control file
                        log.exception("fleet poll failed")
                    self.publish_metrics()

            poller = threading.Thread(target=poll, name="tastebud-fleet", daemon=True)
            poller.start()
        yield
        stop.set()
        if poller is not None:
            poller.join(POLL_SECONDS * 4)
            self.publish_metrics()  # the last requests count too
        self.store.close()

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
        settle(replaced)
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


def settle(replaced: Engine | None = None) -> None:
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


def limit_threads(n: int) -> None:
    """Requests run in a thread pool: one BLAS / OpenMP thread per request avoids oversubscription."""
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:  # pragma: no cover
        pass


__all__ = ["SETTLE_SECONDS", "State", "limit_threads", "settle"]
