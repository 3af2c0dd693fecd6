"""The event store: interactions recorded while serving, durable before the response.

Two backends behind one interface:

* SQLite in WAL mode with ``synchronous=FULL`` (the embedded default: one file, no server);
* PostgreSQL by URL (``postgresql://user@host:port/db``) through psycopg.

Durability without a commit per request: writes go through one writer thread that commits
whatever has queued up in a single transaction (*group commit*), then wakes every caller whose
events were in it. A caller returns only after its transaction is on disk, so an acknowledged
event is never lost, and throughput grows with concurrency instead of being capped by fsync.

Every event has an idempotency key (``event_id``); a retried event with the same key is stored
once (``ON CONFLICT DO NOTHING``) and reported as a duplicate.

Ids are stored as canonical JSON text (``2`` and ``"a"``), so an integer id comes back as an
integer and a string as a string.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tastebud.core.errors import ConfigError, DataError, TastebudError


class StoreUnavailableError(TastebudError):
    """The event store cannot take writes now (disk full, read-only, unreachable); nothing was stored."""


@dataclass
class Event:
    """One interaction: ``user`` did ``kind`` to ``item`` (with ``value``) at ``timestamp``."""

    user: Any
    item: Any
    value: float = 1.0
    timestamp: int | None = None
    kind: str = "interaction"
    event_id: str | None = None


@dataclass
class RecordResult:
    """What happened to a batch: per event, whether it was stored (False: a duplicate key)."""

    stored: list[bool] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)

    @property
    def n_stored(self) -> int:
        return sum(self.stored)

    @property
    def n_duplicates(self) -> int:
        return len(self.stored) - self.n_stored


def id_key(value: Any) -> str:
    """Canonical text of an id: JSON of an int or a str."""
    if isinstance(value, bool):
        raise DataError(f"ids must be integers or strings, got {value!r}")
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, int):
        return json.dumps(int(value))
    if isinstance(value, str):
        return json.dumps(value)
    raise DataError(f"ids must be integers or strings, got {type(value).__name__}")


def key_id(text: str) -> Any:
    return json.loads(text)


_Row = tuple[str, str, str, float, int, str, float]


class EventStore(ABC):
    """Record interactions durably; read a person's events back; export everything for retraining."""

    url: str = ""
    #: a read waits on the network (a database server), so callers keep it off the event loop
    remote: bool = False

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: list[tuple[list[_Row], Future[list[bool]]]] = []
        self._closed = False
        self._writer: threading.Thread | None = None
        self.commits = 0

    # ------------------------------------------------------------------ writing
    def record(self, events: list[Event], timeout: float = 30.0) -> RecordResult:
        """Store ``events``; returns once they are durable (group commit)."""
        fut = self.submit(events)
        stored = fut.result(timeout=timeout)
        return RecordResult(stored, [row[0] for row in self._last_rows(fut)])

    def submit(self, events: list[Event]) -> Future[list[bool]]:
        """Queue ``events`` for the next group commit; the future resolves once they are durable."""
        rows = [_row(e) for e in events]
        fut: Future[list[bool]] = Future()
        fut.rows = rows  # type: ignore[attr-defined]
        if not rows:
            fut.set_result([])
            return fut
        with self._cond:
            if self._closed:
                raise ConfigError("the event store is closed")
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="tastebud-event-writer", daemon=True)
                self._writer.start()
            self._pending.append((rows, fut))
            self._cond.notify()
        return fut

    @staticmethod
    def _last_rows(fut: Future[list[bool]]) -> list[_Row]:
        return getattr(fut, "rows", [])

    def _write_loop(self) -> None:
        self._open_writer()
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending and self._closed:
                    break
                batch, self._pending = self._pending, []
            rows = [r for rows, _ in batch for r in rows]
            try:
                inserted = self._write(rows)
                self.commits += 1
            except BaseException as exc:  # noqa: BLE001 - every waiter must hear about it
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            flags = _flags(rows, inserted)
            pos = 0
            for rows_i, fut in batch:
                fut.set_result(flags[pos : pos + len(rows_i)])
                pos += len(rows_i)
        self._close_writer()

    @abstractmethod
    def _open_writer(self) -> None: ...

    @abstractmethod
    def _write(self, rows: list[_Row]) -> set[str]:
        """Insert rows in one durable transaction; return the event ids actually inserted."""

    def _close_writer(self) -> None:  # noqa: B027 - optional hook
        """Release the writer's connection (override)."""

    # ------------------------------------------------------------------ reading
    @abstractmethod
    def user_events(self, user_key: str, after_seq: int = 0) -> list[tuple[str, float, int]]:
        """(item key, value, timestamp) of one person after ``after_seq``, oldest first."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def last_seq(self) -> int: ...

    @abstractmethod
    def _rows(self, after_seq: int, upto_seq: int | None, batch: int) -> Iterator[list[tuple[Any, ...]]]: ...

    def to_frame(self, after_seq: int = 0, upto_seq: int | None = None) -> pd.DataFrame:
        """Every event (after ``after_seq``, up to ``upto_seq``) as user, item, value, timestamp, kind, seq."""
        records: list[tuple[Any, ...]] = []
        for chunk in self._rows(after_seq, upto_seq, 50_000):
            records.extend((key_id(u), key_id(i), v, t, k, s) for s, u, i, v, t, k in chunk)
        frame = pd.DataFrame(records, columns=["user", "item", "value", "timestamp", "kind", "seq"])
        for col in ("user", "item"):
            frame[col] = frame[col].astype(object)
        return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._writer is not None:
            self._writer.join(timeout=30)


def _flags(rows: list[_Row], inserted: set[str]) -> list[bool]:
    # a key repeated inside one batch is stored once: only its first occurrence counts as stored
    seen: set[str] = set()
    out = []
    for r in rows:
        ok = r[0] in inserted and r[0] not in seen
        seen.add(r[0])
        out.append(ok)
    return out


def _row(e: Event) -> _Row:
    if not isinstance(e, Event):
        raise DataError(f"expected an Event, got {type(e).__name__}")
    value = float(e.value)
    if value != value or value in (float("inf"), float("-inf")):
        raise DataError("event value must be a finite number")
    eid = e.event_id if e.event_id else uuid.uuid4().hex
    if not isinstance(eid, str) or len(eid) > 200:
        raise DataError("event_id must be a string of at most 200 characters")
    ts = int(time.time()) if e.timestamp is None else int(e.timestamp)
    return (eid, id_key(e.user), id_key(e.item), value, ts, str(e.kind)[:64], time.time())


# ---------------------------------------------------------------------------- SQLite
class SQLiteEventStore(EventStore):
    """Events in one SQLite file, WAL mode, fsync on every (group) commit."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{self.path}"
        self._local = threading.local()
        con = self._connect()
        con.executescript(
            """
            CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                event_id TEXT NOT NULL UNIQUE,
                user_key TEXT NOT NULL,
                item_key TEXT NOT NULL,
                value REAL NOT NULL,
                ts INTEGER NOT NULL,
                kind TEXT NOT NULL,
                received_at REAL NOT NULL
            );
            CREATE INDEX IF NOT EXISTS events_user ON events(user_key, seq);
            """
        )
        con.commit()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        # Turning a new file to WAL takes a lock that SQLite's busy handler does not wait for: the
        # workers of a fleet opening a fresh store at the same moment would see "database is
        # locked" and die at start-up. Wait for it here, as long as the busy timeout.
        deadline = time.monotonic() + 30
        while True:
            try:
                con.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA busy_timeout=30000")
        return con

    def _reader(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._connect()
        return con

    def _open_writer(self) -> None:
        self._wcon = self._connect()
        # Writers in other processes (`tastebud serve --workers N`) queue on this lock, which
        # wakes the next one the moment it is released; SQLite's own busy handler would poll
        # with sleeps of up to 100 ms and turn contention into seconds of latency.
        try:
            self._wlock: int | None = os.open(f"{self.path}.write-lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:  # a read-only folder: writes fail with their own clear error later
            self._wlock = None

    def _close_writer(self) -> None:
        self._wcon.close()
        if self._wlock is not None:
            os.close(self._wlock)

    def _write(self, rows: list[_Row]) -> set[str]:
        if self._wlock is None:
            return self._write_locked(rows)
        fcntl.flock(self._wlock, fcntl.LOCK_EX)
        try:
            return self._write_locked(rows)
        finally:
            fcntl.flock(self._wlock, fcntl.LOCK_UN)

    def _write_locked(self, rows: list[_Row]) -> set[str]:
        con = self._wcon
        inserted: set[str] = set()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    cur = con.execute(
                        "INSERT INTO events(event_id, user_key, item_key, value, ts, kind, received_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING",
                        row,
                    )
                    if cur.rowcount == 1:
                        inserted.add(row[0])
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:  # SQLite may already have rolled back (disk full)
                    con.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:  # disk full, read-only file or folder, I/O error, locked
            raise StoreUnavailableError(
                f"event store unavailable ({exc}); nothing from this request was stored, retry later"
            ) from None
        return inserted

    def user_events(self, user_key: str, after_seq: int = 0) -> list[tuple[str, float, int]]:
        cur = self._reader().execute(
            "SELECT item_key, value, ts FROM events WHERE user_key = ? AND seq > ? ORDER BY ts, seq",
            (user_key, after_seq),
        )
        return [(r[0], float(r[1]), int(r[2])) for r in cur.fetchall()]

    def count(self) -> int:
        return int(self._reader().execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def last_seq(self) -> int:
        return int(self._reader().execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def _rows(self, after_seq: int, upto_seq: int | None, batch: int) -> Iterator[list[tuple[Any, ...]]]:
        upto = upto_seq if upto_seq is not None else 2**62
        cur = self._reader().execute(
            "SELECT seq, user_key, item_key, value, ts, kind FROM events WHERE seq > ? AND seq <= ? ORDER BY seq",
            (after_seq, upto),
        )
        while True:
            chunk = cur.fetchmany(batch)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        super().close()
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


# ---------------------------------------------------------------------------- PostgreSQL
class PostgresEventStore(EventStore):
    """Events in a PostgreSQL table (``tastebud_events``), one group-committed transaction at a time."""

    TABLE = "tastebud_events"
    remote = True

    def __init__(self, url: str) -> None:
        super().__init__()
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover
            raise ConfigError("a PostgreSQL event store needs psycopg: `pip install tastebud[serve]`") from exc
        self._psycopg = psycopg
        self.url = url
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        with self._connect() as con:
            con.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {self.TABLE} (
                    seq BIGSERIAL PRIMARY KEY,
                    event_id TEXT NOT NULL UNIQUE,
                    user_key TEXT NOT NULL,
                    item_key TEXT NOT NULL,
                    value DOUBLE PRECISION NOT NULL,
                    ts BIGINT NOT NULL,
                    kind TEXT NOT NULL,
                    received_at DOUBLE PRECISION NOT NULL
                )
                """
            )
            con.execute(f"CREATE INDEX IF NOT EXISTS {self.TABLE}_user ON {self.TABLE}(user_key, seq)")

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except self._psycopg.Error as exc:
            raise ConfigError(
                f"cannot connect to the PostgreSQL event store: {str(exc).strip().splitlines()[0]}"
            ) from None

    def _reader(self) -> Any:
        con = getattr(self._local, "con", None)
        if con is None or con.closed:
            con = self._local.con = self._connect()
            with self._lock:
                self._all.append(con)
        return con

    def _open_writer(self) -> None:
        self._wcon = self._psycopg.connect(self.url, autocommit=False, connect_timeout=10)
        self._wcon.execute("SET synchronous_commit = on")
        self._wcon.commit()

    def _close_writer(self) -> None:
        self._wcon.close()

    def _insert(self, cols: list[list[Any]]) -> set[str]:
        with self._wcon.transaction():
            cur = self._wcon.execute(
                f"INSERT INTO {self.TABLE} (event_id, user_key, item_key, value, ts, kind, received_at) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[], %s::int8[], %s::text[], %s::float8[]) "
                "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                cols,
            )
            return {r[0] for r in cur.fetchall()}

    def _write(self, rows: list[_Row]) -> set[str]:
        cols = [list(c) for c in zip(*rows, strict=False)]
        try:
            try:
                return self._insert(cols)
            except self._psycopg.OperationalError:
                # the connection dropped: reconnect once and retry (the transaction was rolled back)
                self._wcon = self._psycopg.connect(self.url, autocommit=False, connect_timeout=10)
                return self._insert(cols)
        except self._psycopg.Error as exc:  # disk full, read-only, server gone: the transaction did not commit
            raise StoreUnavailableError(
                f"event store unavailable ({str(exc).strip().splitlines()[0]}); nothing from this request "
                "was stored, retry later"
            ) from None

    def user_events(self, user_key: str, after_seq: int = 0) -> list[tuple[str, float, int]]:
        cur = self._reader().execute(
            f"SELECT item_key, value, ts FROM {self.TABLE} WHERE user_key = %s AND seq > %s ORDER BY ts, seq",
            (user_key, after_seq),
        )
        return [(r[0], float(r[1]), int(r[2])) for r in cur.fetchall()]

    def count(self) -> int:
        return int(self._reader().execute(f"SELECT COUNT(*) FROM {self.TABLE}").fetchone()[0])

    def last_seq(self) -> int:
        return int(self._reader().execute(f"SELECT COALESCE(MAX(seq), 0) FROM {self.TABLE}").fetchone()[0])

    def _rows(self, after_seq: int, upto_seq: int | None, batch: int) -> Iterator[list[tuple[Any, ...]]]:
        upto = upto_seq if upto_seq is not None else 2**62
        cur = self._reader().execute(
            f"SELECT seq, user_key, item_key, value, ts, kind FROM {self.TABLE} WHERE seq > %s AND seq <= %s ORDER BY seq",
            (after_seq, upto),
        )
        while True:
            chunk = cur.fetchmany(batch)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        super().close()
        with self._lock:
            for con in self._all:
                try:
                    con.close()
                except Exception:  # noqa: BLE001
                    pass
            self._all.clear()


def open_store(url: str | Path) -> EventStore:
    """``postgresql://...`` (or ``postgres://``) -> PostgreSQL; ``sqlite:///path`` or a path -> SQLite."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresEventStore(text)
    if text.startswith("sqlite:///"):
        return SQLiteEventStore(text[len("sqlite:///") :])  # sqlite:////abs/path keeps its leading slash
    if "://" in text:
        raise ConfigError(f"event store URL must start with sqlite:/// or postgresql://, got {text!r}")
    return SQLiteEventStore(text)
