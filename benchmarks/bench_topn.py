"""Top-N quality under strong generalisation (Liang et al. 2018): tastebud's Mult-VAE, RecVAE, EASE
and iALS beside implicit's ALS and item-kNN, cornac's EASE and VAECF, and LensKit's ImplicitMF and
item-kNN (issue #22).

Protocol (Liang et al., "Variational autoencoders for collaborative filtering", WWW 2018): on
ml-latest-small ratings of 4 stars and more are the clicks (their preprocessing); the synthetic set
(``tastebud.data.synthetic``: latent genre tastes, Zipf popularity) is implicit already. 10% of the
users are test users and 10% validation users, disjoint from the training users; each held-out
user's clicks are 80% folded in (given to ``recommend_for_history``) and 20% scored: NDCG@100,
Recall@20 and Recall@50 with Liang's capped recall (``tastebud.eval.strong``).

Every model, ours and the peers', gets the same search (``protocol.search``): ``--trials`` Optuna
TPE trials (seed 0) over a space that mirrors tastebud's, a paper's setting tried first, each trial
fitted with seed 0 on the training users and scored by NDCG@100 on the *validation* users only. The
best point is fitted with seeds ``0..--seeds-1`` (once for the deterministic models) and read on the
test users. The paired comparison takes each side's best model *by validation NDCG@100* and divides
their test NDCG@100 seed by seed. The neural fits are capped (:data:`FIXED`) to keep a fit to a few
minutes on two shared cores.

A peer answers a held-out user from the folded-in 80% by its own rule, never a refit
(``peers.Carried``): implicit ALS by ``recalculate_user`` (its exact least-squares user step),
LensKit ALS by its own user solve against the final item embeddings, implicit's item-kNN and cornac
EASE as ``history @ W``, LensKit's item-kNN by its own rule (per target item, the sum of the
``max_nbrs`` largest similarities to the history), cornac VAECF through its encoder's mean. BPR is
left out (no rule of its own for a new user). LensKit runs in its own environment (``make
lenskit-env``; it pins pandas 2): without it its rows are skipped and the section says so.

    python benchmarks/bench_topn.py [--data ml-latest-small,synthetic] [--trials 6] [--seeds 3]
    python benchmarks/bench_topn.py --data synthetic --trials 1 --seeds 1 --no-write   # smoke run

Results merge into ``topn_measured.json`` per data set, so ``--data`` can run one at a time; the
section is written from every data set measured so far.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_section  # noqa: E402
from peers import FOLD_IN_PEERS  # noqa: E402
from protocol import mean_std, paired, search  # noqa: E402

MEASURES = [
    "src/tastebud/models/vae.py",
    "src/tastebud/models/_vae.py",
    "src/tastebud/models/_torch.py",
    "src/tastebud/models/ease.py",
    "src/tastebud/models/ials.py",
    "src/tastebud/models/_common.py",
    "src/tastebud/kernels/ials.py",
    "benchmarks/peers.py",
    "benchmarks/lenskit_worker.py",
    "benchmarks/protocol.py",
]
RESULTS = Path(__file__).resolve().parent / "topn_measured.json"
DATASETS = ("ml-latest-small", "synthetic")
#: the synthetic set: users, items, interactions (40 clicks a user), latent factors; small enough that
#: a capped neural fit takes about as long as on ml-latest-small (fewer items, more users)
SYNTHETIC = (1000, 1000, 40_000, 16)
METRIC = "ndcg@100"
METRICS = ["ndcg@100", "recall_capped@20", "recall_capped@50"]
OURS = ("mult_vae", "recvae", "ease", "ials")
#: the order a run measures in: the quick models first, so a run cut short has both sides' cheap rows
ORDER = ("ease", "cornac-ease", "ials", "implicit-als", "lenskit-als", "implicit-knn", "lenskit-knn", "mult_vae",
         "cornac-vaecf", "recvae")  # fmt: skip
# fixed during the search (the same for every trial): caps that keep a neural fit to about two
# minutes on two shared cores (batches of 100 users: five updates per epoch on 487 training users);
# cornac's VAECF gets tastebud Mult-VAE's epoch cap, Liang's tanh and multinomial likelihood
FIXED: dict[str, dict[str, Any]] = {
    "mult_vae": {"epochs": 30, "patience": 5, "batch_size": 100, "device": "cpu"},
    "recvae": {"epochs": 6, "patience": 3, "batch_size": 100, "device": "cpu"},
    "ease": {},
    "ials": {"threads": 0},
    "implicit-als": {},
    "lenskit-als": {},
    "implicit-knn": {},
    "lenskit-knn": {},
    "cornac-ease": {},
    "cornac-vaecf": {"n_epochs": 30, "batch_size": 100, "act_fn": "tanh", "likelihood": "mult"},
}
# a known point each search tries first: the papers' defaults (EASE: Steck's lambda for MovieLens);
# a peer starts where its tastebud counterpart does (implicit's alpha is tastebud's alpha + 1 on
# clicks), implicit's item-kNN from its library defaults
START: dict[str, dict[str, Any]] = {
    "mult_vae": {"factors": 200, "hidden": 600, "dropout": 0.5, "anneal_cap": 0.2, "anneal_steps": 200_000,
                 "learning_rate": 1e-3},
    "recvae": {"factors": 200, "hidden": 600, "dropout": 0.5, "gamma": 0.005, "encoder_epochs": 3,
               "learning_rate": 5e-4},
    "ease": {"reg": 300.0, "dropout": 0.0},
    "ials": {"factors": 128, "reg": 30.0, "alpha": 4.0, "epochs": 15, "reg_exponent": 1.0},
    "implicit-als": {"factors": 128, "regularization": 30.0, "alpha": 5.0, "iterations": 15},
    "lenskit-als": {"embedding_size": 128, "regularization": 30.0, "weight": 4.0, "epochs": 15},
    "implicit-knn": {"K": 20, "similarity": "cosine"},
    "lenskit-knn": {"max_nbrs": 20},
    "cornac-ease": {"lamb": 300.0, "posB": False},
    "cornac-vaecf": {"k": 200, "hidden": 600, "beta": 0.2, "learning_rate": 1e-3},
}  # fmt: skip
Build = Callable[[Any, dict[str, Any], int], Any]  # (train, params, seed) -> a fitted model


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load(name: str) -> Any:
    """The clicks of data set ``name``: ml-latest-small's ratings >= 4, or the synthetic set."""
    import tastebud as tb

    if name == "ml-latest-small":
        from tastebud.data.movielens import load_ml_latest_small

        ratings = load_ml_latest_small(features=False).to_frame()
        kept = ratings[ratings["value"] >= 4.0]
        return tb.Interactions.from_frame(kept[["user", "item"]], source="ml-latest-small, ratings >= 4")
    if name == "synthetic":
        from tastebud.data.synthetic import generate

        users, items, events, factors = SYNTHETIC
        return generate(users, items, events, factors=factors, explicit=False, features=False, random_state=0)
    raise SystemExit(f"unknown data set {name!r}: choose from {', '.join(DATASETS)}")


