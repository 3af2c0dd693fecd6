"""The ranking stage against its own retrievers and an equally tuned peer, under the honest protocol.

On the fixed 80/20 splits of ML-100K and ml-latest-small (``tastebud.data.movielens.fixed_split``):

1. every tastebud retriever (ease, ials, itemknn, rp3beta) is tuned by ``tastebud.tune`` with the
   same small budget (``--trials``, TPE, seed 0) on a validation carve of the *training part only*
   (a random 20% of each user's training events); the peers, implicit's ALS and cornac's EASE, get
   the same Optuna search over a mirrored space on the same carve, and the one with the better
   validation NDCG@10 is "the best equally tuned peer";
2. the ranker uses the tuned retrievers plus ``popular`` (its own parameters at their defaults, with
   100 candidates per retriever: no extra search, so its budget is its retrievers');
3. everything is refitted on the whole training part with seeds 0, 1, 2, and read once on the test
   part: full-ranking NDCG@10 and Recall@20 (each user's training items excluded), mean and spread.

The feature importances (gain) of the seed-0 rankers go to ``docs/ranker_importance.png``.

    .venv/bin/python benchmarks/bench_ranker.py                  # both data sets (about 40 minutes on 2 busy cores)
    .venv/bin/python benchmarks/bench_ranker.py --data ml-100k   # one; results merge in ranker_measured.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, markdown_table, write_section  # noqa: E402
from peers import CORNAC_EASE, IMPLICIT_ALS, Peer  # noqa: E402
from protocol import paired, top_n, tune_peer  # noqa: E402

MEASURES = [
    "src/tastebud/models/ranker.py", "src/tastebud/kernels/trees.py", "src/tastebud/tune.py", "src/tastebud/models",
    "benchmarks/protocol.py", "benchmarks/peers.py",
]  # fmt: skip
RESULTS = Path(__file__).resolve().parent / "ranker_measured.json"
PLOT = REPO / "docs" / "ranker_importance.png"
DATASETS = ("ml-100k", "ml-latest-small")
RETRIEVERS = ("ease", "ials", "itemknn", "rp3beta")
FIXED = {"ials": {"threads": 2}, "itemknn": {}, "rp3beta": {}, "ease": {}}
RANKER = {"candidates": 100, "threads": 2}
SEEDS = (0, 1, 2)
PEERS = (IMPLICIT_ALS, CORNAC_EASE)


def run(name: str, trials: int, seeds: tuple[int, ...]) -> dict[str, Any]:
    import tastebud as tb
    from tastebud.data.movielens import fixed_split
    from tastebud.tune import tune

    split = fixed_split(name)
    train = split.train
    t0 = time.perf_counter()
    tuned = {}
    for model in RETRIEVERS:
        res = tune(model, train, metric="ndcg@10", trials=trials, params=FIXED[model], random_state=0)
        tuned[model] = {k: v for k, v in res.params.items() if k != "random_state"}
        print(f"{name}: tuned {model} {tuned[model]} (validation {res.value:.4f})", flush=True)
    peers, peer_value = {}, {}
    for peer in PEERS:
        fit = peer.fit
        peers[peer.label], peer_value[peer.label] = tune_peer(
            lambda t, p, fit=fit: fit(t, p, 0), peer.space, train, peer.counterpart, "ndcg@10", trials
        )
        print(f"{name}: tuned {peer.label} {peers[peer.label]} (validation {peer_value[peer.label]:.4f})", flush=True)
    tune_s = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    gains: dict[str, float] = {}
    for seed in seeds:
        fitted: dict[str, Any] = {}
        for model in (*RETRIEVERS, "popular"):
            params = dict(tuned.get(model, {}))
            if "random_state" in tb.get_model(model)._param_names():
                params["random_state"] = seed
            fitted[model] = tb.get_model(model)(**params)
        fitted.update({peer.label: peer for peer in PEERS})
        retrievers = {m: {k: v for k, v in tuned.get(m, {}).items()} for m in (*RETRIEVERS, "popular")}
        fitted["ranker"] = tb.get_model("ranker")(retrievers=retrievers, random_state=seed, **RANKER)
        for label, model in fitted.items():
            start = time.perf_counter()
            if isinstance(model, Peer) and not model.stochastic and seed != seeds[0]:
                rows.append({**next(r for r in rows if r["model"] == label), "seed": seed})
                continue  # deterministic: the first fit's row stands for every seed
            model = model.fit(train, peers[label], seed) if isinstance(model, Peer) else model.fit(train)
            fit_s = time.perf_counter() - start
            row = {"data": name, "model": label, "seed": seed, **top_n(model, split), "fit_s": fit_s}
            rows.append(row)
            print(row, flush=True)
            if label == "ranker" and seed == seeds[0]:
                gains = model.feature_importance("gain")
                row["trees"] = model.trees_
    return {
        "rows": rows, "tuned": {**tuned, **peers}, "peer_validation": peer_value, "gains": gains, "tune_s": tune_s,
        "trials": trials,
    }  # fmt: skip


def plot(results: dict[str, Any]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [n for n in DATASETS if n in results]
    fig = Figure(figsize=(6 * len(names), 6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        gains = results[name]["gains"]
        total = sum(gains.values()) or 1.0
        top = list(gains.items())[:20][::-1]
        ax.barh([k for k, _ in top], [100.0 * v / total for _, v in top], color="tab:blue")
        ax.set_xlabel("share of total gain (%)")
        ax.set_title(f"{name}: ranker feature importance (gain, seed 0)")
    fig.tight_layout()
    fig.savefig(PLOT, format="png")


def render(results: dict[str, Any]) -> str:
    lines, ratios = [], []
    for name in DATASETS:
        if name not in results:
            continue
        frame = pd.DataFrame(results[name]["rows"])
        agg = frame.groupby("model", sort=False).agg(
            ndcg=("ndcg@10", "mean"), ndcg_sd=("ndcg@10", "std"), recall=("recall@20", "mean"),
            recall_sd=("recall@20", "std"), fit_s=("fit_s", "mean"),
        )  # fmt: skip
        table = pd.DataFrame(
            {
                "model": agg.index,
                "NDCG@10": [f"{m:.4f} ± {s:.4f}" for m, s in zip(agg["ndcg"], agg["ndcg_sd"], strict=True)],
                "Recall@20": [f"{m:.4f} ± {s:.4f}" for m, s in zip(agg["recall"], agg["recall_sd"], strict=True)],
                "fit s": [f"{v:.1f}" for v in agg["fit_s"]],
                "tuned parameters": [
                    "the tuned retrievers above + popular; its own at defaults"
                    if m == "ranker"
                    else _params(results[name]["tuned"].get(m))
                    for m in agg.index
                ],
            }
        )
        lines.append(f"### {name}\n\n" + markdown_table(table) + "\n")
        peer_value = results[name]["peer_validation"]
        singles = agg.drop(index=["ranker", *peer_value])
        best = singles["ndcg"].idxmax()
        peer = max(peer_value, key=peer_value.__getitem__)
        r1 = agg.loc["ranker", "ndcg"] / singles.loc[best, "ndcg"]
        r2 = agg.loc["ranker", "ndcg"] / agg.loc[peer, "ndcg"]
        by_seed = frame.pivot(index="seed", columns="model", values="ndcg@10")
        ratios.append(
            f"- {name}: ranker NDCG@10 / best single retriever on test ({best}) = **{r1:.3f}x** (target 1.05x; "
            f"per seed {paired(by_seed['ranker'], by_seed[best], lower_is_better=False)}); / the best equally tuned "
            f"peer by validation ({peer}; validation NDCG@10 "
            + ", ".join(f"{k} {v:.4f}" for k, v in peer_value.items())
            + f") = **{r2:.3f}x** (target 1.05x; per seed {paired(by_seed['ranker'], by_seed[peer], lower_is_better=False)}). "
            f"Tuning took {results[name]['tune_s']:.0f} s."
        )
    missing = [n for n in DATASETS if n not in results]
    if missing:
        ratios.append(f"- not measured yet: {', '.join(missing)} (run `bench_ranker.py --data NAME`).")
    trials = next(iter(results.values()))["trials"]
    return (
        "## Ranking stage (ranker): candidates from several models, LightGBM LambdaRank\n\n"
        f"Fixed 80/20 splits; every model's parameters come from a {trials}-trial TPE search (seed 0) on a "
        "validation carve of the training part (a random 20% of each user's training events; the test part is "
        "read once, at the end): tastebud's retrievers through `tastebud.tune`, implicit's ALS and cornac's EASE "
        "through the same Optuna search over mirrored spaces. The ranker takes the tuned retrievers plus `popular`, 100 candidates "
        "each, LightGBM at its defaults (lambdarank, 15 leaves, at least 50 rows a leaf, learning rate 0.05, early stopping on 20% of "
        "its label users). Then each model is refitted on the whole training part with seeds 0, 1, 2: mean ± "
        "standard deviation over the seeds (ease, itemknn and rp3beta are deterministic). Full ranking, each "
        "user's training items excluded. Feature importances: [docs/ranker.md](docs/ranker.md).\n\n"
        + "\n".join(lines)
        + "\n"
        + "\n".join(ratios)
        + "\n"
    )


def _params(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    shown = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in params.items() if k != "threads"}
    return ", ".join(f"{k} {v}" for k, v in shown.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=DATASETS, action="append", help="data set(s) to run (default: both)")
    parser.add_argument("--trials", type=int, default=5, help="tuning trials per model")
    parser.add_argument("--seeds", type=int, default=len(SEEDS))
    parser.add_argument("--render-only", action="store_true", help="rewrite the section from ranker_measured.json")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if not args.render_only:
        for name in args.data or DATASETS:
            results[name] = run(name, args.trials, SEEDS[: args.seeds])
            RESULTS.write_text(json.dumps(results, indent=1, default=float) + "\n")
    plot(results)
    write_section("ranker", render(results), measures=MEASURES)


if __name__ == "__main__":
    main()
