"""Event store on a real PostgreSQL server (CI starts one with scripts/start_postgres.sh)."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.postgres


@pytest.fixture()
def pg_url(postgres_url):
    pytest.importorskip("psycopg")
    import psycopg

    # a fresh table per test: point the store at its own schema
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f"DROP SCHEMA {schema} CASCADE")


def test_postgres_store(pg_url):
    from tastebud.serve.events import PostgresEventStore, open_store
    from test_events import exercise_store

    store = open_store(pg_url)
    assert isinstance(store, PostgresEventStore)
    exercise_store(store)
    n = store.count()
    store.close()
    again = open_store(pg_url)  # durable across connections
    assert again.count() == n
    again.close()


def test_service_on_postgres(pg_url, tmp_path):
    from fastapi.testclient import TestClient

    import tastebud as tb
    from tastebud.serve.app import ServeConfig, create_app
    from tastebud.serve.retrain import publish_version
    from test_serve import AUTH, TOKEN, make_data

    data = make_data()
    publish_version(
        tmp_path / "reg",
        {"popular": tb.get_model("popular")().fit(data), "bias": tb.get_model("bias")().fit(data)},
        data,
    )
    with TestClient(create_app(tmp_path / "reg", ServeConfig(token=TOKEN, events=pg_url))) as c:
        r = c.post(
            "/events",
            json={"events": [{"user": "p", "item": 100, "event_id": "a"}, {"user": "p", "item": 101, "event_id": "b"}]},
            headers=AUTH,
        )
        assert r.json()["stored"] == 2
        assert (
            c.post("/events", json={"user": "p", "item": 100, "event_id": "a"}, headers=AUTH).json()["duplicates"] == 1
        )
        body = c.get("/users/p/recommendations?k=5").json()
        assert (
            body["path"] == "history"
            and body["new_events"] == 2
            and not {100, 101} & {e["item"] for e in body["items"]}
        )
        assert c.get("/admin/info", headers=AUTH).json()["events"]["count"] == 2