def model(name: str) -> tuple[str, dict[str, Any], bool, Build]:
    """A model's label, search space (its fixed keys left out), whether it draws, and its builder."""
    if name in FOLD_IN_PEERS:
        peer = FOLD_IN_PEERS[name]
        space = {k: v for k, v in peer.space.items() if k not in FIXED[name]}
        return peer.label, space, peer.stochastic, lambda train, params, seed: peer.fit(train, params, seed)
    from tastebud.core.registry import get_model

    cls = get_model(name)
    stochastic = "random_state" in cls().get_params()
    space = {k: v for k, v in cls.search_space.items() if k not in FIXED[name]}

    def build(train: Any, params: dict[str, Any], seed: int) -> Any:
        return cls(**params, **({"random_state": seed} if stochastic else {})).fit(train)

    return f"tastebud {name}", space, stochastic, build


def measure(name: str, split: Any, trials: int, seeds: int) -> dict[str, Any]:
    """Search ``name`` on the validation users, then fit the best point per seed and read the test users."""
    from tastebud.eval.strong import evaluate_fold_in

    label, space, stochastic, build = model(name)
    started = time.perf_counter()

    def score(params: dict[str, Any]) -> float:
        t0 = time.perf_counter()
        value = evaluate_fold_in(build(split.train, params, 0), split.validation, [METRIC])[METRIC]
        log(f"  {label} trial: validation {value:.4f} {params} ({time.perf_counter() - t0:.0f} s)")
        return value

    params, validation = search(space, score, trials, seed=0, maximize=True, fixed=FIXED[name], start=START[name])
    search_s = time.perf_counter() - started
    log(f"{label}: best validation {METRIC} {validation:.4f} with {params} ({search_s:.0f} s)")
    runs: list[dict[str, float]] = []
    for seed in range(seeds):
        if runs and not stochastic:  # deterministic: one fit stands for every seed
            runs.append(dict(runs[0]))
            continue
        t0 = time.perf_counter()
        fitted = build(split.train, params, seed)
        fit_s = time.perf_counter() - t0
        runs.append({**evaluate_fold_in(fitted, split.test, METRICS), "fit_s": fit_s})
        log(f"  {label} seed {seed}: {runs[-1]}")
    side = "peer" if name in FOLD_IN_PEERS else "tastebud"
    return {"name": name, "label": label, "side": side, "params": params, "validation": validation,
            "stochastic": stochastic, "search_s": search_s, "runs": runs}  # fmt: skip


