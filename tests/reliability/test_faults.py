"""Faults: SIGKILL the server while events stream in, kill publishing and `tastebud retrain`
midway, corrupt model versions, a full disk and a read-only store.

Each test counts the faults it injects and the ones the system survived (see rhelpers.record);
a fault that is not survived fails the test.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from rhelpers import AUTH, TOKEN, Server, build_registry, cli, make_data, record

from tastebud.core.persist import ARRAYS, MANIFEST
from tastebud.serve.app import ServeConfig, create_app
from tastebud.serve.engine import Engine
from tastebud.serve.registry import ModelRegistry


# ---------------------------------------------------------------------------- SIGKILL during POST /events
def _stream(url: str, worker: int, acked: dict[str, tuple], pending: dict[str, tuple], stop: threading.Event) -> None:
    """POST batches of 3 events with idempotency keys until the server dies or ``stop``."""
    n = 0
    with httpx.Client(base_url=url, timeout=30, headers=AUTH) as http:
        while not stop.is_set():
            batch = []
            for _ in range(3):
                eid = f"w{worker}-{n}"
                batch.append({"user": f"s{worker}", "item": 100 + n % 30, "timestamp": 2_000_000 + n, "event_id": eid})
                n += 1
            for e in batch:
                pending[e["event_id"]] = (e["user"], e["item"], e["timestamp"])
            try:
                r = http.post("/events", json={"events": batch})
            except httpx.HTTPError:
                return  # the server is gone: these stay pending (unknown outcome)
            if r.status_code != 201:
                return
            for e in batch:
                acked[e["event_id"]] = pending.pop(e["event_id"])


@pytest.mark.slow
def test_sigkill_while_streaming_events_loses_and_duplicates_nothing(tmp_path):
    reg = build_registry(tmp_path / "reg")
    db = tmp_path / "events.db"
    rng = random.Random(7)
    acked: dict[str, tuple] = {}
    pending: dict[str, tuple] = {}
    kills = 3
    for cycle in range(kills):
        server = Server(reg, db).start()
        try:
            # the client retries the events whose outcome it never heard, with the same keys
            if pending:
                with httpx.Client(base_url=server.url, timeout=30, headers=AUTH) as http:
                    retry = [
                        {"user": u, "item": i, "timestamp": t, "event_id": eid} for eid, (u, i, t) in pending.items()
                    ]
                    r = http.post("/events", json={"events": retry})
                    assert r.status_code == 201, r.text
                    body = r.json()
                    assert body["stored"] + body["duplicates"] == len(retry)
                    acked.update(pending)
                    pending.clear()
                    # and a few it had heard about (a client may retry after a lost response)
                    again = [
                        {"user": u, "item": i, "timestamp": t, "event_id": eid}
                        for eid, (u, i, t) in list(acked.items())[:5]
                    ]
                    r = http.post("/events", json={"events": again})
                    assert r.status_code == 201 and r.json()["stored"] == 0 and r.json()["duplicates"] == len(again)
            stop = threading.Event()
            before = len(acked)
            threads = [
                threading.Thread(target=_stream, args=(server.url, 10 * cycle + w, acked, pending, stop), daemon=True)
                for w in range(4)
            ]
            for t in threads:
                t.start()
            # kill at a random point once some events are acknowledged
            target = before + rng.randint(30, 150)
            deadline = time.monotonic() + 60
            while len(acked) < target and time.monotonic() < deadline:
                time.sleep(0.005)
            assert len(acked) > before, "no event acknowledged before the kill"
            server.kill()
            stop.set()
            for t in threads:
                t.join(timeout=40)
        finally:
            server.stop()
    # one last restart: retry what is still pending, then read the store
    server = Server(reg, db).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30, headers=AUTH) as http:
            if pending:
                retry = [{"user": u, "item": i, "timestamp": t, "event_id": eid} for eid, (u, i, t) in pending.items()]
                assert http.post("/events", json={"events": retry}).status_code == 201
                acked.update(pending)
            info = http.get("/admin/info").json()
    finally:
        server.stop()
    con = sqlite3.connect(db)
    rows = con.execute("SELECT event_id, user_key, item_key, ts FROM events").fetchall()
    con.close()
    stored = {eid: (json.loads(u), json.loads(i), ts) for eid, u, i, ts in rows}
    lost = [eid for eid in acked if eid not in stored]
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {lost[:5]}"
    assert len(rows) == len(stored) == len(acked) == info["events"]["count"], "an event was stored twice"
    assert all(stored[eid] == acked[eid] for eid in acked), "an event came back different"
    record(faults_injected=kills, faults_survived=kills, events_acked=len(acked), events_lost=len(lost))


# ---------------------------------------------------------------------------- killing publish / retrain
_PUBLISH_LOOP = """
import sys
from rhelpers import make_data
import tastebud as tb
from tastebud.serve.retrain import publish_version
data = make_data(200)
models = {"popular": tb.get_model("popular")().fit(data), "itemknn": tb.get_model("itemknn")(neighbors=10).fit(data)}
print("ready", flush=True)
while True:
    publish_version(sys.argv[1], models, data, {"collaborative": ["itemknn"]})
