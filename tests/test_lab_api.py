"""The lab: its matrix factorization (known answers, optimality), its JSON API and its page files."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tastebud.core.errors import ConfigError, DataError
from tastebud.data.synthetic import generate, seed_example
from tastebud.eval.evaluate import evaluate_fitted
from tastebud.lab import LabState, create_lab_app, router
from tastebud.lab.matrix import (
    DEFAULT_FACTORS,
    DEFAULT_ITERATIONS,
    DEFAULT_REG,
    fit_biased_mf,
    leave_one_out_rmse,
    objective,
)
from tastebud.lab.routes import STATIC
from tastebud.lab.state import LabError, holdout_split, item_vectors, pca_2d, popularity_profile
from tastebud.models.baseline import Bias, MostPopular

N = None
SIZE = (80, 60, 2400)
MODELS = ["random", "popular", "bias"]


@pytest.fixture(scope="module")
def state() -> LabState:
    return LabState(models=MODELS, synthetic_size=SIZE, data_root="/nonexistent")


@pytest.fixture(scope="module")
def client(state: LabState) -> TestClient:
    return TestClient(create_lab_app(state=state))


@pytest.fixture(scope="module")
def synth_lab():
    return generate(n_users=SIZE[0], n_items=SIZE[1], n_interactions=SIZE[2], explicit=True, random_state=0)


def seed_dense() -> list[list[float | None]]:
    data = seed_example()
    dense = data.matrix.toarray()
    mask = np.zeros(dense.shape, bool)
    coo = data.matrix.tocoo()
    mask[coo.row, coo.col] = True
    return [
        [float(v) if m else None for v, m in zip(row, mrow, strict=True)] for row, mrow in zip(dense, mask, strict=True)
    ]


# ---------------------------------------------------------------------- matrix factorization
def test_hand_worked_bias_only_two_users():
    # one item rated 5 and 3; mu = 4. With reg = 1 the exact minimiser is b_u = (+0.5, -0.5), b_i = 0
    # (b_u = (r - mu - b_i) / 2 for each user and b_i = -(b_1 + b_2) / 3 give b_i = 0), so the
    # predictions are 4.5 and 3.5 and the objective is 0.5 ** 2 * 2 + 1 * (0.25 + 0.25) = 1.0.
    res = fit_biased_mf([[5.0], [3.0]], factors=0, reg=1.0, iterations=50)
    np.testing.assert_allclose(res.predicted[:, 0], [4.5, 3.5], atol=1e-9)
    np.testing.assert_allclose(res.user_bias, [0.5, -0.5], atol=1e-9)
    assert res.mu == 4.0
    assert res.loss_history[-1] == pytest.approx(1.0, abs=1e-9)
    # without regularisation the biases reproduce both ratings exactly
    exact = fit_biased_mf([[5.0], [3.0]], factors=0, reg=0.0)
    np.testing.assert_allclose(exact.predicted[:, 0], [5.0, 3.0], atol=1e-9)
    assert exact.rmse == pytest.approx(0.0, abs=1e-9)


def test_bias_only_converges_to_the_closed_form_ridge_solution():
    R = np.array(seed_dense(), dtype=float)
    reg = 0.7
    res = fit_biased_mf(R, factors=0, reg=reg, iterations=500)
    rows, cols = np.nonzero(~np.isnan(R))
    n_u, n_i = R.shape
    X = np.zeros((len(rows), n_u + n_i))
    X[np.arange(len(rows)), rows] = 1
    X[np.arange(len(rows)), n_u + cols] = 1
    mu = np.nanmean(R)
    b = np.linalg.solve(X.T @ X + reg * np.eye(n_u + n_i), X.T @ (R[rows, cols] - mu))
    np.testing.assert_allclose(res.user_bias, b[:n_u], atol=1e-5)
    np.testing.assert_allclose(res.item_bias, b[n_u:], atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("factors,reg,biases", [(1, 0.0, True), (2, 0.1, True), (3, 1.0, False), (4, 0.05, True)])
def test_als_never_increases_the_objective_and_ends_on_an_exact_item_step(seed, factors, reg, biases):
    rng = np.random.default_rng(seed)
    R = rng.integers(1, 6, size=(7, 6)).astype(float)
    R[rng.random(R.shape) < 0.45] = np.nan
    R[0, 0] = 4.0
    res = fit_biased_mf(R, factors=factors, reg=reg, biases=biases, iterations=40, random_state=seed)
    hist = np.array(res.loss_history)
    assert np.all(np.diff(hist) <= 1e-9 * np.maximum(1, hist[:-1]))
    assert hist[-1] == pytest.approx(objective(R, res.mu, res.user_bias, res.item_bias, res.P, res.Q, reg), rel=1e-9)
    # the last half-step solved the items exactly: their gradient is zero (when reg > 0 the
    # minimiser is unique; with reg = 0 pinv gives a minimiser, whose gradient is zero too)
    mask = ~np.isnan(R)
    err = np.where(mask, res.predicted - np.nan_to_num(R), 0.0)
    grad_q = err.T @ res.P + reg * res.Q
    np.testing.assert_allclose(grad_q, 0.0, atol=1e-7)
    if biases:
        np.testing.assert_allclose(err.sum(axis=0) + reg * res.item_bias, 0.0, atol=1e-7)


def test_prediction_is_mu_plus_biases_plus_dot_product_and_deterministic():
    R = seed_dense()
    a = fit_biased_mf(R, factors=2, reg=0.1, random_state=0)
    b = fit_biased_mf(R, factors=2, reg=0.1, random_state=0)
    np.testing.assert_allclose(a.predicted, a.mu + a.user_bias[:, None] + a.item_bias[None, :] + a.P @ a.Q.T)
    np.testing.assert_array_equal(a.predicted, b.predicted)
    assert a.P.shape == (5, 2) and a.Q.shape == (5, 2)
    plain = fit_biased_mf(R, factors=2, reg=0.1, biases=False)
    assert plain.mu == 0.0 and not plain.user_bias.any()
    np.testing.assert_allclose(plain.predicted, plain.P @ plain.Q.T)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_one_matrix_is_completed(seed):
    # a rank-one matrix with two hidden cells: one factor and (almost) no regularisation recover it
    u = np.array([1.0, 2.0, 0.5, 1.5, 1.2, 0.8])
    v = np.array([2.0, 1.0, 3.0, 1.5, 2.5])
    full = np.outer(u, v)
    R = full.copy()
    R[1, 2] = R[4, 0] = np.nan
    res = fit_biased_mf(R, factors=1, reg=1e-6, biases=False, iterations=500, random_state=seed)
    np.testing.assert_allclose(res.predicted, full, atol=1e-3)


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"ratings": [[N, N]]}, DataError),
        ({"ratings": [[1.0, 2.0], [3.0]]}, DataError),
        ({"ratings": [[1.0, float("inf")]]}, DataError),
        ({"ratings": [[1.0, "x"]]}, DataError),
        ({"ratings": []}, DataError),
        ({"ratings": [[1.0]], "factors": -1}, ConfigError),
        ({"ratings": [[1.0]], "factors": 2.5}, ConfigError),
        ({"ratings": [[1.0]], "reg": -0.1}, ConfigError),
        ({"ratings": [[1.0]], "reg": float("nan")}, ConfigError),
        ({"ratings": [[1.0]], "factors": 0, "biases": False}, ConfigError),
    ],
)
def test_bad_input_names_the_problem(kwargs, error):
    with pytest.raises(error):
        fit_biased_mf(**kwargs)


# ---------------------------------------------------------------------- matrix API
def test_seed_endpoint_is_the_seed_example(client):
    body = client.get("/lab/api/matrix/seed").json()
    assert body["users"] == ["Amit", "Beth", "Carl", "Dana", "Eva"]
    assert body["items"] == ["Inception", "Arrival", "Up", "WALL-E", "John Wick"]
    assert body["ratings"] == seed_dense()
    assert sum(v is not None for row in body["ratings"] for v in row) == 14


def test_fit_endpoint_and_an_edit_changes_predictions(client):
    ratings = client.get("/lab/api/matrix/seed").json()["ratings"]
    first = client.post("/lab/api/matrix/fit", json={"ratings": ratings, "factors": 2, "reg": 0.1})
    assert first.status_code == 200
    body = first.json()
    direct = fit_biased_mf(seed_dense(), factors=2, reg=0.1)
    np.testing.assert_allclose(body["predicted"], direct.predicted, atol=1e-4)
    assert body["rmse"] == pytest.approx(direct.rmse, abs=1e-4)
    assert len(body["U"]) == 5 and len(body["U"][0]) == 2 and len(body["I"]) == 5
    ratings[2][0] = 1.0  # Carl rates Inception 1
    second = client.post("/lab/api/matrix/fit", json={"ratings": ratings, "factors": 2, "reg": 0.1}).json()
    assert abs(second["predicted"][3][0] - body["predicted"][3][0]) > 1e-3  # Dana's Inception moved


def test_fit_endpoint_rejects_bad_bodies(client):
    assert client.post("/lab/api/matrix/fit", json={"ratings": [[None, None]]}).status_code == 400
    assert "no observed cell" in client.post("/lab/api/matrix/fit", json={"ratings": [[None]]}).json()["error"]
    assert client.post("/lab/api/matrix/fit", json={"ratings": [[1.0]], "factors": 99}).status_code == 422
    assert client.post("/lab/api/matrix/fit", json={"ratings": "nope"}).status_code == 422
    assert client.post("/lab/api/matrix/fit", json={"ratings": [[1.0, 2.0], [3.0]]}).status_code == 400


def test_defaults_keep_the_seed_on_its_scale_without_memorising_it(client):
    # what the page sends: the seed's cells, its scale and the defaults it was given with the page
    seed = client.get("/lab/api/matrix/seed").json()
    defaults = seed["defaults"]
    assert defaults == {"factors": DEFAULT_FACTORS, "reg": DEFAULT_REG, "iterations": DEFAULT_ITERATIONS}
    body = {"ratings": seed["ratings"], "scale": seed["scale"], **defaults, "held_out": True}
    fit = client.post("/lab/api/matrix/fit", json=body).json()
    pred = np.array(fit["predicted"])
    assert pred.min() >= 1.0 and pred.max() <= 5.0
    assert fit["rmse"] > 0.5  # the 14 ratings are not reproduced: the model did not memorise them
    assert fit["rmse_held_out"] == pytest.approx(leave_one_out_rmse(seed["ratings"], scale=(1.0, 5.0)), abs=1e-4)
    # a memorising setting still shows predictions on the scale; the model's own sum is kept beside them
    loose = client.post("/lab/api/matrix/fit", json={**body, "factors": 2, "reg": 0.1, "held_out": False}).json()
    assert loose["unclipped"][2][0] > 5.0 and loose["predicted"][2][0] == 5.0  # Carl x Inception
    assert np.array(loose["predicted"]).max() <= 5.0 and loose["rmse_held_out"] is None
    assert loose["rmse"] < 0.1 < fit["rmse_held_out"] - loose["rmse"]


def test_leave_one_out_known_answer():
    # two users rated one item 5 and 3; hide either and the bias-only model (reg 0) predicts the other
    assert leave_one_out_rmse([[5.0], [3.0]], factors=0, reg=0.0) == pytest.approx(2.0, abs=1e-9)
    # clipped to the scale as shown: hiding the 5 predicts 3, shown as 3.5 (error 1.5); hiding the 3 errs by 2
    assert leave_one_out_rmse([[5.0], [3.0]], factors=0, reg=0.0, scale=(3.5, 5.0)) == pytest.approx(
        np.sqrt((1.5**2 + 2.0**2) / 2)
    )
    assert leave_one_out_rmse([[5.0, None]], factors=0) is None  # nothing left to fit


def test_defaults_predict_held_out_seed_ratings_better_than_less_regularised_settings():
    # docs/lab.md, "Why these defaults": on the seed, leave-one-out error falls as reg grows
    ratings = seed_dense()
    best = leave_one_out_rmse(ratings, scale=(1.0, 5.0))
    for factors in (1, 2):
        for reg in (0.1, 1.0, 2.0):
            other = leave_one_out_rmse(ratings, factors, reg, scale=(1.0, 5.0))
            assert best < other, (factors, reg, other)
    # more dimensions do not help at the default reg
    assert leave_one_out_rmse(ratings, 2, DEFAULT_REG, scale=(1.0, 5.0)) >= best - 1e-3


def test_errors_have_the_service_shape_on_any_app(client):
    bare = TestClient(_bare_app())
    for c in (client, bare):
        cases = [
            (c.post("/lab/api/matrix/fit", json={"ratings": [[None]]}), 400, "no observed cell"),
            (c.get("/lab/api/history", params={"user": "nobody"}), 404, "nobody"),
            (c.get("/lab/api/users", params={"dataset": "nope"}), 400, "unknown data set"),
            (c.get("/lab/static/secret.py"), 404, "no lab file"),
        ]
        for res, status, text in cases:
            assert res.status_code == status and res.json() == {"error": res.json()["error"]}
            assert text in res.json()["error"]
        invalid = c.post("/lab/api/matrix/fit", json={"ratings": [[1.0]], "factors": 99})
        assert invalid.status_code == 422 and invalid.json()["error"].startswith("factors: ")
        invalid = c.get("/lab/api/users", params={"limit": 0})
        assert invalid.status_code == 422 and invalid.json()["error"].startswith("limit: ")
    # the stand-alone lab answers unknown paths the same way
    res = client.get("/lab/api/no-such-endpoint")
    assert res.status_code == 404 and res.json() == {"error": "Not Found"}


def _bare_app() -> FastAPI:
    app = FastAPI()
    app.include_router(router)
    app.state.tastebud_lab = LabState(models=MODELS, synthetic_size=SIZE, data_root="/nonexistent")
    return app


def test_integer_vocabulary_ids_are_ints_in_every_endpoint(tmp_path):
    # ML-100K's ids are integers; a saved model trained on such data stands in for it here
    import pandas as pd

    from tastebud.data.interactions import Interactions

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(1, 31, 600), "item": rng.integers(100, 140, 600)})
    frame["rating"] = rng.integers(1, 6, len(frame)).astype(float)
    data = Interactions.from_frame(frame, "user", "item", "rating", scale=(1.0, 5.0))
    assert data.users.ids.dtype.kind == "i"
    MostPopular().fit(data).save(tmp_path / "pop")
    c = TestClient(create_lab_app(state=LabState(tmp_path, models=["popular"], data_root="/nonexistent")))
    q = {"dataset": "saved:pop"}
    user, item = int(data.users.ids[0]), int(data.items.ids[0])

    def ints(values):
        values = list(values)
        assert values and all(type(v) is int for v in values), values[:5]

    ints(u["user"] for u in c.get("/lab/api/users", params=q).json()["users"])
    ints(x["item"] for x in c.get("/lab/api/items", params=q).json())
    hist = c.get("/lab/api/history", params={**q, "user": str(user)}).json()
    ints([hist["user"]] + [x["item"] for x in hist["items"]])
    rec = c.post("/lab/api/recommend", json={**q, "user": str(user), "models": ["saved:pop"], "k": 5}).json()
    ints([rec["user"]] + [x["item"] for x in rec["results"][0]["items"]])
    cold = c.post("/lab/api/cold_start", json={**q, "items": [str(item)], "models": ["saved:pop"], "k": 5}).json()
    ints([x["item"] for x in cold["picked"]] + [x["item"] for x in cold["results"][0]["items"]])
    sim = c.get("/lab/api/similar", params={**q, "item": str(item), "models": ["saved:pop"]}).json()
    ints([sim["item"]["item"]] + [x["item"] for x in sim["results"][0]["items"]])
    ints(p["item"] for p in c.get("/lab/api/embedding", params=q).json()["points"])
    sample = c.get("/lab/api/matrix/sample", params={**q, "users": 5, "items": 6}).json()
    ints(sample["users"])
    ints(sample["items"])


def test_scores_say_what_kind_they_are(client, synth_lab):
    user = str(synth_lab.users.ids[5])
    body = client.post("/lab/api/recommend", json={"user": user, "models": ["popular", "bias", "random"]}).json()
    kinds = {r["model"]: r["score_kind"] for r in body["results"]}
    assert kinds == {"popular": "count", "bias": "rating", "random": "score"}
    item = str(synth_lab.items.ids[2])
    sim = client.get("/lab/api/similar", params={"item": item, "models": ["random"]}).json()
    assert sim["results"][0]["score_kind"] == "similarity"


def test_the_first_response_holds_the_seed_grid(client):
    html = client.get("/").text
    seed = seed_dense()
    for u, row in enumerate(seed):
        for i, v in enumerate(row):
            cell = re.search(rf'<td class="(\w+)" data-u="{u}" data-i="{i}"><input [^>]*value="([^"]*)"', html)
            assert cell, (u, i)
            assert cell.groups() == (("missing", "") if v is None else ("observed", f"{v:g}"))
    assert "Amit" in html and "John Wick" in html and "{{" not in html
    assert f'id="mx-k" min="0" max="4" step="1" value="{DEFAULT_FACTORS}"' in html
    assert f'value="{DEFAULT_REG:g}"' in html
    # and every control of the served page is labelled (the grid's cells by aria-label)
    inputs = re.findall(r"<(?:input|select)[^>]*>", html)
    labelled = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', html))
    for tag in inputs:
        ident = re.search(r'\bid="([^"]+)"', tag)
        assert "aria-label=" in tag or (ident and ident.group(1) in labelled), tag


def test_sample_matrix_matches_the_data_and_its_held_out_error(client, synth_lab):
    body = client.get("/lab/api/matrix/sample", params={"users": 12, "items": 15, "factors": 3, "reg": 1.0}).json()
    data = synth_lab
    assert len(body["users"]) == 12 and len(body["items"]) == 15
    uidx = data.users.index(body["users"])
    iidx = data.items.index(body["items"])
    block = data.matrix[uidx][:, iidx].toarray()
    known = data.matrix[uidx][:, iidx].toarray() != 0
    obs = np.array([[np.nan if v is None else v for v in row] for row in body["observed"]])
    np.testing.assert_array_equal(~np.isnan(obs), known)
    np.testing.assert_array_equal(obs[known], block[known])
    # the most active users and most rated items were chosen
    assert set(uidx) == set(np.argsort(-data.user_counts(), kind="stable")[:12])
    held = np.array(body["held_out"])
    assert len(held) == round(0.1 * known.sum())
    pred = np.array(body["predicted"])
    rmse = np.sqrt(np.mean((pred[held[:, 0], held[:, 1]] - obs[held[:, 0], held[:, 1]]) ** 2))
    assert body["rmse_held_out"] == pytest.approx(rmse, abs=2e-3)


# ---------------------------------------------------------------------- explorer API
def test_datasets_models_users_items(client, synth_lab, tmp_path):
    assert [d["name"] for d in client.get("/lab/api/datasets").json()] == ["synthetic"]
    names = [m["name"] for m in client.get("/lab/api/models").json()]
    assert names == MODELS
    users = client.get("/lab/api/users", params={"limit": 10}).json()["users"]
    counts = synth_lab.user_counts()
    assert [u["count"] for u in users] == sorted(counts, reverse=True)[:10]
    for u in users:
        assert counts[synth_lab.users.index([u["user"]])[0]] == u["count"]
    items = client.get("/lab/api/items", params={"limit": 5}).json()
    assert [i["count"] for i in items] == sorted(synth_lab.item_counts(), reverse=True)[:5]
    title = items[0]["title"]
    found = client.get("/lab/api/items", params={"q": title.lower()[:6]}).json()
    assert found and all(title.lower()[:6] in x["title"].lower() for x in found)
    # ML-100K appears when the data root holds it
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t1\t5\t0\n")
    assert "ml-100k" in LabState(data_root=tmp_path).dataset_names()


def test_history_is_the_users_row(client, synth_lab):
    user = str(synth_lab.users.ids[3])
    body = client.get("/lab/api/history", params={"user": user, "limit": 1000}).json()
    row = synth_lab.matrix[3]
    assert body["total"] == row.nnz
    got = {x["item"]: x["rating"] for x in body["items"]}
    assert got == {str(synth_lab.items.ids[j]): float(v) for j, v in zip(row.indices, row.data, strict=True)}
    ratings = [x["rating"] for x in body["items"]]
    assert ratings == sorted(ratings, reverse=True)
    assert all(x["title"] and isinstance(x["genres"], list) for x in body["items"])
    assert client.get("/lab/api/history", params={"user": "nobody"}).status_code == 404


def test_recommend_side_by_side(client, synth_lab):
    user = str(synth_lab.users.ids[5])
    body = client.post("/lab/api/recommend", json={"user": user, "models": ["popular", "bias"], "k": 7}).json()
    assert [r["model"] for r in body["results"]] == ["popular", "bias"]
    pop = body["results"][0]
    # brute force: the 7 most popular items the user has not seen
    counts = synth_lab.item_counts().astype(float)
    counts[synth_lab.matrix[5].indices] = -np.inf
    expected = np.argsort(-counts, kind="stable")[:7]
    assert [x["score"] for x in pop["items"]] == [float(c) for c in counts[expected]]
    assert {x["item"] for x in pop["items"]} >= {str(synth_lab.items.ids[j]) for j in expected[:5]}
    assert [x["rank"] for x in pop["items"]] == list(range(1, 8))
    assert all(x["explanation"]["text"] for x in pop["items"])
    assert body["overlap"]["jaccard"][0][0] == 1.0
    a = {x["item"] for x in pop["items"]}
    b = {x["item"] for x in body["results"][1]["items"]}
    assert body["overlap"]["jaccard"][0][1] == pytest.approx(len(a & b) / len(a | b), abs=1e-3)


def test_recommend_errors_are_4xx(client):
    assert client.post("/lab/api/recommend", json={"user": "nobody", "models": ["popular"]}).status_code == 404
    r = client.post("/lab/api/recommend", json={"user": "u1", "models": ["no-such-model"]})
    assert r.status_code == 400 and "no-such-model" in r.json()["error"]
    assert client.post("/lab/api/recommend", json={"user": "u1", "models": []}).status_code == 422
    assert client.post("/lab/api/recommend", json={"user": "u1", "models": ["popular"], "k": 0}).status_code == 422
    r = client.post("/lab/api/recommend", json={"dataset": "nope", "user": "u1", "models": ["popular"]})
    assert r.status_code == 400 and "unknown data set" in r.json()["error"]


def test_cold_start_answers_from_every_history_model(client, synth_lab):
    picked = [str(synth_lab.items.ids[j]) for j in (0, 4, 9, 16, 25)]
    body = client.post("/lab/api/cold_start", json={"items": picked, "k": 5}).json()
    assert [r["model"] for r in body["results"]] == MODELS  # all three baselines take a history
    assert [p["item"] for p in body["picked"]] == picked
    for r in body["results"]:
        assert r["error"] is None
        got = [x["item"] for x in r["items"]]
        assert len(got) == 5 and not set(got) & set(picked)
    pop = next(r for r in body["results"] if r["model"] == "popular")
    model = MostPopular().fit(synth_lab)
    assert [x["item"] for x in pop["items"]] == model.recommend_for_history(picked, k=5).items_of(0)
    assert client.post("/lab/api/cold_start", json={"items": ["no-such-item"]}).status_code == 404
    assert client.post("/lab/api/cold_start", json={"items": []}).status_code == 422


def test_similar_items_per_model(client, synth_lab):
    item = str(synth_lab.items.ids[2])
    body = client.get("/lab/api/similar", params={"item": item, "models": ["popular", "bias"], "k": 4}).json()
    assert body["item"]["item"] == item
    pop, bias = body["results"]
    assert len(pop["items"]) == 4 and item not in {x["item"] for x in pop["items"]}
    assert bias["items"] == [] and "similarity" in bias["error"]  # Bias has no item-to-item scores
    assert client.get("/lab/api/similar", params={"item": "zzz"}).status_code == 404


def test_embedding_map(client, synth_lab, state):
    body = client.get("/lab/api/embedding", params={"source": "svd", "limit": 40}).json()
    assert len(body["points"]) == 40
    xy = np.array([[p["x"], p["y"]] for p in body["points"]])
    assert np.abs(xy).max() == pytest.approx(1.0) and np.abs(xy).max() <= 1.0
    assert {p["genre"] for p in body["points"]} <= set(body["legend"])
    assert {s["name"] for s in body["sources"]} >= {"svd", "genres"}
    assert client.get("/lab/api/embedding", params={"source": "genres"}).status_code == 200
    assert client.get("/lab/api/embedding", params={"source": "model:nope"}).status_code == 400


def test_item_vectors_and_pca():
    data = generate(n_users=30, n_items=20, n_interactions=300, random_state=1)
    model = Bias().fit(data)
    assert item_vectors(model) is None
    model.item_factors_ = np.arange(20 * 8, dtype=np.float32).reshape(20, 8)
    name, vec = item_vectors(model)
    assert name == "item_factors_" and vec.shape == (20, 8)
    # points on a line: the second component is zero, the first keeps their order
    line = np.outer(np.arange(6.0), [1.0, 2.0, 2.0])
    xy = pca_2d(line)
    np.testing.assert_allclose(xy[:, 1], 0.0, atol=1e-9)
    assert np.all(np.diff(xy[:, 0]) > 0) or np.all(np.diff(xy[:, 0]) < 0)
    assert np.abs(xy[:, 0]).max() == pytest.approx(1.0)
    # against numpy's SVD, up to sign and scale
    X = np.random.default_rng(0).normal(size=(30, 5)) * [5, 3, 1, 0.5, 0.1]
    Xc = X - X.mean(axis=0)
    ref = Xc @ np.linalg.svd(Xc, full_matrices=False)[2][:2].T
    got = pca_2d(X)
    for j in range(2):
        assert abs(np.corrcoef(ref[:, j], got[:, j])[0, 1]) == pytest.approx(1.0)


def test_evaluation_agrees_with_tastebud_eval(client, state, synth_lab):
    body = client.post("/lab/api/evaluate", json={"models": ["popular", "random"], "k": 10}).json()
    pop, rnd = body["results"]
    split = holdout_split(synth_lab)
    model = MostPopular().fit(split.train)
    direct = evaluate_fitted(model, split, 10)
    for key in ("ndcg@10", "recall@10", "precision@10", "coverage"):
        assert pop["metrics"][key] == pytest.approx(direct[key], rel=1e-9)
    assert pop["precision"][9] == pytest.approx(pop["metrics"]["precision@10"])
    assert pop["recall"][9] == pytest.approx(pop["metrics"]["recall@10"])
    assert np.all(np.diff(pop["recall"]) >= -1e-12)
    for r in (pop, rnd):
        assert sum(r["popularity"]["recommended"]) == pytest.approx(1.0, abs=1e-3)
    # popularity bias: MostPopular fills the most popular decile, random does not
    assert pop["popularity"]["recommended"][-1] > pop["popularity"]["held_out"][-1]
    assert pop["popularity"]["recommended"][-1] > rnd["popularity"]["recommended"][-1]
    assert body["report"]["test_interactions"] == len(split.test)


def test_holdout_split_and_popularity_profile():
    data = generate(n_users=40, n_items=30, n_interactions=600, random_state=2)
    split = holdout_split(data)
    counts = data.user_counts()
    test_counts = np.bincount(split.test.user_idx, minlength=data.n_users)
    np.testing.assert_array_equal(test_counts, np.where(counts >= 5, np.floor(counts * 0.2), 0))
    assert len(split.train) + len(split.test) == len(data)
    pairs = lambda d: set(zip(d.user_idx.tolist(), d.item_idx.tolist(), strict=True))  # noqa: E731
    assert not pairs(split.train) & pairs(split.test)
    # ten items with counts 0..9, every slot on the most popular one: all in the last decile
    rec = np.full((3, 2), 9)
    rel = sp.csr_matrix(([1, 1], ([0, 1], [0, 5])), shape=(3, 10))
    prof = popularity_profile(rec, rel, np.arange(10))
    assert prof["recommended"] == [0.0] * 9 + [1.0]
    assert prof["held_out"][0] == 0.5 and prof["held_out"][5] == 0.5
    assert prof["mean_count_recommended"] == 9.0


def test_saved_models_folder(tmp_path, synth_lab):
    model = MostPopular().fit(synth_lab)
    model.save(tmp_path / "pop")
    st = LabState(tmp_path, models=["popular"], synthetic_size=SIZE, data_root="/nonexistent")
    assert st.dataset_names() == ["synthetic", "saved:pop"]
    c = TestClient(create_lab_app(state=st))
    # the saved model was trained on the synthetic data (same fingerprint), so it is offered there too
    assert "saved:pop" in [m["name"] for m in c.get("/lab/api/models", params={"dataset": "synthetic"}).json()]
    user = str(synth_lab.users.ids[0])
    for dataset in ("synthetic", "saved:pop"):
        body = c.post(
            "/lab/api/recommend", json={"dataset": dataset, "user": user, "models": ["saved:pop"], "k": 5}
        ).json()
        assert [x["item"] for x in body["results"][0]["items"]] == model.recommend([user], k=5).items_of(0)
    # a single model folder works too, and a folder without models is refused at start
    assert LabState(tmp_path / "pop").dataset_names()[-1] == "saved:pop"
    (tmp_path / "empty").mkdir()
    with pytest.raises(LabError, match="no saved model"):
        create_lab_app(str(tmp_path / "empty"))


def test_state_errors(state):
    with pytest.raises(LabError, match="unknown data set"):
        state.dataset("imaginary")
    with pytest.raises(LabError, match="choose at least one"):
        state.check_models("synthetic", [])


# ---------------------------------------------------------------------- page, files, mounting, CLI
def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "tastebud lab" in page.text
    assert client.get("/lab/").text == page.text
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/lab/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert client.get("/lab/static/secret.py").status_code == 404
    assert client.get("/lab/static/..%2Froutes.py").status_code == 404


def test_page_fetches_nothing_from_the_network():
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (path.name, urls)
        assert "@import" not in text and "cdn" not in text.lower()


def test_page_controls_have_labels():
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'<(?:input|select)[^>]*\bid="([^"]+)"', html))
    labelled = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', html))
    assert ids and ids <= labelled, ids - labelled
    assert '<html lang="en">' in html


def test_router_mounts_on_any_app():
    app = FastAPI()
    app.include_router(router)
    c = TestClient(app)
    assert "tastebud lab" in c.get("/lab/").text
    assert len(c.get("/lab/api/matrix/seed").json()["users"]) == 5


def test_cli_command(tmp_path):
    import typer
    from typer.testing import CliRunner

    from tastebud.lab.commands import register

    app = typer.Typer()
    register(app)

    @app.command("other")
    def other() -> None:  # a second command keeps typer from flattening the app into `lab`
        pass

    runner = CliRunner()
    help_text = runner.invoke(app, ["lab", "--help"]).output
    assert "--port" in help_text and "--model" in help_text
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["lab", "--port", "1", "--model", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no saved model" in result.output


def test_tastebud_cli_has_the_lab_command():
    from typer.main import get_command

    from tastebud.cli import app

    assert "lab" in get_command(app).commands


def test_lab_command_serves_the_page_with_no_model():
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "import typer; from tastebud.lab.commands import register; app = typer.Typer(); register(app); app.command('x')(lambda: None); app()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "lab", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    assert "tastebud lab" in r.read().decode()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail(
                        f"tastebud lab did not start: {proc.stdout.read().decode() if proc.poll() is not None else 'timeout'}"
                    )
                time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab/api/matrix/seed", timeout=10) as r:
            assert b"Amit" in r.read()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_movielens_100k_in_the_lab(data_root):
    from tastebud.data.movielens import ml100k_folds

    st = LabState(models=["popular", "bias"], data_root=data_root)
    c = TestClient(create_lab_app(state=st))
    assert [d["name"] for d in c.get("/lab/api/datasets").json()] == ["synthetic", "ml-100k"]
    sample = c.get("/lab/api/matrix/sample", params={"dataset": "ml-100k", "users": 20, "items": 10}).json()
    assert sample["titles"][0] == "Star Wars (1977)"  # the most rated movie of ML-100K (583 ratings)
    assert sample["items"][0] == 50 and all(type(u) is int for u in sample["users"])  # ids as ML-100K has them
    hist = c.get("/lab/api/history", params={"dataset": "ml-100k", "user": 1, "limit": 5}).json()
    assert hist["total"] == 272 and hist["items"][0]["rating"] == 5.0
    body = c.post("/lab/api/recommend", json={"dataset": "ml-100k", "user": 1, "models": ["popular"], "k": 5}).json()
    seen = {
        x["item"]
        for x in c.get("/lab/api/history", params={"dataset": "ml-100k", "user": 1, "limit": 2000}).json()["items"]
    }
    got = [x["item"] for x in body["results"][0]["items"]]
    assert len(got) == 5 and not set(got) & seen and body["user"] == 1
    assert all("(" in x["title"] for x in body["results"][0]["items"])  # real titles with years
    ev = c.post("/lab/api/evaluate", json={"dataset": "ml-100k", "models": ["popular"]}).json()
    split = ml100k_folds(data_root, folds=(1,))[0]
    direct = evaluate_fitted(MostPopular().fit(split.train), split, 10)
    assert ev["split"] == "u1"
    assert ev["results"][0]["metrics"]["ndcg@10"] == pytest.approx(direct["ndcg@10"], rel=1e-9)


def test_a_model_that_cannot_train_shows_its_error_beside_the_others():
    st = LabState(
        models=["popular", "bias"], synthetic_size=SIZE, data_root="/nonexistent", params={"bias": {"epochs": -1}}
    )
    c = TestClient(create_lab_app(state=st))
    r = c.post("/lab/api/recommend", json={"user": "u1", "models": ["popular", "bias"], "k": 3})
    assert r.status_code == 200
    pop, bias = r.json()["results"]
    assert len(pop["items"]) == 3 and pop["error"] is None
    assert bias["items"] == [] and "epochs" in bias["error"]
    ev = c.post("/lab/api/evaluate", json={"models": ["bias"]}).json()["results"][0]
    assert "epochs" in ev["error"]


def test_matrix_fit_refuses_extreme_ratings_with_a_4xx():
    # found by the schemathesis fuzzer: a huge rating made the ridge system singular (a 500)
    from fastapi.testclient import TestClient

    from tastebud.lab.routes import create_lab_app

    client = TestClient(create_lab_app())
    res = client.post("/lab/api/matrix/fit", json={"ratings": [[370243673.0]], "biases": False})
    assert res.status_code == 400 and "between" in res.json()["error"]