def run(
    data_name: str, models: list[str], trials: int, seeds: int, threads: int, save: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Every model of ``models`` on ``data_name``; ``save`` gets the result after each model (a long
    run cut short keeps what it measured, and its section says which models are missing)."""
    from tastebud.data.splits import strong_generalization

    split = strong_generalization(load(data_name), heldout_users=0.1, fold_in=0.8, random_state=0)
    log(f"{data_name}: {split.report}")
    result: dict[str, Any] = {
        "report": {k: v for k, v in split.report.items() if isinstance(v, (int, float, str))},
        "trials": trials, "seeds": seeds, "threads": threads, "models": list(models), "skipped": [], "rows": [],
    }  # fmt: skip
    for name in models:
        if name in FOLD_IN_PEERS and not FOLD_IN_PEERS[name].available():
            log(f"{data_name}: {name} skipped ({FOLD_IN_PEERS[name].missing()})")
            result["skipped"].append(name)
            continue
        result["rows"].append(measure(name, split, trials, seeds))
        save(result)
    return result


def _fmt(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def comparison(result: dict[str, Any]) -> list[str]:
    """Each side's best model by validation NDCG@100, compared seed by seed on the test users."""
    rows = result["rows"]
    ours = [r for r in rows if r["side"] == "tastebud"]
    theirs = [r for r in rows if r["side"] == "peer"]
    if not ours or not theirs:
        return []
    a = max(ours, key=lambda r: r["validation"])
    b = max(theirs, key=lambda r: r["validation"])
    x = [run[METRIC] for run in a["runs"]]
    y = [run[METRIC] for run in b["runs"]]
    ratios = [p / q for p, q in zip(x, y, strict=True)]
    mean = statistics.fmean(ratios)
    verdict = "met" if min(ratios) >= 1.03 else ("met on the mean only" if mean >= 1.03 else "not met")
    return [
        f"Best by validation NDCG@100: {a['label']} ({a['validation']:.4f}) and {b['label']} "
        f"({b['validation']:.4f}). Test NDCG@100 ratio {a['label']} / {b['label']} per seed: "
        + ", ".join(f"{r:.3f}" for r in ratios)
        + f" (mean {mean:.3f}); difference {paired(x, y, lower_is_better=False)}. "
        f"Target >= 1.03 on every seed: {verdict}.",
    ]


def missing(result: dict[str, Any]) -> list[str]:
    """A line naming the models the run did not reach (cut short) or could not run (not installed)."""
    done = {r["name"] for r in result["rows"]} | set(result.get("skipped", []))
    lines = []
    if result.get("skipped"):
        lines.append(f"Not installed (LensKit: `make lenskit-env`), so not measured: {', '.join(result['skipped'])}.")
    cut = [m for m in result.get("models", []) if m not in done]
    if cut:
        lines.append(
            f"**Incomplete run**: not measured yet: {', '.join(cut)}; the comparison covers the rows above only."
        )
    return ["", *lines] if lines else []


def table(result: dict[str, Any]) -> str:
    out = []
    for r in sorted(result["rows"], key=lambda r: -r["validation"]):
        frame = pd.DataFrame(r["runs"])
        row: dict[str, Any] = {"model": r["label"], "tuned parameters": _fmt(r["params"])}
        for m in METRICS:
            values = list(frame[m]) if r["stochastic"] else [frame[m].iloc[0]]  # deterministic: one fit
            row[m.replace("recall_capped", "recall")] = mean_std(values)
        row["validation ndcg@100"] = f"{r['validation']:.4f}"
        row["fit s"] = f"{frame['fit_s'].mean():.1f}"
        out.append(row)
    return markdown_table(pd.DataFrame(out))


def versions() -> str:
    import cornac
    import implicit
    import torch

    from peers import LENSKIT_ALS, lenskit_version

    ok = LENSKIT_ALS.available()
    lenskit = f", LensKit {lenskit_version()} (its own environment)" if ok else ""
    skipped = "" if ok else f" LensKit is not in the tables: {LENSKIT_ALS.missing()}."
    return f"implicit {implicit.__version__}, cornac {cornac.__version__}{lenskit}, torch {torch.__version__}.{skipped}"


def section(results: dict[str, Any]) -> str:
    lines = [
        "## Top-N under strong generalisation (Liang et al. 2018)",
        "",
        "Held-out users (`benchmarks/bench_topn.py`): 10% of the users are test users and 10% validation "
        "users, disjoint from the training users; 80% of each held-out user's clicks are folded in "
        "(`recommend_for_history`, no refit) and the rest scored: NDCG@100 and Recall@20/50 with Liang's "
        "capped recall. Every model, tastebud's and the peers', gets the same budget: Optuna TPE (seed 0) "
        "over a space mirroring tastebud's, a paper's setting tried first, each trial fitted with seed 0 "
        "and scored by NDCG@100 on the validation users only; the best point is fitted with each seed "
        "(once for the deterministic EASE and item-kNN) and read on the test users: mean ± sample standard "
        "deviation over the seeds, one split. Rows are ordered by validation NDCG@100. A peer folds in by "
        "its own rule: implicit ALS by `recalculate_user` (its exact least-squares user step), LensKit ALS by "
        "its own user solve against the final item embeddings, implicit's item-kNN and cornac EASE as "
        "history @ W, LensKit's item-kNN (implicit feedback) by the sum of the `max_nbrs` largest "
        "similarities to the history (LensKit's own rule, checked against its scorer), cornac VAECF through "
        "its encoder's mean on the binarised history. "
        "BPR (implicit's or cornac's) has no rule of its own for a new user and is left out rather than "
        "given one we would invent. Neural fits are capped: Mult-VAE and VAECF 30 epochs, RecVAE 6, "
        "batches of 100 users (tastebud's VAEs early-stop on 10% of the training users, VAECF runs its "
        f"30). {versions()}",
    ]
    for name in DATASETS:
        if name not in results:
            continue
        res = results[name]
        rep = res["report"]
        what = (
            "ratings >= 4 are the clicks"
            if name == "ml-latest-small"
            else "`tastebud.data.synthetic.generate({}, {}, {}, factors={}, explicit=False)`, seed 0".format(*SYNTHETIC)
        )
        lines += [
            "",
            f"### {name}",
            "",
            f"{what}; {rep.get('train_users')} training, {rep.get('validation_users')} validation and "
            f"{rep.get('test_users')} test users; {res['trials']} trials per model, {res['seeds']} seeds, "
            f"torch on {res['threads']} CPU threads.",
            "",
            table(res),
            "",
            *comparison(res),
            *missing(res),
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=",".join(DATASETS), help="data sets, in order")
    parser.add_argument("--trials", type=int, default=6, help="search trials per model (the same for all)")
    parser.add_argument("--seeds", type=int, default=3, help="final fits per model, seeds 0..n-1")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--models", default=",".join(ORDER))
    parser.add_argument("--no-write", action="store_true", help="print the tables only")
    args = parser.parse_args()
    models = args.models.split(",")
    unknown = [m for m in models if m not in FIXED]
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(FIXED)}")

    import torch

    torch.set_num_threads(args.threads)

    def save(name: str, result: dict[str, Any]) -> None:
        if args.no_write:
            return
        # read just before writing: another run may have measured another data set meanwhile
        results = {**(json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}), name: result}
        tmp = RESULTS.with_suffix(f".json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(results, indent=1, default=float) + "\n")
        tmp.replace(RESULTS)
        write_section("topn", section(results), measures=MEASURES)

    for name in args.data.split(","):
        result = run(name, models, args.trials, args.seeds, args.threads, lambda r, name=name: save(name, r))
        print(table(result), *comparison(result), sep="\n", flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