"""


def _assert_registry_intact(reg: Path) -> str:
    """Every published version loads completely and CURRENT names one of them."""
    registry = ModelRegistry(reg)
    current = registry.current()
    assert current in registry.versions()
    for version in registry.versions():
        Engine.load(reg, version)  # raises on anything half-written
    return current


@pytest.mark.slow
def test_sigkill_during_publish_never_exposes_a_half_written_version(tmp_path):
    reg = build_registry(tmp_path / "reg")
    rng = random.Random(11)
    kills = 5
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    with TestClient(create_app(reg, ServeConfig(token=TOKEN, events=str(tmp_path / "ev.db")))) as client:
        for _ in range(kills):
            proc = subprocess.Popen(
                [sys.executable, "-c", _PUBLISH_LOOP, str(reg)], stdout=subprocess.PIPE, env=env, text=True
            )
            try:
                assert proc.stdout.readline().strip() == "ready"
                time.sleep(rng.uniform(0.05, 1.5))  # publishes back to back: the kill lands mid-publish
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
            # the running service still serves the version it had, and every request succeeds
            assert client.get("/health").json()["version"] == "v0001"
            assert client.get("/users/3/recommendations?k=3").status_code == 200
            current = _assert_registry_intact(reg)
            r = client.post("/admin/reload", headers=AUTH)
            assert r.status_code == 200, r.text
            assert r.json()["version"] == current
            client.post("/admin/reload", headers=AUTH, json={"version": "v0001"})
    leftovers = [p.name for p in (reg / "versions").iterdir() if p.name.startswith(".stage-")]
    # staging folders of killed publishes may remain, but are never listed as versions
    assert all(name not in ModelRegistry(reg).versions() for name in leftovers)
    record(faults_injected=kills, faults_survived=kills)


@pytest.mark.slow
def test_sigkill_during_retrain_command_keeps_the_served_model(tmp_path):
    data = make_data(200)
    csv = tmp_path / "base.csv"
    data.to_frame().rename(columns={"value": "rating"}).to_csv(csv, index=False)
    reg = tmp_path / "reg"
    base = ["--data", str(csv), "--rating-col", "rating", "--time-col", "timestamp"]
    r = subprocess.run(
        cli("retrain", "--registry", str(reg), *base, "--models", "popular,itemknn", "--no-events"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    r = subprocess.run(
        cli("retrain", "--registry", str(reg), "--no-events"), capture_output=True, text=True, timeout=300
    )
    full = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    rng = random.Random(5)
    kills = 3
    with TestClient(create_app(reg, ServeConfig(token=TOKEN, events=str(tmp_path / "ev.db")))) as client:
        served = client.get("/health").json()["version"]
        for _ in range(kills):
            proc = subprocess.Popen(cli("retrain", "--registry", str(reg), "--no-events"), stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.5, 1.0) * full)  # somewhere in import, fit or publish
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert client.get("/health").json()["version"] == served
            assert client.post("/recommendations", json={"items": [100, 101], "k": 3}).status_code == 200
            current = _assert_registry_intact(reg)
            r = client.post("/admin/reload", headers=AUTH)
            assert r.status_code == 200 and r.json()["version"] == current
            served = current
    record(faults_injected=kills, faults_survived=kills)


# ---------------------------------------------------------------------------- damaged versions
def _copy_version(reg: Path, damage) -> str:
    """Publish a copy of the current version, then damage it as the next version (CURRENT moves)."""
    registry = ModelRegistry(reg)
    src = registry.path("v0001")  # always a clean copy of the first version
    staged = registry.stage()
    shutil.rmtree(staged)
    shutil.copytree(src, staged)
    spec = json.loads((staged / "serving.json").read_text())
    name = registry.publish(staged, {k: v for k, v in spec.items() if k not in ("created_at", "version")})
    damage(reg / "versions" / name)
    return name


def _truncate(v: Path) -> None:
    path = v / "models" / "bias" / ARRAYS
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(v: Path) -> None:
    path = v / "models" / "bias" / ARRAYS
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _newer_format(v: Path) -> None:
    path = v / "models" / "bias" / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 99
    path.write_text(json.dumps(manifest))


def _garbage_manifest(v: Path) -> None:
    (v / "models" / "popular" / MANIFEST).write_bytes(b"\x80\x04\x95 not json")


def _missing_file(v: Path) -> None:
    (v / "models" / "bias" / ARRAYS).unlink()


def _bad_serving(v: Path) -> None:
    (v / "serving.json").write_text("{truncated")


def _unknown_model_class(v: Path) -> None:
    path = v / "models" / "bias" / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["model"] = "os.system"
    path.write_text(json.dumps(manifest))


DAMAGES = {
    "truncated": (_truncate, "sha-256"),
    "hash mismatch": (_flip_byte, "sha-256 mismatch"),
    "newer format": (_newer_format, "newer"),
    "garbage manifest": (_garbage_manifest, "json"),
    "missing file": (_missing_file, "missing"),
    "bad serving.json": (_bad_serving, "serving.json"),
    "unknown model class": (_unknown_model_class, "os.system"),
}


def test_damaged_versions_are_refused_and_the_running_model_stays(tmp_path):
    reg = build_registry(tmp_path / "reg")
    with TestClient(create_app(reg, ServeConfig(token=TOKEN, events=str(tmp_path / "ev.db")))) as client:
        before = client.get("/users/3/recommendations?k=5").json()
        for label, (damage, words) in DAMAGES.items():
            name = _copy_version(reg, damage)
            r = client.post("/admin/reload", headers=AUTH)
            assert r.status_code == 409, (label, r.status_code, r.text)
            msg = r.json()["error"]
            assert "still serving v0001" in msg and words in msg.lower(), (label, msg)
            assert name in msg or "v0" in msg
            assert client.get("/health").json()["version"] == "v0001"
            assert client.get("/users/3/recommendations?k=5").json()["items"] == before["items"], label
        # a fresh server refuses to start on a damaged CURRENT, with the reason
        r = subprocess.run(
            cli("serve", "--model", str(reg), "--port", "1", "--token", TOKEN),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 2 and "no model named 'os.system'" in r.stderr, r.stderr
        # rolling CURRENT back serves again
        ModelRegistry(reg).set_current("v0001")
        assert client.post("/admin/reload", headers=AUTH).status_code == 200
    record(faults_injected=len(DAMAGES), faults_survived=len(DAMAGES))


# ---------------------------------------------------------------------------- full disk, read-only store
def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def _fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        try:
            while True:
                os.write(fd, b"\0" * 512)
        except OSError:
            pass
    finally:
        os.close(fd)


class _FullDisk:
    """A SQLite connection whose INSERTs fail as on a full disk (when no small filesystem can be mounted)."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con

    @property
    def in_transaction(self) -> bool:
        return self._con.in_transaction

    def execute(self, sql: str, *args):
        if sql.lstrip().upper().startswith("INSERT"):
            raise sqlite3.OperationalError("database or disk is full")
        return self._con.execute(sql, *args)

    def close(self) -> None:
        self._con.close()


