"""The matrix lab's blend: POST /lab/api/matrix/blend against the library's blend fitted directly."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tastebud.core.progress import enabled
from tastebud.core.registry import get_model
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions
from tastebud.lab import LabState, create_lab_app
from tastebud.lab.blend import BLENDER, FOLDS, MAX_BLEND_CELLS, MEMBERS

SIZE = (80, 60, 2400)


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_lab_app(state=LabState(models=["bias"], synthetic_size=SIZE, data_root="/nonexistent")))


@pytest.fixture(scope="module")
def sample(client):
    return client.get("/lab/api/matrix/sample", params={"users": 30, "items": 40}).json()


@pytest.fixture(scope="module")
def filled(client, sample):
    r = client.post(
        "/lab/api/matrix/blend",
        json={"ratings": sample["observed"], "scale": sample["scale"], "hide": sample["held_out"]},
    )
    assert r.status_code == 200, r.text
    return r.json()


def as_array(rows) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64)


def test_the_seed_is_filled_by_cross_fitting(client):
    seed = client.get("/lab/api/matrix/seed").json()
    r = client.post("/lab/api/matrix/blend", json={"ratings": seed["ratings"], "scale": seed["scale"]})
    assert r.status_code == 200, r.text
    res = r.json()
    R = as_array(seed["ratings"])
    assert res["ratings"] == 14 and res["folds"] == FOLDS and [m["name"] for m in res["members"]] == list(MEMBERS)
    pred = np.asarray(res["predicted"])
    assert pred.shape == R.shape and np.isfinite(pred).all()
    assert (pred >= seed["scale"][0]).all() and (pred <= seed["scale"][1]).all()
    total = np.asarray(res["base"]) + np.array([m["contribution"] for m in res["members"]]).sum(axis=0)
    np.testing.assert_allclose(res["unclipped"], total, atol=0.01)


def test_too_few_ratings_are_refused_with_the_reason(client):
    ratings = [[4, 3, None], [None, 5, 2], [1, None, 4]]  # 6 known: below the blend's floor of 10
    r = client.post("/lab/api/matrix/blend", json={"ratings": ratings, "scale": [1, 5]})
    assert r.status_code == 400
    msg = r.json()["error"]
    assert "\n" not in msg and "6 ratings" in msg and "at least 10" in msg


def test_the_breakdown_adds_up_to_every_filled_cell(filled, sample):
    shape = np.shape(sample["observed"])
    assert [m["name"] for m in filled["members"]] == list(MEMBERS) and filled["blender"] == BLENDER
    contrib = np.array([m["contribution"] for m in filled["members"]])
    pred = np.array([m["predicted"] for m in filled["members"]])
    assert contrib.shape == pred.shape == (len(MEMBERS), *shape)
    total = np.asarray(filled["base"]) + contrib.sum(axis=0)
    np.testing.assert_allclose(filled["unclipped"], total, atol=0.01)  # each term rounded to 3 decimals
    np.testing.assert_allclose(filled["predicted"], np.clip(filled["unclipped"], *sample["scale"]), atol=1e-9)
    # a ridge blender: one weight per member, the same in every cell (contribution = weight x prediction)
    weights = contrib / pred
    np.testing.assert_allclose(weights, weights[:, :1, :1] * np.ones_like(weights), atol=2e-3)
    lo, hi = sample["scale"]
    assert np.all((pred >= lo) & (pred <= hi))  # members clip to the scale


def test_it_is_the_librarys_blend_on_the_cells_left_after_hiding(filled, sample):
    R = as_array(sample["observed"])
    held = np.array(sample["held_out"])
    truth = R[held[:, 0], held[:, 1]]
    R[held[:, 0], held[:, 1]] = np.nan
    rows, cols = np.nonzero(~np.isnan(R))
    data = Interactions(
        IdMap(np.arange(R.shape[0]), "user"),
        IdMap(np.arange(R.shape[1]), "item"),
        rows,
        cols,
        R[rows, cols],
        rating_scale=tuple(sample["scale"]),
    )
    assert filled["ratings"] == len(rows) and filled["folds"] == FOLDS
    with enabled(False):
        model = get_model("blend")(members=MEMBERS, blender=BLENDER, probe_by="folds", folds=FOLDS).fit(data)
    users, items = np.indices(R.shape).reshape(2, -1)
    direct = model.predict_idx(users, items).reshape(R.shape)
    np.testing.assert_allclose(filled["predicted"], direct, atol=1e-3)
    assert {m["name"]: m["probe_rmse"] for m in filled["members"]} == pytest.approx(model.probe_rmse_, abs=1e-4)
    held_rmse = np.sqrt(np.mean((direct[held[:, 0], held[:, 1]] - truth) ** 2))
    assert filled["rmse_held_out"] == pytest.approx(held_rmse, abs=1e-3)


def test_hidden_cells_never_reach_the_fit_and_results_repeat(client, filled, sample):
    ratings = [row[:] for row in sample["observed"]]
    for u, i in sample["held_out"]:
        ratings[u][i] = 1.0 if ratings[u][i] != 1.0 else 5.0  # change every hidden rating
    body = {"ratings": ratings, "scale": sample["scale"], "hide": sample["held_out"]}
    again = client.post("/lab/api/matrix/blend", json=body).json()
    assert again["predicted"] == filled["predicted"] and again["members"] == filled["members"]
    assert again["rmse_held_out"] != filled["rmse_held_out"]  # scored against the changed ratings
    plain = client.post("/lab/api/matrix/blend", json={"ratings": ratings, "scale": sample["scale"]}).json()
    assert plain["predicted"] != filled["predicted"] and plain["rmse_held_out"] is None


def test_a_person_without_ratings_is_filled_too(client, sample):
    ratings = [row[:] for row in sample["observed"]] + [[None] * len(sample["observed"][0])]
    body = client.post("/lab/api/matrix/blend", json={"ratings": ratings, "scale": sample["scale"]}).json()
    lo, hi = sample["scale"]
    assert all(lo <= v <= hi for v in body["predicted"][-1])


@pytest.mark.parametrize(
    "body,status,error",
    [
        ({"ratings": [[3.0] * 200] * 100}, 400, f"at most {MAX_BLEND_CELLS}"),
        ({"ratings": [[3.0, None]] * 60, "hide": [[0, 1]]}, 400, "no rating to hide"),
        ({"ratings": [[3.0, 4.0]] * 60, "hide": [[60, 0]]}, 400, "outside the 60 x 2 matrix"),
        ({"ratings": [[3.0, 4.0]] * 60, "hide": [[10**30, 0]]}, 400, "outside the 60 x 2 matrix"),
        ({"ratings": [[3.0, 4.0]] * 60, "scale": [5, 1]}, 400, "low < high"),
        ({"ratings": [[3.0, 4.0], [3.0]]}, 400, "same length"),
        ({"ratings": [[None, None]]}, 400, "no interactions"),
        ({"ratings": "nope"}, 422, "ratings"),
        ({"ratings": [[3.0]], "hide": [[0]]}, 422, "hide"),
    ],
)
def test_bad_bodies_are_one_line_4xx(client, body, status, error):
    r = client.post("/lab/api/matrix/blend", json=body)
    assert r.status_code == status and error in r.json()["error"] and "\n" not in r.json()["error"]


def test_movielens_block_blend_predicts_hidden_ratings_better_than_the_factorization(data_root):
    c = TestClient(create_lab_app(state=LabState(models=["bias"], data_root=data_root)))
    sample = c.get("/lab/api/matrix/sample", params={"dataset": "ml-100k"}).json()
    body = {"ratings": sample["observed"], "scale": sample["scale"], "hide": sample["held_out"]}
    res = c.post("/lab/api/matrix/blend", json=body).json()
    assert res["ratings"] == sum(v is not None for row in sample["observed"] for v in row) - len(sample["held_out"])
    assert res["folds"] == FOLDS and res["reg"] > 0
    # the page's claim on its default block (30 x 40, 90 hidden ratings): 0.85 against 1.04
    assert res["rmse_held_out"] < sample["rmse_held_out"] - 0.1
