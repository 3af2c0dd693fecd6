"""Rating prediction on ML-100K u1..u5 under the one protocol: defaults vs defaults, tuned vs tuned.

Each pair runs tastebud and its Surprise counterpart on the same folds. "Tuned" means the same
search for both sides (Optuna TPE, the same seed, ``--trials`` trials, mirrored spaces) on a
validation carve of each fold's *base* file (20% of its ratings, tastebud's own carve), then one
refit on the whole base file and one score on the fold's test file. No choice sees a test file.
Fits are seeded by the fold number, so the fold-to-fold spread includes the seed's.

* bias baseline vs Surprise ``BaselineOnly`` (ALS): ``reg_user_bias``/``reg_item_bias`` vs
  ``reg_u``/``reg_i``;
* item kNN with Pearson-baseline similarity and the baseline predictor vs Surprise
  ``KNNBaseline`` (item-based, ``pearson_baseline``): neighbours and shrinkage;
* SVD vs Surprise ``SVD``: factors, epochs, learning rate, L2 on factors and on each bias;
* Bayesian MF (no Surprise counterpart): tuned on u1's carve, beside GLocal-K's published u1 figure
  (GLocal-K chose its settings on its own validation carve of u1.base).

    .venv/bin/python benchmarks/bench_rating.py                   # 5 folds, 20 trials a side
    .venv/bin/python benchmarks/bench_rating.py --folds 1 --trials 5 --no-write   # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tastebud as tb  # noqa: E402
from common import DATA, markdown_table, write_section  # noqa: E402
from protocol import carve, mean_std, paired, search, tune_tastebud  # noqa: E402
from tastebud.core.space import Float, Int, LogFloat  # noqa: E402
from tastebud.data.interactions import Interactions  # noqa: E402
from tastebud.data.movielens import ml100k_folds  # noqa: E402
from tastebud.eval.metrics import rmse  # noqa: E402

# The code this benchmark's section measures (besides common.COMMON_PATHS); make bench-check reads it.
MEASURES = [
    "src/tastebud/models/baseline.py",
    "src/tastebud/models/knn.py",
    "src/tastebud/models/mf.py",
    "src/tastebud/kernels/knn.py",
    "src/tastebud/kernels/mf.py",
    "src/tastebud/tune.py",
    "benchmarks/protocol.py",
]
GLOCAL_K_U1 = 0.8889  # Han et al., CIKM 2021, Table 2 (ML-100K u1)

# tastebud side: (registry name, fixed parameters, searched space: None = the model's own search_space)
KNN_FIXED = {"similarity": "pearson_baseline", "prediction": "baseline"}
KNN_SPACE = {"neighbors": Int(5, 200, log=True), "shrinkage": Float(0.0, 200.0)}
OURS: dict[str, tuple[str, dict[str, Any], dict[str, Any] | None]] = {
    "bias": ("bias", {}, None),
    "item kNN (Pearson-baseline)": ("itemknn", KNN_FIXED, KNN_SPACE),
    "SVD": ("svd", {}, None),
}


# ---------------------------------------------------------------------------- Surprise side
def _surprise_set(data: Interactions) -> Any:
    from surprise import Dataset, Reader

    frame = data.to_frame()[["user", "item", "value"]]
    lo, hi = data.rating_scale or (1.0, 5.0)
    return Dataset.load_from_df(frame, Reader(rating_scale=(lo, hi))).build_full_trainset()


def _surprise_rmse(algo: Any, train: Interactions, test: Interactions) -> float:
    algo.fit(_surprise_set(train))
    frame = test.to_frame()
    pred = np.array([algo.predict(u, i).est for u, i in zip(frame["user"], frame["item"], strict=True)])
    return rmse(pred, frame["value"].to_numpy())


def _baseline_only(p: dict[str, Any], seed: int) -> Any:
    from surprise import BaselineOnly

    return BaselineOnly(bsl_options={"method": "als", "reg_u": p["reg_u"], "reg_i": p["reg_i"]}, verbose=False)


def _knn_baseline(p: dict[str, Any], seed: int) -> Any:
    from surprise import KNNBaseline

    sim = {"name": "pearson_baseline", "user_based": False, "shrinkage": p["shrinkage"]}
    return KNNBaseline(k=p["k"], sim_options=sim, verbose=False)


def _svd(p: dict[str, Any], seed: int) -> Any:
    from surprise import SVD

    return SVD(random_state=seed, **p)


# peer side: (constructor, defaults, mirrored space); the defaults are Surprise's own
PEERS: dict[str, tuple[Callable[[dict[str, Any], int], Any], dict[str, Any], dict[str, Any]]] = {
    "bias": (
        _baseline_only,
        {"reg_u": 15.0, "reg_i": 10.0},
        {"reg_u": LogFloat(0.1, 100.0), "reg_i": LogFloat(0.1, 100.0)},
    ),
    "item kNN (Pearson-baseline)": (
        _knn_baseline,
        {"k": 40, "shrinkage": 100.0},
        {"k": Int(5, 200, log=True), "shrinkage": Float(0.0, 200.0)},
    ),
    "SVD": (
        _svd,
        {},
        {
            "n_factors": Int(8, 256, log=True),
            "n_epochs": Int(10, 150),
            "lr_all": LogFloat(1e-3, 0.05),
            "reg_pu": LogFloat(1e-3, 0.5),
            "reg_qi": LogFloat(1e-3, 0.5),
            "reg_bu": LogFloat(1e-3, 0.5),
            "reg_bi": LogFloat(1e-3, 0.5),
        },
    ),
}
PEER_NAMES = {
    "bias": "Surprise BaselineOnly",
    "item kNN (Pearson-baseline)": "Surprise KNNBaseline",
    "SVD": "Surprise SVD",
}


def _ours_rmse(name: str, params: dict[str, Any], train: Interactions, test: Interactions) -> tuple[float, float]:
    model = tb.get_model(name)(**params)
    cpu = time.process_time()
    model.fit(train)
    cpu = time.process_time() - cpu
    frame = test.to_frame()
    with np.errstate(all="ignore"):
        pred = model.predict(frame["user"].tolist(), frame["item"].tolist())
    return rmse(pred, frame["value"].to_numpy()), cpu


def _seeded(name: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    cls = tb.get_model(name)
    return {**params, "random_state": seed} if "random_state" in cls._param_names() else dict(params)


def run_pair(label: str, split: Any, fold: int, trials: int) -> dict[str, Any]:
    """Defaults and tuned rows of one pair on one fold; the chosen settings are kept for the table."""
    name, fixed, space = OURS[label]
    make_peer, peer_defaults, peer_space = PEERS[label]
    out: dict[str, Any] = {"fold": fold, "pair": label}
    out["ours_default"], _ = _ours_rmse(name, _seeded(name, fixed, fold), split.train, split.test)
    out["peer_default"] = _surprise_rmse(make_peer(peer_defaults, fold), split.train, split.test)
    if trials:
        # tastebud: its own `tune` (the model's search space, or the pair's mirrored one)
        if space is None:
            best = tune_tastebud(name, split.train, "rmse", trials, seed=fold, fixed=fixed)
        else:
            val = carve(split.train, name, "rmse", seed=fold)
            best, _ = search(
                space,
                lambda p: _ours_rmse(name, _seeded(name, p, fold), val.train, val.test)[0],
                trials,
                seed=fold,
                fixed=fixed,
            )
        out["ours_tuned"], out["ours_cpu"] = _ours_rmse(name, _seeded(name, best, fold), split.train, split.test)
        out["ours_params"] = best
        # the peer: the same carve, sampler, seed and budget
        val = carve(split.train, name, "rmse", seed=fold)
        peer_best, _ = search(
            peer_space, lambda p: _surprise_rmse(make_peer(p, fold), val.train, val.test), trials, seed=fold
        )
        out["peer_tuned"] = _surprise_rmse(make_peer(peer_best, fold), split.train, split.test)
        out["peer_params"] = peer_best
    print(f"u{fold} {label}: " + ", ".join(f"{k}={v:.4f}" for k, v in out.items() if isinstance(v, float)), flush=True)
    return out


def bayesmf_u1(split: Any, trials: int) -> dict[str, Any]:
    """Bayesian MF tuned on u1.base's carve (factors, implicit option), scored once on u1.test."""
    best = tune_tastebud("bayesmf", split.train, "rmse", trials, seed=1)
    score, cpu = _ours_rmse("bayesmf", _seeded("bayesmf", best, 1), split.train, split.test)
    default, _ = _ours_rmse("bayesmf", _seeded("bayesmf", {}, 1), split.train, split.test)
    return {"tuned": score, "default": default, "params": best, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folds", default="1,2,3,4,5")
    ap.add_argument("--trials", type=int, default=20, help="search budget per side, per pair, per fold")
    ap.add_argument("--bayesmf-trials", type=int, default=10)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    folds = tuple(int(x) for x in args.folds.split(","))
    splits = {int(s.name[1:]): s for s in ml100k_folds(DATA, folds=folds)}
    started = time.perf_counter()
    results = [run_pair(label, splits[f], f, args.trials) for label in OURS for f in folds]
    frame = pd.DataFrame(results)
    rows = []
    for label in OURS:
        part = frame[frame["pair"] == label]
        for side, who in (("ours", f"tastebud {label}"), ("peer", PEER_NAMES[label])):
            for kind, title in (("default", "defaults"), ("tuned", f"tuned on validation ({args.trials} trials)")):
                col = f"{side}_{kind}"
                if col not in part:
                    continue
                row = {"model": who, "setting": title}
                row.update({f"u{f}": v for f, v in zip(part["fold"], part[col], strict=True)})
                row["mean ± std"] = mean_std(list(part[col]))
                rows.append(row)
    table = pd.DataFrame(rows)
    lines = []
    for label in OURS:
        part = frame[frame["pair"] == label]
        for kind, title in (("default", "defaults"), ("tuned", "tuned")):
            if f"ours_{kind}" in part:
                lines.append(
                    f"- {label}, {title}: tastebud - {PEER_NAMES[label]} per fold = "
                    + paired(list(part[f"ours_{kind}"]), list(part[f"peer_{kind}"]), lower_is_better=True)
                )
    chosen = []
    if args.trials:
        for r in results:
            chosen.append(
                {
                    "fold": f"u{r['fold']}",
                    "pair": r["pair"],
                    "tastebud chose": ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(r["ours_params"].items())),
                    "peer chose": ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(r["peer_params"].items())),
                }
            )
    bmf = None
    if 1 in splits and args.bayesmf_trials:
        bmf = bayesmf_u1(splits[1], args.bayesmf_trials)
    minutes = (time.perf_counter() - started) / 60
    fold_cols = ", ".join(f"u{f}" for f in folds)
    body = f"""## Rating prediction under the protocol: ML-100K {fold_cols} (RMSE, lower is better)

Defaults against defaults, and tuned against tuned: each side searched with Optuna's TPE sampler
(same seed, {args.trials} trials, mirrored spaces) on a validation carve of each fold's base file
(20% of its ratings), refitted on the whole base file, scored once on the fold's test file.

{markdown_table(table)}

Paired differences per fold (negative: tastebud's RMSE is lower):

{chr(10).join(lines)}
"""
    if bmf is not None:
        body += f"""
Bayesian MF (no Surprise counterpart), u1 only: defaults {bmf["default"]:.4f}; tuned on u1.base's carve
({args.bayesmf_trials} trials: {", ".join(f"{k}={_fmt(v)}" for k, v in sorted(bmf["params"].items()))}) {bmf["tuned"]:.4f}
against GLocal-K's published u1 figure {GLOCAL_K_U1} (one seed; GLocal-K's settings were chosen on its own
validation carve of u1.base).
"""
    if chosen:
        body += f"\nSettings each search chose:\n\n{markdown_table(pd.DataFrame(chosen))}\n"
    body += f"""
Surprise's SVD++ is not in this table: one fit at its defaults takes minutes here, so a search of
the same budget does not fit in the benchmark's time; `bench_mf_explicit.py` keeps the
defaults-only comparison on u1. Whole run: {minutes:.0f} minutes on 2 shared cores.

Reproduce: `.venv/bin/python benchmarks/bench_rating.py --folds {",".join(map(str, folds))} --trials {args.trials}`"""
    print(body)
    if not args.no_write:
        write_section("rating", body, measures=MEASURES)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
