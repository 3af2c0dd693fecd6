"""HTTP service: every endpoint, the hybrid policy paths, live events, auth, bad input, hot reload,
a real uvicorn server, and the serve / retrain commands."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import tastebud as tb
from servers import free_port, serving
from tastebud.core.base import Recommender
from tastebud.data.idmap import IdMap
from tastebud.serve.app import ServeConfig, create_app
from tastebud.serve.commands import register
from tastebud.serve.engine import Engine, PolicyConfig
from tastebud.serve.registry import ModelRegistry
from tastebud.serve.retrain import publish_version

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_data() -> tb.Interactions:
    """40 users with integer ids (1..40), 30 items (100..129); FR users like the low items."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(1, 41):
        pool = np.arange(100, 115) if u <= 20 else np.arange(115, 130)
        n = 3 if u in (1, 21) else 8  # users 1 and 21 have a short history
        for i in rng.choice(pool, n, replace=False):
            rows.append((u, int(i), float(rng.integers(1, 6)), 1_000_000 + len(rows)))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "ts"])
    users = pd.DataFrame(
        {"country": ["FR" if u <= 20 else "DE" for u in range(1, 41)]}, index=pd.Index(range(1, 41), name="user")
    )
    return tb.Interactions.from_frame(frame, rating="rating", time="ts", scale=(1, 5), user_features=users)


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture()
def registry(tmp_path, data):
    models = {"popular": tb.get_model("popular")().fit(data), "bias": tb.get_model("bias")().fit(data)}
    publish_version(tmp_path / "reg", models, data, {"collaborative": ["popular", "bias"], "short_history": 5})
    return tmp_path / "reg"


@pytest.fixture()
def client(registry):
    app = create_app(registry, ServeConfig(token=TOKEN))
    with TestClient(app) as c:
        yield c


def items_of(body):
    return [e["item"] for e in body["items"]]


def test_known_user_collaborative_and_int_ids(client, data):
    r = client.get("/users/2/recommendations?k=5")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"] == 2 and body["path"] == "collaborative" and body["version"] == "v0001"
    seen = set(data.items.to_ids(data.matrix[data.users.index([2])[0]].indices).tolist())
    got = items_of(body)
    assert len(got) == 5 and all(isinstance(i, int) for i in got) and not set(got) & seen
    assert all(e["explanation"] and isinstance(e["score"], float) for e in body["items"])
    assert [e["rank"] for e in body["items"]] == [1, 2, 3, 4, 5]
    # same list as the blend computed in-process
    blend = tb.models.hybrid.Hybrid.from_fitted([tb.get_model("popular")().fit(data), tb.get_model("bias")().fit(data)])
    assert got == blend.recommend([2], k=5).items_of(0)
    # exclude_seen=false may return seen items; a forced model is served by that model
    body = client.get("/users/2/recommendations?k=30&exclude_seen=false&model=bias").json()
    assert body["model"] == "bias" and set(items_of(body)) >= seen


def test_policy_paths(client):
    # short history (3 items) -> the history model
    assert client.get("/users/1/recommendations").json()["path"] == "history"
    # unknown user -> popularity, overall or by context
    body = client.get("/users/nobody/recommendations?k=5").json()
    assert body["path"] == "popular" and body["user"] == "nobody"
    fr = client.get("/users/nobody/recommendations?k=5&context=country:FR").json()
    de = client.get("/users/nobody/recommendations?k=5&context=country:DE").json()
    assert all(100 <= i < 115 for i in items_of(fr)) and all(115 <= i < 130 for i in items_of(de))
    assert "country=FR" in fr["items"][0]["explanation"]
    # POST /recommendations: five plays of a brand-new listener
    body = client.post("/recommendations", json={"items": [100, 101, "102", 103, 104], "k": 4}).json()
    assert body["path"] == "collaborative" and not set(items_of(body)) & {100, 101, 102, 103, 104}
    body = client.post("/recommendations", json={"items": [100, 999], "k": 4}).json()
    assert body["path"] == "history" and "999" in body["warnings"][0]
    body = client.post("/recommendations", json={"items": [], "k": 3, "context": {"country": "DE"}}).json()
    assert body["path"] == "popular" and all(115 <= i < 130 for i in items_of(body))
    # candidates restrict the results
    body = client.post("/recommendations", json={"items": [100], "k": 10, "candidates": [120, 121, 122, 100]}).json()
    assert set(items_of(body)) == {120, 121, 122}


