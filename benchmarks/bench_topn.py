"""Top-N quality under strong generalisation (Liang et al. 2018): Mult-VAE, RecVAE, EASE and iALS on
ml-latest-small.

Protocol: ratings of 4 stars and more are the clicks (Liang's preprocessing); 10% of the users are
test users and 10% validation users, disjoint from the training users; each held-out user's
clicks are 80% folded in (given to ``recommend_for_history``) and 20% scored: NDCG@100,
Recall@20 and Recall@50 with Liang's capped recall. Every model gets the same small budget of
search: ``--trials`` Optuna TPE trials over its own ``search_space`` (a few fixed settings keep the
neural fits short), each scored by NDCG@100 on the validation users only; the best point is then
fitted with ``--seeds`` seeds and scored once on the test users (mean and standard deviation).

    python benchmarks/bench_topn.py [--trials 6] [--seeds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_section  # noqa: E402

MEASURES = [
    "src/tastebud/models/vae.py",
    "src/tastebud/models/_vae.py",
    "src/tastebud/models/_torch.py",
    "src/tastebud/models/ease.py",
    "src/tastebud/models/ials.py",
    "src/tastebud/kernels/ials.py",
]
METRICS = ["ndcg@100", "recall_capped@20", "recall_capped@50"]
# fixed during the search (the same for every trial): caps that keep a neural fit to about two
# minutes on two shared cores (batches of 100 users: five updates per epoch on 487 training users)
FIXED: dict[str, dict[str, Any]] = {
    "mult_vae": {"epochs": 30, "patience": 5, "batch_size": 100, "device": "cpu"},
    "recvae": {"epochs": 6, "patience": 3, "batch_size": 100, "device": "cpu"},
    "ease": {},
    "ials": {"threads": 0},
}
# a known point each search tries first: the papers' defaults (EASE: Steck's lambda for MovieLens)
START: dict[str, dict[str, Any]] = {
    "mult_vae": {"factors": 200, "hidden": 600, "dropout": 0.5, "anneal_cap": 0.2, "anneal_steps": 200_000,
                 "learning_rate": 1e-3},
    "recvae": {"factors": 200, "hidden": 600, "dropout": 0.5, "gamma": 0.005, "encoder_epochs": 3,
               "learning_rate": 5e-4},
    "ease": {"reg": 300.0, "dropout": 0.0},
    "ials": {"factors": 128, "reg": 30.0, "alpha": 4.0, "epochs": 15, "reg_exponent": 1.0},
}  # fmt: skip


def clicks() -> Any:
    import tastebud as tb
    from tastebud.data.movielens import load_ml_latest_small

    ratings = load_ml_latest_small(features=False).to_frame()
    kept = ratings[ratings["value"] >= 4.0]
    return tb.Interactions.from_frame(kept[["user", "item"]], source="ml-latest-small, ratings >= 4")


def search(name: str, split: Any, trials: int, seed: int) -> tuple[dict[str, Any], float, float]:
    """Best parameters by validation NDCG@100 (TPE, ``trials`` fits), its value and the seconds spent."""
    import optuna

    from tastebud.core.registry import get_model
    from tastebud.eval.strong import evaluate_fold_in

    cls = get_model(name)
    space = {k: v for k, v in cls.search_space.items() if k not in FIXED[name]}
    started = time.perf_counter()

    def objective(trial: Any) -> float:
        point = {k: dist.suggest(trial, k) for k, dist in space.items()}
        model = cls(**FIXED[name], **point, **({"random_state": seed} if "random_state" in cls().get_params() else {}))
        model.fit(split.train)
        value = evaluate_fold_in(model, split.validation, ["ndcg@100"])["ndcg@100"]
        print(f"  {name} trial {trial.number}: {value:.4f} {point}", flush=True)
        return value

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({k: v for k, v in START[name].items() if k in space})
    study.optimize(objective, n_trials=trials)
    return {**FIXED[name], **study.best_params}, float(study.best_value), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=6, help="search trials per model (the same for all)")
    parser.add_argument("--seeds", type=int, default=3, help="final fits per model, seeds 0..n-1")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--models", default="mult_vae,recvae,ease,ials")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()

    import torch

    from tastebud.core.registry import get_model
    from tastebud.data.splits import strong_generalization
    from tastebud.eval.strong import evaluate_fold_in

    torch.set_num_threads(args.threads)
    data = clicks()
    split = strong_generalization(data, heldout_users=0.1, fold_in=0.8, random_state=0)
    print(split.report, flush=True)
    rows, chosen = [], []
    for name in args.models.split(","):
        params, val, search_s = search(name, split, args.trials, seed=0)
        print(f"{name}: best validation NDCG@100 {val:.4f} with {params} ({search_s:.0f} s)", flush=True)
        cls = get_model(name)
        runs = []
        for seed in range(args.seeds):
            extra = {"random_state": seed} if "random_state" in cls().get_params() else {}
            t0 = time.perf_counter()
            model = cls(**{**params, **extra}).fit(split.train)
            fit_s = time.perf_counter() - t0
            runs.append({**evaluate_fold_in(model, split.test, METRICS), "fit_s": fit_s})
            print(f"  {name} seed {seed}: {runs[-1]}", flush=True)
        frame = pd.DataFrame(runs)
        row = {"model": name}
        for m in METRICS:
            row[m] = f"{frame[m].mean():.4f} ± {frame[m].std(ddof=0):.4f}"
        row["validation ndcg@100"] = f"{val:.4f}"
        row["fit s"] = f"{frame['fit_s'].mean():.1f}"
        rows.append(row)
        chosen.append(f"- `{name}`: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in sorted(params.items())))  # fmt: skip
    table = markdown_table(pd.DataFrame(rows))
    print(table)
    if args.no_write:
        return
    rep = split.report
    body = "\n".join(
        [
            "## Top-N under strong generalisation (ml-latest-small)",
            "",
            f"Liang et al.'s protocol: ratings >= 4 are clicks; {rep['test_users']} test users and "
            f"{rep['validation_users']} validation users (10% each) are held out from the {rep['train_users']} "
            "training users; 80% of each held-out user's clicks are folded in through "
            "`recommend_for_history`, the rest scored (NDCG@100, Recall@20/50 with Liang's capped recall, "
            "`recall_capped`). Each model: a TPE search of "
            f"{args.trials} trials over its `search_space` (the papers' defaults tried first), scored by "
            "NDCG@100 on the validation users only; the best point fitted with "
            f"{args.seeds} seeds and read once on the test users: mean ± standard deviation over the seeds "
            "(one split; EASE is deterministic). The VAEs early-stop on 10% of the training users. "
            f"Torch on {args.threads} CPU threads.",
            "",
            table,
            "",
            "Chosen parameters:",
            "",
            *chosen,
        ]
    )
    write_section("topn", body, measures=MEASURES)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