def _batch(prefix: str, n: int) -> dict:
    return {"events": [{"user": f"{prefix}{j}", "item": 100 + j % 30, "event_id": f"{prefix}-{j}"} for j in range(n)]}


@pytest.mark.parametrize("mode", ["tmpfs", "sqlite"])
def test_full_disk_during_post_events_is_503_with_no_partial_write(tmp_path, mode):
    reg = build_registry(tmp_path / "reg")
    mnt = tmp_path / "small"
    real = mode == "tmpfs" and _mount_tmpfs(mnt, "768k")
    if mode == "tmpfs" and not real:
        pytest.skip("mounting a small tmpfs needs root; the sqlite variant covers the error path")
    try:
        with TestClient(create_app(reg, ServeConfig(token=TOKEN, events=str(mnt / "events.db")))) as client:
            assert client.post("/events", json=_batch("ok", 5), headers=AUTH).status_code == 201
            store = client.app.state.tb.store
            if real:
                _fill(mnt / "filler")
            else:  # no mount allowed: SQLite's own disk-full error, raised at the SQLite connection only
                real_con = store._wcon
                store._wcon = _FullDisk(real_con)
            r = client.post("/events", json=_batch("big", 400), headers=AUTH)
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) > 0
            assert "full" in r.json()["error"] and "nothing" in r.json()["error"].lower()
            assert store.count() == 5  # no partial write
            # reads keep working while the disk is full
            assert client.get("/users/3/recommendations?k=3").status_code == 200
            if real:
                (mnt / "filler").unlink()
            else:
                store._wcon = real_con
            r = client.post("/events", json=_batch("big", 400), headers=AUTH)
            assert r.status_code == 201 and r.json()["stored"] == 400, r.text
            assert store.count() == 405
    finally:
        if real:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    record(faults_injected=1, faults_survived=1)