FAST_GETS = [  # (url, answered by the fast path)
    ("/users/2/recommendations?k=5", True),
    ("/users/2/recommendations", True),
    ("/users/2/recommendations?k=30&exclude_seen=false&model=bias", True),
    ("/users/2/recommendations?exclude_seen=1&k=0010", True),
    ("/users/1/recommendations?k=3", True),  # short history: the history path
    ("/users/nobody/recommendations?k=5", True),  # unknown: popularity
    ("/users/a%20b/recommendations?k=2", True),
    ("/users/2/recommendations?k=5&context=country:FR", False),  # context: FastAPI's parsing
    ("/users/2/recommendations?k=5&unknown=1", False),
    ("/users/2/recommendations?k=0", False),  # the errors are FastAPI's
    ("/users/2/recommendations?k=abc", False),
    ("/users/2/recommendations?k=%D9%A1%D9%A0", False),  # Arabic-Indic 10: digits to str.isdigit only
    ("/users/2/recommendations?k=1001", False),
    ("/users/2/recommendations?exclude_seen=maybe", False),
    ("/users/2/recommendations?model=nope", False),
    ("/users/2/recommendations?model=", False),
    (f"/users/{'x' * 257}/recommendations", False),
]
FAST_POSTS = [  # (json body or raw bytes, answered by the fast path)
    ({"items": [100, 101, "102", 103, 104], "k": 4}, True),
    ({"items": [100, 999], "k": 4, "exclude_seen": False}, True),
    ({"items": [103, 100], "values": [5, 1], "timestamps": [20, 10], "k": 3}, True),
    ({"items": [], "k": 3, "context": {"country": "DE"}}, True),
    ({"items": [100], "k": 10, "candidates": [120, 121, 122, 100]}, True),
    ({"items": [100, 101], "values": [1.0]}, False),  # 422 from the shared checks
    ({"items": [100], "k": 0}, False),
    ({"items": "100"}, False),
    ({"items": [100], "extra": 1}, False),
    ({"items": [100], "model": "nope"}, False),
    (b'{"items": [100', False),
    (b"[1, 2]", False),
]


def test_fast_path_answers_like_the_fastapi_routes(client, monkeypatch):
    """The two hottest requests skip FastAPI's routing and parameter solving when they are plain;
    every answer (200 or error) is the one the FastAPI route gives, and the plain ones really
    took the fast path."""
    from tastebud.serve.fastpath import FastPath

    answer = FastPath.answer
    taken: list[bool] = []

    def spying(self, scope, headers, body):
        out = answer(self, scope, headers, body)
        taken.append(out is not None)
        return out

    def send(method: str, what):
        if method == "GET":
            return client.get(what)
        raw = what if isinstance(what, bytes) else json.dumps(what).encode()
        return client.post("/recommendations", content=raw, headers={"Content-Type": "application/json"})

    cases = [("GET", url, fast) for url, fast in FAST_GETS] + [("POST", body, fast) for body, fast in FAST_POSTS]
    monkeypatch.setattr(FastPath, "answer", spying)
    quick = [send(method, what) for method, what, _ in cases]
    assert taken == [fast for *_, fast in cases]
    monkeypatch.setattr(FastPath, "answer", lambda self, scope, headers, body: None)  # FastAPI only
    reference = [send(method, what) for method, what, _ in cases]
    for (method, what, _), got, want in zip(cases, quick, reference, strict=True):
        assert (got.status_code, got.json()) == (want.status_code, want.json()), (method, what)
    assert {r.status_code for r in reference} >= {200, 404, 422}
    assert (
        client.post("/recommendations", content=b'{"items": [100]}', headers={"Content-Type": "text/plain"}).status_code
        == 422
    )
    metrics = client.get("/metrics").text  # fast answers are counted under their route
    assert 'tastebud_requests_total{method="GET",route="/users/{user_id}/recommendations",status="200"}' in metrics


def test_events_change_the_next_recommendation(client):
    before = client.get("/users/newbie/recommendations?k=5").json()
    assert before["path"] == "popular"
    top = before["items"][0]["item"]
    r = client.post("/events", json={"user": "newbie", "item": top, "event_id": "n1"}, headers=AUTH)
    assert r.status_code == 201 and r.json()["stored"] == 1
    after = client.get("/users/newbie/recommendations?k=5").json()
    assert after["path"] == "history" and after["new_events"] == 1 and top not in items_of(after)
    batch = {"events": [{"user": "newbie", "item": 100 + j, "event_id": f"n{j + 2}"} for j in range(5)]}
    assert client.post("/events", json=batch, headers=AUTH).json()["stored"] == 5
    # retried: stored once
    assert client.post("/events", json=batch, headers=AUTH).json() == {"stored": 0, "duplicates": 5, "warnings": []}
    body = client.get("/users/newbie/recommendations?k=5").json()
    assert body["path"] == "collaborative" and body["history_length"] == 6
    assert not set(items_of(body)) & {top, 100, 101, 102, 103, 104}
    # a known user: the item just played is excluded at once
    first = client.get("/users/3/recommendations?k=3").json()["items"][0]["item"]
    client.post("/events", json={"user": 3, "item": first}, headers={**AUTH, "Idempotency-Key": "k-1"})
    again = client.get("/users/3/recommendations?k=3").json()
    assert first not in items_of(again) and again["new_events"] == 1
    # Idempotency-Key header: the same request twice stores one event
    assert (
        client.post("/events", json={"user": 3, "item": first}, headers={**AUTH, "Idempotency-Key": "k-1"}).json()[
            "stored"
        ]
        == 0
    )


