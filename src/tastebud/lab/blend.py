"""The lab's blend: the library's ``blend`` model filling a small user x item matrix.

The blend (docs/blend.md; Koren 2009, Toescher, Jahrer & Bell 2009; Jahrer, Toescher & Legenstein
2010) cross-fits its members: the known cells are split into 5 folds, every member is fitted on four
and predicts the fifth, the blender learns on those held-out predictions of every known cell, the
members are refitted on all the known cells, and the blend predicts

    r_ui ~ w_0 + sum_m w_m x_m(u, i),

with ``x_m`` member m's (clipped) prediction. ``contributions`` splits each filled cell into
``w_m x_m`` per member plus the intercept, which the page shows for a clicked cell.

What the lab fixes, for matrices of a few dozen to a few thousand ratings, compared on hidden
cells of the lab's own blocks by ``benchmarks/bench_lab_blend.py`` (docs/lab.md, "The blend"):

* members: bias, item- and user-kNN with the baseline, SVD and SVD++ at their defaults. Bayesian
  MF takes tens of seconds a fit, too slow to refit on a click; timeSVD++ needs times a matrix
  does not have.
* blender: ``ridge``. ``auto`` may pick FWLS on a small probe, which cannot fit members x
  meta-features weights from a few dozen ratings.
* cross-fitting with the blend's default 5 folds: every known rating is a blender row, so the
  seed's 14 ratings can be blended (one probe would leave its blender a rating or two). On so few
  ratings the weights are a picture of the method, not a reliable model: the page says so.
  The blend's floor (``MIN_CROSS_FIT`` ratings) refuses smaller matrices with a 400.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tastebud.core.errors import DataError
from tastebud.core.progress import enabled
from tastebud.core.registry import get_model
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions
from tastebud.lab.matrix import as_matrix, clip_to_scale

_KNN = {"prediction": "baseline", "similarity": "pearson_baseline"}
MEMBERS: dict[str, dict[str, Any]] = {"bias": {}, "itemknn": _KNN, "userknn": _KNN, "svd": {}, "svdpp": {}}
BLENDER = "ridge"
FOLDS = 5  # the blend's own default
MAX_BLEND_CELLS = 15_000  # every cell is predicted and explained by every member: bounded per request


@dataclass
class BlendFill:
    """A blend fitted to a matrix's known cells and filling all of them.

    ``contribution[m] = weight_m * member_predicted[m]`` and ``predicted = base + sum_m contribution[m]``
    (unclipped); ``rmse_held_out`` is on the ``hide`` cells, which no member nor the blender saw.
    """

    members: list[str]
    params: dict[str, dict[str, Any]]
    blender: str
    reg: float | None  # the ridge penalty (None: LightGBM)
    folds: int | None  # None: one random probe
    ratings: int
    member_predicted: np.ndarray  # (members, users, items)
    contribution: np.ndarray  # (members, users, items)
    base: np.ndarray  # (users, items)
    predicted: np.ndarray  # (users, items), unclipped
    probe_rmse: dict[str, float]
    inner_rmse: float
    rmse: float
    rmse_held_out: float | None
    seconds: float

    def to_dict(self, decimals: int = 3, scale: tuple[float, float] | None = None) -> dict[str, Any]:
        """JSON-ready; ``predicted`` is clipped to ``scale`` as shown, ``unclipped`` is the blend's sum."""

        def r(a: np.ndarray) -> list[Any]:
            return np.round(a.astype(np.float64), decimals).tolist()

        return {
            "members": [
                {
                    "name": name,
                    "params": self.params[name],
                    "probe_rmse": round(self.probe_rmse[name], 4),
                    "predicted": r(self.member_predicted[j]),
                    "contribution": r(self.contribution[j]),
                }
                for j, name in enumerate(self.members)
            ],
            "base": r(self.base),
            "predicted": r(np.asarray(clip_to_scale(self.predicted, scale))),
            "unclipped": r(self.predicted),
            "blender": self.blender,
            "reg": self.reg,
            "folds": self.folds,
            "ratings": self.ratings,
            "rmse_probe_inner": round(self.inner_rmse, 4),
            "rmse": round(self.rmse, 4),
            "rmse_held_out": None if self.rmse_held_out is None else round(self.rmse_held_out, 4),
            "ms": round(self.seconds * 1000, 1),
        }


