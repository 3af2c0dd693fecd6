"""Event store (SQLite): durable, idempotent, ordered, typed ids, group commit under concurrency."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from tastebud.core.errors import ConfigError, DataError
from tastebud.serve.events import Event, SQLiteEventStore, id_key, open_store


def exercise_store(store) -> None:
    """Shared checks, run against SQLite here and PostgreSQL in test_postgres.py."""
    r = store.record([Event(2, "a", event_id="e1", timestamp=20), Event("2", 7, event_id="e2", timestamp=10)])
    assert r.stored == [True, True]
    # a retried event (same key) is stored once, also when repeated inside one batch
    r = store.record([Event(2, "a", event_id="e1"), Event(3, "b", event_id="e3"), Event(3, "b", event_id="e3")])
    assert r.stored == [False, True, False] and r.n_duplicates == 2
    assert store.count() == 3
    # ids keep their type: user 2 (int) and user "2" (str) are different people
    assert store.user_events(id_key(2)) == [('"a"', 1.0, 20)]
    assert store.user_events(id_key("2")) == [("7", 1.0, 10)]
    seq = store.last_seq()
    store.record([Event(2, "c", value=4.5, timestamp=5, event_id="e4")])
    # after_seq returns only what came later; events come back oldest first
    assert store.user_events(id_key(2), after_seq=seq) == [('"c"', 4.5, 5)]
    assert [e[0] for e in store.user_events(id_key(2))] == ['"c"', '"a"']
    frame = store.to_frame()
    assert len(frame) == 4 and set(frame.columns) >= {"user", "item", "value", "timestamp", "seq"}
    assert 2 in frame["user"].tolist() and "2" in frame["user"].tolist() and 7 in frame["item"].tolist()
    assert len(store.to_frame(upto_seq=seq)) == 3

    # concurrency: every acknowledged event is there, and commits were grouped
    def writer(t: int) -> None:
        for i in range(40):
            store.record([Event(f"w{t}", i, event_id=f"w{t}-{i}")])

    before, commits = store.count(), store.commits
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert store.count() == before + 480
    assert store.commits - commits <= 480


def test_sqlite_store(tmp_path):
    store = open_store(tmp_path / "ev.db")
    assert isinstance(store, SQLiteEventStore)
    exercise_store(store)
    n = store.count()
    store.close()
    # durable: a new process (here a new connection) sees everything acknowledged
    con = sqlite3.connect(tmp_path / "ev.db")
    assert con.execute("SELECT COUNT(*) FROM events").fetchone()[0] == n
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    again = open_store(f"sqlite:///{tmp_path / 'ev.db'}")
    assert again.count() == n
    again.close()


def test_bad_events_and_urls(tmp_path):
    store = open_store(tmp_path / "ev.db")
    with pytest.raises(DataError, match="finite"):
        store.record([Event(1, 2, value=float("nan"))])
    with pytest.raises(DataError, match="integers or strings"):
        store.record([Event(True, 2)])
    with pytest.raises(DataError, match="integers or strings"):
        store.record([Event(1, 2.5)])
    assert store.count() == 0
    assert store.record([]).stored == []
    store.close()
    with pytest.raises(ConfigError, match="sqlite:///"):
        open_store("mysql://x/y")


def _open_at_once(path, barrier, errors) -> None:
    barrier.wait()
    try:
        SQLiteEventStore(path).close()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        errors.put(repr(exc))


def test_workers_opening_a_fresh_store_at_once_all_start(tmp_path):
    """A fleet's workers open the same new SQLite file at the same moment: turning it to WAL must
    wait for the others, not fail with 'database is locked' (a worker then died at start-up)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    errors = ctx.Queue()
    for attempt in range(8):
        path = tmp_path / f"ev{attempt}.db"
        barrier = ctx.Barrier(6)
        procs = [ctx.Process(target=_open_at_once, args=(path, barrier, errors)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * 6
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert not found, found