def test_similar_and_predict(client):
    r = client.get("/items/100/similar?k=3&model=popular")
    assert r.status_code == 200 and len(r.json()["items"]) == 3 and 100 not in items_of(r.json())
    assert client.get("/items/99999/similar").status_code == 404
    r = client.post("/predict", json={"pairs": [{"user": 2, "item": 100}, {"user": "someone new", "item": 101}]})
    body = r.json()
    assert r.status_code == 200 and body["model"] == "bias"
    assert all(1 <= p["rating"] <= 5 for p in body["predictions"])
    assert client.post("/predict", json={"pairs": [{"user": 2, "item": 100}], "model": "popular"}).status_code == 400


def _readme_predict_body(path: str) -> dict[str, Any]:
    """The body of the documented ``curl ... /predict ... -d '{...}'`` example."""
    text = open(os.path.join(os.path.dirname(__file__), "..", path), encoding="utf-8").read()
    found = re.search(r"localhost:8000/predict .*?-d '(\{.*?\})'", text, re.S)
    assert found, f"{path} has no POST /predict example"
    return json.loads(found.group(1))


@pytest.mark.parametrize("doc", ["README.md", "docs/serving.md"])
def test_documented_predict_example_runs(tmp_path, doc):
    body = _readme_predict_body(doc)
    frame = pd.DataFrame(
        [(u, i, r) for u in range(1, 6) for i, r in ((50, 5), (172, 4), (181, 3), (1, 2)) if (u, i) != (1, 172)],
        columns=["user", "item", "rating"],
    )
    data = tb.Interactions.from_frame(frame, rating="rating", scale=(1, 5))
    folder = tb.get_model("bias")().fit(data).save(tmp_path / "bias")
    with TestClient(create_app(folder, ServeConfig(token=TOKEN, events=str(tmp_path / "e.db")))) as c:
        r = c.post("/predict", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == "bias" and out["warnings"] == [] and len(out["predictions"]) == len(body["pairs"])
    assert all(type(p["user"]) is int and type(p["item"]) is int for p in out["predictions"])
    assert all(1 <= p["rating"] <= 5 for p in out["predictions"])


def test_predict_pairs_ids_warnings_and_clipping(client, data, registry):
    # [user, item] lists are pairs too; ids come back as the vocabulary's integers, even sent as text
    r = client.post("/predict", json={"pairs": [[1, 100], {"user": "2", "item": "101"}]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [(p["user"], p["item"]) for p in preds] == [(1, 100), (2, 101)] and r.json()["warnings"] == []
    bias = tb.load_model(str(registry / "versions" / "v0001" / "models" / "bias"))
    np.testing.assert_allclose([p["rating"] for p in preds], bias.predict([1, 2], [100, 101]))
    # unknown ids: the biases' fallback, and the answer says so
    body = client.post("/predict", json={"pairs": [["someone new", 100], [2, 999]]}).json()
    assert body["predictions"][0]["user"] == "someone new"
    assert body["warnings"] == [
        "1 unknown user(s) 'someone new': predicted from the biases the model has (the global mean at worst)",
        "1 unknown item(s) 999: predicted from the biases the model has (the global mean at worst)",
    ]
    # a wrong shape: one message that says which shape is expected
    for pairs, got in (([[1]], "a list of 1"), ([[1, 2, 3]], "a list of 3"), ([7], "int")):
        r = client.post("/predict", json={"pairs": pairs})
        assert r.status_code == 422
        assert r.json()["error"] == f'pairs.0: each pair is {{"user": ID, "item": ID}} or [user, item]; got {got}'
    r = client.post("/predict", json={"pairs": [[1.5, 100]]})
    assert r.json()["error"] == "pairs.0.user: must be an integer or a string of 1 to 256 characters"


def test_predict_is_clipped_to_the_rating_scale(tmp_path):
    # a user who rates everything 5 and an item everyone rates 5: the biases add up past the scale
    frame = pd.DataFrame(
        [("fan", i, 5.0) for i in range(6)]
        + [(u, 0, 5.0) for u in "abc"]
        + [(u, i, 2.0) for u in "abc" for i in (1, 2)],
        columns=["user", "item", "rating"],
    )
    data = tb.Interactions.from_frame(frame, rating="rating", scale=(1, 5))
    model = tb.get_model("bias")(reg_user=0.0, reg_item=0.0).fit(data)
    uidx, iidx = model.users_.index(["fan"]), model.items_.index([0])
    assert model._predict_pairs(uidx, iidx)[0] > 5  # unclipped
    folder = model.save(tmp_path / "bias")
    with TestClient(create_app(folder, ServeConfig(token=TOKEN, events=str(tmp_path / "e.db")))) as c:
        assert (
            c.post("/predict", json={"pairs": [{"user": "fan", "item": 0}]}).json()["predictions"][0]["rating"] == 5.0
        )


@pytest.mark.parametrize(
    "body,error",
    [
        ({"user": 1, "item": 100, "value": "abc"}, "value: Input should be a valid number"),
        ({"user": 1}, "item: Field required"),
        ({"user": [1], "item": 100}, "user: must be an integer or a string of 1 to 256 characters"),
        ({"user": 1, "item": 100, "colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"events": [{"user": 1, "item": 100}, {"user": 1, "item": 1.5}]}, "events.1.item: must be an integer"),
        ([{"user": 1, "item": 100}], 'expected one event {"user": ID, "item": ID, ...} or a batch {"events": [...]}'),
    ],
)
def test_a_malformed_event_gets_one_clear_error(client, body, error):
    r = client.post("/events", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert r.json()["error"].startswith(error), r.json()["error"]


def test_unknown_people_get_the_librarys_popularity_fallback(client, registry):
    bias = tb.load_model(str(registry / "versions" / "v0001" / "models" / "bias"))
    expected = bias.popular_items(k=5)
    for body in (
        client.get("/users/nobody/recommendations?k=5").json(),
        client.post("/recommendations", json={"items": ["nope", 999], "k": 5}).json(),
    ):
        assert body["path"] == "popular"
        assert items_of(body) == expected.items_of(0)
        assert [e["score"] for e in body["items"]] == expected.scores_of(0)
    short = client.post("/recommendations", json={"items": [], "k": 10, "candidates": [120, 121, 999]}).json()
    assert items_of(short) == bias.popular_items(k=10, candidates=[120, 121]).items_of(0)
    assert len(short["items"]) == 2 and None not in items_of(short)  # shorter, not padded
    none = client.get("/users/nobody/recommendations?k=3&candidates=998,999").json()
    assert none["path"] == "popular" and none["items"] == [] and "998" in none["warnings"][0]


@pytest.mark.parametrize(
    "method,url,kwargs,status",
    [
        ("get", "/users/2/recommendations?k=0", {}, 422),
        ("get", "/users/2/recommendations?k=1001", {}, 422),
        ("get", "/users/2/recommendations?k=abc", {}, 422),
        ("get", "/users/2/recommendations?model=nope", {}, 404),
        ("get", "/users/2/recommendations?context=nocolon", {}, 400),
        (
            "post",
            "/recommendations",
            {"content": b'{"items": [1,', "headers": {"content-type": "application/json"}},
            422,
        ),
        ("post", "/recommendations", {"json": {"items": [1.5]}}, 422),
        ("post", "/recommendations", {"json": {"items": "100"}}, 422),
        ("post", "/recommendations", {"json": {"items": [100], "k": 0}}, 422),
        ("post", "/recommendations", {"json": {"items": [100], "values": [1, 2]}}, 422),
        ("post", "/recommendations", {"json": {"items": [100], "surprise": 1}}, 422),
        ("post", "/recommendations", {"json": {"items": [True]}}, 422),
        (
            "post",
            "/recommendations",
            {"content": b"[" + b"1," * 600_000 + b"1]", "headers": {"content-type": "application/json"}},
            413,
        ),
        ("post", "/events", {"json": {"user": 1, "item": 100, "value": "NaN"}, "headers": AUTH}, 422),
        ("post", "/events", {"json": {"events": []}, "headers": AUTH}, 422),
        ("post", "/predict", {"json": {"pairs": []}}, 422),
    ],
)
def test_bad_input_is_4xx_with_a_message(client, method, url, kwargs, status):
    r = getattr(client, method)(url, **kwargs)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"]


def test_auth(registry, tmp_path):
    app = create_app(registry, ServeConfig(token=TOKEN, read_token="reader", events=str(tmp_path / "e.db")))
    with TestClient(app) as c:
        assert c.post("/events", json={"user": 1, "item": 100}).status_code == 401
        assert (
            c.post("/events", json={"user": 1, "item": 100}, headers={"Authorization": "Bearer nope"}).status_code
            == 403
        )
        assert (
            c.post("/events", json={"user": 1, "item": 100}, headers={"Authorization": "Bearer reader"}).status_code
            == 403
        )
        assert c.post("/admin/reload", headers={"Authorization": "Basic abc"}).status_code == 401
        assert c.get("/users/2/recommendations").status_code == 401
        assert c.get("/users/2/recommendations", headers={"Authorization": "Bearer reader"}).status_code == 200
        assert c.get("/users/2/recommendations", headers=AUTH).status_code == 200
        assert c.get("/health").status_code == 200  # health and metrics stay open


def test_metrics_health_openapi(client):
    client.get("/users/2/recommendations")
    client.get("/users/nobody/recommendations")
    text = client.get("/metrics").text
    assert 'tastebud_requests_total{method="GET",route="/users/{user_id}/recommendations",status="200"} 2' in text
    assert 'tastebud_recommendations_total{path="popular"} 1' in text
    assert "tastebud_request_seconds_bucket" in text
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["version"] == "v0001" and health["n_items"] == 30
    spec = client.get("/openapi.json").json()
    assert {
        "/users/{user_id}/recommendations",
        "/recommendations",
        "/items/{item_id}/similar",
        "/predict",
        "/events",
        "/admin/reload",
    } <= set(spec["paths"])


def test_docs_pages_need_no_internet(client):
    # the pages name only this server's files (a browser test renders them with the internet cut off)
    for url, script in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        page = client.get(url)
        assert page.status_code == 200 and f"/docs/static/{script}" in page.text
        assert "cdn." not in page.text and "fonts.googleapis" not in page.text
        assert client.get(f"/docs/static/{script}").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "tastebud"


def test_hot_reload_without_failed_requests(client, registry, data):
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            statuses.append(client.get("/users/5/recommendations?k=3").status_code)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        models = {"bias": tb.get_model("bias")(reg_item_bias=10.0).fit(data)}
        assert publish_version(registry, models, data) == "v0002"
        r = client.post("/admin/reload", headers=AUTH)
        assert r.status_code == 200 and r.json()["version"] == "v0002" and r.json()["previous"] == "v0001"
        time.sleep(0.2)
    finally:
        stop.set()
        t.join()
    assert statuses and set(statuses) == {200}
    assert client.get("/health").json()["version"] == "v0002"
    # a named version (rollback) and a missing one
    assert client.post("/admin/reload", json={"version": "v0001"}, headers=AUTH).json()["version"] == "v0001"
    assert client.post("/admin/reload", json={"version": "v0042"}, headers=AUTH).status_code == 409
    assert client.get("/health").json()["version"] == "v0001"


class _Factors(Recommender):
    """A factor model for the index path: score = <p_u, q_i>; history vector = mean of item vectors."""

    supports_history = True

    def _score(self, user_idx, item_idx):
        q = self.item_factors_ if item_idx is None else self.item_factors_[item_idx]
        return self.user_factors_[user_idx] @ q.T

    def history_vector(self, item_idx, values):
        return self.item_factors_[item_idx].mean(axis=0)

    def _score_history(self, item_idx, values):
        return self.item_factors_ @ self.history_vector(item_idx, values)


def test_index_path_matches_exact_scoring():
    rng = np.random.default_rng(0)
    m = _Factors()
    m.name = "factors"
    m.users_, m.items_ = IdMap(np.arange(50)), IdMap(np.array([f"i{j}" for j in range(400)]))
    m.user_items_ = sp.random(50, 400, density=0.05, format="csr", random_state=0, dtype=np.float32)
    m.user_factors_ = rng.standard_normal((50, 8)).astype(np.float32)
    m.item_factors_ = rng.standard_normal((400, 8)).astype(np.float32)
    eng = Engine({"factors": m}, PolicyConfig(ann_min_items=1, index_spec="exact", short_history=0), "t")
    assert eng.served["factors"].index is not None
    for u in range(0, 50, 7):
        res = eng.recommend_user(u, k=10)
        assert res.items == m.recommend([u], k=10).items_of(0)
        assert all("which you had" in e for e in res.explanations)
    hist = ["i1", "i5", "i9", "zzz"]
    res = eng.recommend_history(hist, k=6)
    assert res.items == m.recommend_for_history(hist, k=6).items_of(0) and res.warnings
    hnsw = Engine({"factors": m}, PolicyConfig(ann_min_items=1, short_history=0), "t")
    got = hnsw.recommend_user(3, k=10, candidates=[f"i{j}" for j in range(0, 400, 4)]).items
    assert len(got) == 10 and all(int(i[1:]) % 4 == 0 for i in got)


@pytest.mark.parametrize("name", ["../x", "a/../../x", "a/b/c", "/abs", "a/", 7])
def test_an_index_name_that_leaves_its_folder_is_refused(tmp_path, name):
    from tastebud.core.errors import ModelFormatError
    from tastebud.serve.engine import index_path

    with pytest.raises(ModelFormatError, match="refused"):
        index_path(tmp_path, name)
    assert index_path(tmp_path, "ranker/ials") == tmp_path / "index" / "ranker" / "ials"




def test_real_uvicorn_server(registry):
    with serving(create_app(registry, ServeConfig(token=TOKEN))) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/health").json()["status"] == "ok"
        assert http.post("/events", json={"user": "live", "item": 100, "event_id": "x"}, headers=AUTH).status_code == 201
        body = http.get("/users/live/recommendations?k=3").json()
        assert body["path"] == "history" and 100 not in items_of(body)
        assert (
            http.post("/recommendations", content=b"{oops", headers={"content-type": "application/json"}).status_code
            == 422
        )


def test_retrain_and_serve_commands(tmp_path, data, monkeypatch):
    frame = data.to_frame().rename(columns={"value": "rating"})
    csv = tmp_path / "base.csv"
    frame.to_csv(csv, index=False)
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    reg = tmp_path / "reg"
    args = [
        "retrain",
        "--registry",
        str(reg),
        "--data",
        str(csv),
        "--rating-col",
        "rating",
        "--time-col",
        "timestamp",
        "--models",
        "popular,bias",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "v0001" in r.output and ModelRegistry(reg).current() == "v0001"
    # record events for a new person, then retrain from the saved base description
    with TestClient(create_app(reg, ServeConfig(token=TOKEN))) as c:
        for j in range(3):
            c.post("/events", json={"user": "fresh", "item": 100 + j, "timestamp": 2_000_000 + j}, headers=AUTH)
        assert c.get("/users/fresh/recommendations").json()["path"] == "history"
        r = runner.invoke(app, ["retrain", "--registry", str(reg)])
        assert r.exit_code == 0, r.output
        spec = ModelRegistry(reg).spec()
        assert spec["version"] == "v0002" and spec["events_through_seq"] == 3 and spec["models"] == ["popular", "bias"]
        assert c.post("/admin/reload", headers=AUTH).json()["version"] == "v0002"
        body = c.get("/users/fresh/recommendations").json()
        # now a known user (3 items: short history), and the old events are not counted twice
        assert body["new_events"] == 0 and body["history_length"] == 3
    r = runner.invoke(app, ["retrain", "--registry", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "base data" in r.output
    r = runner.invoke(app, ["serve", "--model", str(tmp_path / "missing"), "--port", "1"])
    assert r.exit_code == 2 and "no such folder" in r.output
    # serve starts uvicorn with the app: check the wiring without binding a port
    calls = {}
    monkeypatch.setattr("uvicorn.run", lambda application, **kw: calls.update(kw, app=application))
    r = runner.invoke(app, ["serve", "--model", str(reg), "--port", "8123", "--token", TOKEN])
    assert r.exit_code == 0, r.output
    assert calls["port"] == 8123 and calls["host"] == "127.0.0.1" and calls["app"].state.tb.engine.version == "v0002"


def test_serve_single_model_folder(tmp_path, data):
    tb.get_model("bias")().fit(data).save(tmp_path / "bias")
    with TestClient(create_app(tmp_path / "bias", ServeConfig(token=TOKEN))) as c:
        body = c.get("/users/4/recommendations?k=2").json()
        assert body["version"] == "model:bias" and len(body["items"]) == 2
    assert (tmp_path / "bias.events.db").is_file()


def _start_fleet(registry) -> tuple[int, subprocess.Popen]:
    """`tastebud serve --workers 2` on a free port, returned once both workers answer."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tastebud", "serve", "--model", str(registry), "--port", str(port), "--workers", "2"],
        env={**os.environ, "TASTEBUD_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        deadline, seen = time.time() + 60, {}
        while len(seen) < 2 and time.time() < deadline:  # both workers up and answering
            try:
                h = http.get("/health", headers={"Connection": "close"}).json()
                seen[h["worker"]] = h["version"]
            except httpx.TransportError:
                time.sleep(0.2)
    if len(seen) != 2 or set(seen.values()) != {"v0001"}:
        proc.kill()
        raise AssertionError(f"fleet did not come up: {seen} {proc.communicate(timeout=30)[1][-2000:]!r}")
    return port, proc


@pytest.mark.slow
def test_worker_fleet_follows_a_reload(registry, data):
    """`tastebud serve --workers 2`: two processes answer; a reload sent to one reaches both,
    one loading at a time, and no request fails meanwhile."""
    port, proc = _start_fleet(registry)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert publish_version(registry, {"bias": tb.get_model("bias")(reg_item_bias=10.0).fit(data)}, data) == "v0002"
            statuses: list[int] = []
            stop = threading.Event()

            def hammer() -> None:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                    while not stop.is_set():
                        statuses.append(
                            c.get("/users/5/recommendations?k=3", headers={"Connection": "close"}).status_code
                        )

            t = threading.Thread(target=hammer)
            t.start()
            try:
                while not statuses:
                    time.sleep(0.05)
                r = http.post("/admin/reload", headers=AUTH)
                assert r.status_code == 200 and r.json()["version"] == "v0002"
                deadline, seen = time.time() + 20, {}
                while time.time() < deadline:  # the other worker follows within its poll interval
                    h = http.get("/health", headers={"Connection": "close"}).json()
                    seen[h["worker"]] = h["version"]
                    if len(seen) == 2 and set(seen.values()) == {"v0002"}:
                        break
                    time.sleep(0.05)
                time.sleep(0.5)
            finally:
                stop.set()
                t.join()
            assert len(seen) == 2 and set(seen.values()) == {"v0002"}, seen
            assert statuses and set(statuses) == {200}
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert b"Traceback" not in err, err.decode()[-2000:]


@pytest.mark.slow
def test_worker_fleet_deals_connections_evenly(registry):
    """Eight keep-alive connections opened at once (as wrk opens them) end up four per worker:
    workers racing on a shared socket split them unevenly (5/3, 6/2), and the busier worker's
    queue sets the p99."""
    from tastebud.serve.fleet import HEARTBEAT_SECONDS

    port, proc = _start_fleet(registry)
    try:
        # the start-up probes' connections are closed; counts drop at the next heartbeat
        time.sleep(3 * HEARTBEAT_SECONDS)
        conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(8)]
        workers = []
        for c in conns:  # every connection is still open while the next one is asked
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while b"}" not in reply:
                reply += c.recv(4096)
            workers.append(reply.split(b'"worker":')[1].split(b",")[0].split(b"}")[0])
        for c in conns:
            c.close()
        counts = sorted(workers.count(w) for w in set(workers))
        assert counts == [4, 4], workers
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert b"Traceback" not in err, err.decode()[-2000:]


def test_metrics_add_up_other_workers_snapshots():
    """A fleet's scrape renders the answering worker's series plus the others' snapshots: counters
    and histogram buckets add up, gauges are the answering worker's, counts stay exact past 1e6."""
    from tastebud.serve.metrics import BUCKETS, Metrics

    def worker(requests: int, latency: float) -> Metrics:
        m = Metrics()
        m.counter("t_requests_total", "requests")
        m.histogram("t_seconds", "latency")
        m.gauge("t_up", "uptime", lambda: 7.5)
        m.inc("t_requests_total", requests, route="/a")
        m.observe("t_seconds", latency, route="/a")
        return m

    me, other = worker(1_234_567, 0.004), worker(3, 0.018)
    other.inc("t_requests_total", route="/b")  # a series only the other worker has
    foreign = other.snapshot() | {"buckets": [1.0]}  # another bucket layout: left out
    text = me.render([other.snapshot(), foreign])
    assert 't_requests_total{route="/a"} 1234570' in text
    assert 't_requests_total{route="/b"} 1' in text
    assert 't_seconds_bucket{route="/a",le="0.005"} 1' in text  # 4 ms (mine)
    assert 't_seconds_bucket{route="/a",le="0.015"} 1' in text
    assert 't_seconds_bucket{route="/a",le="0.02"} 2' in text  # + 18 ms (the other's)
    assert 't_seconds_count{route="/a"} 2' in text and "t_up 7.5" in text
    assert me.render().count("t_up 7.5") == 1 and 'route="/b"' not in me.render()
    assert 0.0075 in BUCKETS and 0.02 in BUCKETS  # the range a latency target of 25 ms needs


@pytest.mark.slow
def test_worker_fleet_metrics_count_every_worker(registry):
    """`GET /metrics` on a fleet counts the requests of both workers, whichever one answers it."""
    port, proc = _start_fleet(registry)
    route = 'tastebud_requests_total{method="GET",route="/users/{user_id}/recommendations",status="200"}'

    def on_one_connection(*paths: str) -> tuple[Any, list[httpx.Response]]:
        """(the worker, its answers): every request of one keep-alive connection meets one worker."""
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            worker = http.get("/health").json()["worker"]
            return worker, [http.get(path) for path in paths]

    try:
        served = [on_one_connection("/users/5/recommendations?k=3") for _ in range(40)]
        assert all(r.status_code == 200 for _, (r,) in served)
        assert len({worker for worker, _ in served}) == 2  # both workers answered some of the 40
        deadline, counted = time.time() + 10, {}
        while time.time() < deadline:  # each worker publishes its counts within its poll interval
            worker, (scrape,) = on_one_connection("/metrics")
            counted[worker] = next(
                (line.rsplit(" ", 1)[1] for line in scrape.text.splitlines() if line.startswith(route)), "0"
            )
            if len(counted) == 2 and set(counted.values()) == {"40"}:
                break
        assert len(counted) == 2 and set(counted.values()) == {"40"}, counted
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert b"Traceback" not in err, err.decode()[-2000:]


def test_connection_shares_leave_out_silent_workers(tmp_path, monkeypatch):
    from tastebud.serve import fleet

    fleet.ConnectionShares.create(tmp_path / "shares", 3)
    a, b, c = (fleet.ConnectionShares(tmp_path / "shares", slot) for slot in range(3))
    assert a.fewest_elsewhere() == float("inf")  # nobody else has spoken yet
    a.publish(4)
    b.publish(2)
    c.publish(3)
    assert (a.fewest_elsewhere(), b.fewest_elsewhere(), c.fewest_elsewhere()) == (2, 3, 2)
    now = time.monotonic()
    monkeypatch.setattr(fleet.time, "monotonic", lambda: now + fleet.STALE_SECONDS + 0.5)
    a.publish(4)  # b and c went silent (dead or loading): a no longer holds back for them
    assert a.fewest_elsewhere() == float("inf")


def test_balanced_acceptor_counts_connections_until_they_end(tmp_path):
    """A fleet worker's open-connection count (what the balance compares) goes up at each accept
    and back down when the connection ends; the protocol's own ``connection_lost`` still runs."""
    import asyncio
    import concurrent.futures

    from tastebud.serve import fleet

    ended: list[Exception | None] = []

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

        def connection_lost(self, exc):
            ended.append(exc)

    fleet.ConnectionShares.create(tmp_path / "shares", 1)
    shares = fleet.ConnectionShares(tmp_path / "shares", 0)
    counted = fleet.reporting_lost(Echo)

    async def until(check):
        for _ in range(500):
            if check():
                return
            await asyncio.sleep(0.01)

    async def scenario() -> tuple[int, int, int]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            acceptor = fleet.BalancedAcceptor(sock, lambda lost: counted(lost=lost), shares)
            conns = [await asyncio.open_connection(*sock.getsockname()) for _ in range(3)]
            for reader, writer in conns:
                writer.write(b"x")
                assert await reader.readexactly(1) == b"x"
            opened = acceptor.open
            for _, writer in conns[:2]:
                writer.close()
                await writer.wait_closed()
            await until(lambda: acceptor.open == 1)
            after_two = acceptor.open
            conns[2][1].close()
            await conns[2][1].wait_closed()
            await until(lambda: acceptor.open == 0)
            acceptor.close()
            await acceptor.wait_closed()
            return opened, after_two, acceptor.open

    # in a thread of its own: a session's browser (Playwright's sync API) may hold a running loop here
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, scenario()).result(timeout=60) == (3, 1, 0)
    assert len(ended) == 3


def test_a_fleet_verifies_a_version_once(registry, data, tmp_path, monkeypatch):
    """The worker that moves the fleet to a version checks its files' SHA-256 sums; the workers
    that follow read the same files unchecked (at 1M items a check is a second of CPU per worker,
    taken from the requests being answered meanwhile)."""
    from tastebud.serve.fleet import FleetControl
    from tastebud.serve.lifecycle import State

    FleetControl(tmp_path / "control").write(None, 0)
    config = ServeConfig(token=TOKEN, control=str(tmp_path / "control"))
    leader, follower = State(registry, config), State(registry, config)
    assert publish_version(registry, {"bias": tb.get_model("bias")(reg_item_bias=10.0).fit(data)}, data) == "v0002"
    loads: list[bool] = []
    load = Engine.load.__func__

    def recording(cls, source, version=None, *, verify=True):
        loads.append(verify)
        return load(cls, source, version, verify=verify)

    monkeypatch.setattr(Engine, "load", classmethod(recording))
    try:
        assert leader.reload().version == "v0002"
        follower.follow()
        assert follower.engine.version == "v0002"
        assert loads == [True, False]
    finally:
        leader.store.close()
        follower.store.close()


def test_a_replaced_version_goes_without_the_cycle_collector(tmp_path, data):
    """The swap after a reload skips the full garbage collection (a pause with the GIL held while
    requests wait) because a served version forms no reference cycle: it is freed by reference
    counting the moment it is swapped out. Checked on the model families with serving paths of
    their own (vector index, neighbours, torch towers, a blend)."""
    pytest.importorskip("torch")
    import gc
    import weakref

    names = ("ials", "itemknn", "ease", "svd", "two_tower", "popular")
    models = {n: tb.get_model(n)(**tb.get_model(n).fast_params).fit(data) for n in names}
    publish_version(tmp_path / "reg", models, data, {"collaborative": ["ials", "itemknn"], "short_history": 5})
    app = create_app(tmp_path / "reg", ServeConfig(token=TOKEN))
    with TestClient(app) as c:
        assert c.get("/users/4/recommendations?k=3").status_code == 200
        assert c.post("/recommendations", json={"items": [100, 101, 102, 103, 104, 105], "k": 3}).status_code == 200
        old = weakref.ref(app.state.tb.engine)
        gc.disable()
        try:
            assert c.post("/admin/reload", headers=AUTH).status_code == 200
            assert old() is None
        finally:
            gc.enable()


@pytest.mark.slow
def test_worker_fleet_that_cannot_start_stops_with_an_error(tmp_path, monkeypatch):
    """Workers that fail at start (here: their model folder is gone) stop the fleet instead of
    being restarted forever."""
    from tastebud.serve import fleet

    monkeypatch.setenv("TASTEBUD_SERVE_SOURCE", str(tmp_path / "gone"))
    monkeypatch.setenv("TASTEBUD_TOKEN", TOKEN)
    options = {"host": "127.0.0.1", "port": free_port(), "log_level": "critical"}
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="failed to start"):
        fleet.run_fleet(options, 2, tmp_path / "connections")
    assert time.monotonic() - started < 120