def fit_blend(
    ratings: np.ndarray | list[list[float | None]],
    scale: tuple[float, float] | None = None,
    hide: Sequence[Sequence[int]] = (),
    members: dict[str, dict[str, Any]] = MEMBERS,
    blender: str = BLENDER,
    folds: int | None = FOLDS,
    random_state: int = 0,
) -> BlendFill:
    """Fit the lab's blend to the known cells of ``ratings`` (NaN / None = missing) less ``hide``.

    Members clip to ``scale`` (None: no clipping). ``members``, ``blender`` and ``folds`` (None: one
    random 10 % probe instead of cross-fitting) are the blend's own parameters
    (``benchmarks/bench_lab_blend.py`` compares choices through them). Deterministic under
    ``random_state``.
    """
    start = time.perf_counter()
    R = as_matrix(ratings)
    clip_to_scale(0.0, scale)  # a bad scale fails here, before any member is fitted
    if R.size > MAX_BLEND_CELLS:
        raise DataError(
            f"ratings has {R.size} cells; the blend fills at most {MAX_BLEND_CELLS} (every member predicts every cell)"
        )
    held = _hidden_cells(R, hide)
    truth = R[held[:, 0], held[:, 1]]
    R[held[:, 0], held[:, 1]] = np.nan
    rows, cols = np.nonzero(~np.isnan(R))
    n_users, n_items = R.shape
    data = Interactions(
        IdMap(np.arange(n_users), "user"),
        IdMap(np.arange(n_items), "item"),
        rows,
        cols,
        R[rows, cols],
        explicit=True,
        rating_scale=None if scale is None else (float(scale[0]), float(scale[1])),
    )
    model = get_model("blend")(
        members=members,
        blender=blender,
        **({"probe_by": "random"} if folds is None else {"probe_by": "folds", "folds": folds}),
        random_state=random_state,
    )
    with enabled(False):  # no progress bar in a server's log
        model.fit(data)
    users = np.repeat(np.arange(n_users), n_items)
    items = np.tile(np.arange(n_items), n_users)
    table = model.contributions(users, items)
    names = list(model.member_names_)
    member_pred = np.array([[row[j][1] for row in table] for j in range(len(names))]).reshape(-1, n_users, n_items)
    contrib = np.array([[row[j][2] for row in table] for j in range(len(names))]).reshape(-1, n_users, n_items)
    base = np.array([row[-1][2] for row in table]).reshape(n_users, n_items)
    predicted = base + contrib.sum(axis=0)
    shown = np.asarray(clip_to_scale(predicted, scale))
    rmse = float(np.sqrt(np.mean((shown[rows, cols] - R[rows, cols]) ** 2)))
    rmse_held = float(np.sqrt(np.mean((shown[held[:, 0], held[:, 1]] - truth) ** 2))) if len(held) else None
    return BlendFill(
        members=names,
        params={name: dict(members[name]) for name in names},
        blender=str(model.blender_),
        reg=None if model.blender_ == "lgbm" else float(model.reg_),
        folds=folds,
        ratings=len(rows),
        member_predicted=member_pred,
        contribution=contrib,
        base=base,
        predicted=predicted,
        probe_rmse={k: float(v) for k, v in model.probe_rmse_.items()},
        inner_rmse=float(min(model.inner_rmse_.values())),
        rmse=rmse,
        rmse_held_out=rmse_held,
        seconds=time.perf_counter() - start,
    )


def _hidden_cells(R: np.ndarray, hide: Sequence[Sequence[int]]) -> np.ndarray:
    """``hide`` as a (n, 2) array of distinct known cells; out of range or unknown is a DataError."""
    for u, i in hide:
        if not (0 <= u < R.shape[0] and 0 <= i < R.shape[1]):
            raise DataError(f"hide: cell [{u}, {i}] is outside the {R.shape[0]} x {R.shape[1]} matrix")
        if np.isnan(R[u, i]):
            raise DataError(f"hide: cell [{u}, {i}] has no rating to hide")
    cells = np.asarray(list(hide), dtype=np.int64).reshape(-1, 2) if len(hide) else np.empty((0, 2), np.int64)
    return np.unique(cells, axis=0)