def test_read_only_store_during_post_events_is_503_with_no_partial_write(tmp_path):
    reg = build_registry(tmp_path / "reg")
    with TestClient(create_app(reg, ServeConfig(token=TOKEN, events=str(tmp_path / "events.db")))) as client:
        assert client.post("/events", json=_batch("ok", 3), headers=AUTH).status_code == 201
        store = client.app.state.tb.store
        # an open file cannot be remounted read-only (EBUSY), so the store is made read-only in
        # SQLite itself: every write then fails exactly as on a read-only file
        store._wcon.execute("PRAGMA query_only = 1")
        r = client.post("/events", json=_batch("ro", 50), headers=AUTH)
        assert r.status_code == 503, r.text
        assert "read" in r.json()["error"].lower() and "nothing" in r.json()["error"].lower()
        assert store.count() == 3
        store._wcon.execute("PRAGMA query_only = 0")
        r = client.post("/events", json=_batch("ro", 50), headers=AUTH)
        assert r.status_code == 201 and r.json()["stored"] == 50
        assert store.count() == 53
    record(faults_injected=1, faults_survived=1)


@pytest.mark.postgres
def test_read_only_postgres_store_is_503_with_no_partial_write(tmp_path, postgres_url):
    import psycopg

    from tastebud.serve.events import PostgresEventStore

    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f"DROP TABLE IF EXISTS {PostgresEventStore.TABLE}")
    reg = build_registry(tmp_path / "reg")
    with TestClient(create_app(reg, ServeConfig(token=TOKEN, events=postgres_url))) as client:
        assert client.post("/events", json=_batch("ok", 3), headers=AUTH).status_code == 201
        store = client.app.state.tb.store
        # the server refuses writes in this session, as a read-only replica or a read-only database would
        store._wcon.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        store._wcon.commit()
        r = client.post("/events", json=_batch("ro", 50), headers=AUTH)
        assert r.status_code == 503, r.text
        assert "read-only" in r.json()["error"] and "nothing" in r.json()["error"]
        assert store.count() == 3
        store._wcon.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        store._wcon.commit()
        r = client.post("/events", json=_batch("ro", 50), headers=AUTH)
        assert r.status_code == 201 and r.json()["stored"] == 50
        assert store.count() == 53
    record(faults_injected=1, faults_survived=1)
