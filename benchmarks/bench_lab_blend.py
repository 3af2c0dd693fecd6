"""The matrix lab's blend: which members and blender, on the blocks the lab's real matrix shows.

Each block is what ``GET /lab/api/matrix/sample`` returns (the most active users x the most rated
items). A tenth of its known cells is hidden (seeds 1, 2, 3: the page scores seed 0's tenth, which
no choice here reads), the blend is fitted on the rest through ``tastebud.lab.blend.fit_blend`` and
scored on the hidden cells. Rows: the lab's choice, one probe instead of cross-fitting, fewer members (the blend's ``fast_params``),
``auto`` instead of ``ridge``, and the page's factorization and the bias model
alone for reference.

Run: .venv/bin/python benchmarks/bench_lab_blend.py
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from common import DATA, markdown_table, write_section
from tastebud.core.progress import enabled
from tastebud.core.registry import get_model
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions
from tastebud.lab import LabState, create_lab_app
from tastebud.lab.blend import FOLDS, MEMBERS, fit_blend
from tastebud.lab.matrix import fit_biased_mf

MEASURES = ["src/tastebud/lab/blend.py", "src/tastebud/lab/matrix.py", "src/tastebud/models/blend.py"]
SEEDS = (1, 2, 3)
BLOCKS = [("ml-100k", 15, 20), ("ml-100k", 30, 40), ("ml-100k", 100, 150), ("synthetic", 30, 40)]
FAST = dict(get_model("blend").fast_params["members"])
CONFIGS = {
    "lab: 5 members, ridge, 5 folds": (MEMBERS, "ridge", FOLDS),
    "lab members, ridge, one 10 % probe": (MEMBERS, "ridge", None),
    "lab members, auto, 5 folds": (MEMBERS, "auto", FOLDS),
    "3 members (fast_params), ridge, 5 folds": (FAST, "ridge", FOLDS),
}  # Bayesian MF is not tried: one fit takes 20-50 s here, six per cross-fitted blend, too slow for a click


def carve(R: np.ndarray, seed: int) -> np.ndarray:
    known = np.argwhere(~np.isnan(R))
    return known[np.random.default_rng(seed).permutation(len(known))[: int(round(0.1 * len(known)))]]


def reference(R: np.ndarray, hide: np.ndarray, scale: tuple[float, float]) -> dict[str, tuple[float, float]]:
    """The page's factorization (k = 4, lambda = 1) and the bias model on the same cells."""
    truth = R[hide[:, 0], hide[:, 1]]
    fit = R.copy()
    fit[hide[:, 0], hide[:, 1]] = np.nan
    start = time.perf_counter()
    mf = np.clip(fit_biased_mf(fit, 4, 1.0).predicted, *scale)[hide[:, 0], hide[:, 1]]
    mf_s = time.perf_counter() - start
    rows, cols = np.nonzero(~np.isnan(fit))
    data = Interactions(
        IdMap(np.arange(R.shape[0]), "user"),
        IdMap(np.arange(R.shape[1]), "item"),
        rows,
        cols,
        fit[rows, cols],
        rating_scale=scale,
    )
    start = time.perf_counter()
    bias = get_model("bias")().fit(data).predict_idx(hide[:, 0], hide[:, 1])
    bias_s = time.perf_counter() - start
    return {
        "factorization (the page's, k = 4, lambda = 1)": (_rmse(mf, truth), mf_s),
        "bias alone": (_rmse(bias, truth), bias_s),
    }


def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def main() -> None:
    client = TestClient(create_lab_app(state=LabState(models=["bias"], data_root=DATA)))
    rows = []
    for dataset, n_users, n_items in BLOCKS:
        sample = client.get("/lab/api/matrix/sample", params={"dataset": dataset, "users": n_users, "items": n_items})
        body = sample.json()
        R = np.array([[np.nan if v is None else v for v in row] for row in body["observed"]], dtype=np.float64)
        scale = (float(body["scale"][0]), float(body["scale"][1]))
        results: dict[str, list[tuple[float, float]]] = {}
        for seed in SEEDS:
            hide = carve(R, seed)
            for name, pair in reference(R, hide, scale).items():
                results.setdefault(name, []).append(pair)
            for name, (members, blender, folds) in CONFIGS.items():
                with enabled(False):
                    fill = fit_blend(R, scale, hide.tolist(), members=members, blender=blender, folds=folds)
                results.setdefault(name, []).append((float(fill.rmse_held_out), fill.seconds))
                print(dataset, n_users, n_items, seed, name, fill.blender, round(fill.rmse_held_out, 4), flush=True)
        known = int((~np.isnan(R)).sum())
        for name, pairs in results.items():
            errs, secs = np.array(pairs).T
            rows.append(
                {
                    "block": f"{dataset} {n_users} x {n_items} ({known} ratings)",
                    "model": name,
                    "hidden RMSE (mean of 3 carves)": f"{errs.mean():.4f}",
                    "min-max": f"{errs.min():.4f}-{errs.max():.4f}",
                    "fit s (median)": f"{np.median(secs):.2f}",
                }
            )
    body = (
        "## Matrix lab: the blend's members and blender\n\n"
        "Blocks as `GET /lab/api/matrix/sample` returns them; a tenth of the known cells hidden (seeds 1-3, not "
        "the page's seed 0), the blend fitted on the rest by `tastebud.lab.blend.fit_blend` (cross-fitted on 5 "
        "folds, or one random 10 % probe where the row says so) and scored on them. Fit seconds include predicting and explaining every cell; "
        "the machine is shared (2 cores), so they are indicative.\n\n" + markdown_table(pd.DataFrame(rows))
    )
    write_section("lab_blend", body, measures=MEASURES)


if __name__ == "__main__":
    main()
