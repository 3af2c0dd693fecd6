"""Neighbourhood and content models beside their peers, under the one protocol (issue #18).

What the ``rating`` and ``implicit`` sections do not already hold:

* Rating prediction, ML-100K u1..u5: user kNN (MSD similarity, mean-centred) against Surprise's
  ``KNNWithMeans``, defaults against defaults and tuned against tuned (Optuna TPE, seeded,
  ``--trials`` a side, mirrored spaces: neighbours and minimum support, on each fold's validation
  carve; ``bench_rating.py``'s helpers). Item kNN's accuracy against ``KNNBaseline`` is the
  ``rating`` section's; its *speed* is here.
* Fit + predict time on u1 (``common.interleave``: A B A B after a warm-up timed apart, ``--pairs``
  pairs, median with min-max of wall and CPU seconds): item kNN (Pearson-baseline, baseline
  predictor) against ``KNNBaseline`` and user kNN against ``KNNWithMeans``, tastebud on 2 numba
  threads and on 1 (``models._common.numba_threads``), Surprise single-threaded.
* Top-N on the fixed 80/20 splits: ItemKNN and implicit's item-item recommenders (cosine, BM25,
  TF-IDF), each at its library's defaults and tuned on the carve of the training part with the
  same search (``bench_implicit.candidates``), refitted on the training part and read once on the
  test part (``protocol.top_n``); fit times interleaved.
* Item cold start on ML-100K: 10% of the items held out entirely. The content model's feature-block
  weights are chosen on a validation carve of the *training* items (another 10% of all items, taken
  from the training items only), each block alone and the equal-weight mix shown beside.
* Memory: ItemKNN on a synthetic 50,000 items x 5,000,000 interactions, peak RSS of a child process.

    .venv/bin/python benchmarks/bench_knn.py               # about 20 minutes on 2 busy cores
    .venv/bin/python benchmarks/bench_knn.py --folds 1 --trials 2 --pairs 1 --cold-trials 2 --data ml-100k --no-memory --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_implicit import _params, candidates, log  # noqa: E402
from bench_rating import KNN_FIXED, PEERS, _ours_rmse, _surprise_rmse  # noqa: E402
from common import (  # noqa: E402
    DATA,
    Timing,
    interleave,
    markdown_table,
    peak_rss_mb,
    thread_counts,
    timing_rows,
    write_section,
)
from protocol import carve, mean_std, paired, search, top_n  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tastebud.core.base import Recommender  # noqa: E402
from tastebud.core.space import Int, LogFloat  # noqa: E402
from tastebud.data.interactions import Interactions  # noqa: E402
from tastebud.data.movielens import fixed_split, load_ml100k, ml100k_folds  # noqa: E402
from tastebud.data.splits import Split  # noqa: E402
from tastebud.eval import metrics as M  # noqa: E402
from tastebud.models._common import numba_threads  # noqa: E402
from tastebud.models.baseline import Random  # noqa: E402
from tastebud.models.content import ContentBased, FeatureWarning  # noqa: E402
from tastebud.models.knn import ItemKNN  # noqa: E402

warnings.filterwarnings("ignore", category=FeatureWarning)
warnings.filterwarnings("ignore", module="implicit")

# The code this benchmark's section measures (besides common.COMMON_PATHS); make bench-check reads it.
MEASURES = [
    "src/tastebud/models/knn.py",
    "src/tastebud/models/_common.py",
    "src/tastebud/models/_openmp.py",
    "src/tastebud/models/content.py",
    "src/tastebud/models/baseline.py",
    "src/tastebud/kernels/knn.py",
    "src/tastebud/tune.py",
    "benchmarks/protocol.py",
    "benchmarks/peers.py",
    "benchmarks/bench_rating.py",
    "benchmarks/bench_implicit.py",
]

# ---------------------------------------------------------------------------- rating: user kNN
USER_FIXED = {"similarity": "msd", "prediction": "mean"}  # what KNNWithMeans computes by default
USER_SPACE = {"neighbors": Int(5, 200, log=True), "min_support": Int(1, 20)}
PEER_SPACE = {"k": Int(5, 200, log=True), "min_support": Int(1, 20)}  # the same ideas, Surprise's names
PEER_DEFAULTS = {"k": 40, "min_support": 1}  # KNNWithMeans() and its sim_options


def _knn_with_means(p: dict[str, Any], seed: int = 0) -> Any:
    from surprise import KNNWithMeans

    sim = {"name": "msd", "user_based": True, "min_support": p["min_support"]}
    return KNNWithMeans(k=p["k"], sim_options=sim, verbose=False)


def user_knn_fold(split: Split, fold: int, trials: int) -> dict[str, Any]:
    """Defaults and tuned rows of user kNN and KNNWithMeans on one fold (bench_rating's run_pair, this pair)."""
    out: dict[str, Any] = {"fold": fold}
    out["ours_default"], _ = _ours_rmse("userknn", USER_FIXED, split.train, split.test)
    out["peer_default"] = _surprise_rmse(_knn_with_means(PEER_DEFAULTS), split.train, split.test)
    if trials:
        val = carve(split.train, "userknn", "rmse", seed=fold)
        best, _ = search(
            USER_SPACE, lambda p: _ours_rmse("userknn", p, val.train, val.test)[0], trials, seed=fold, fixed=USER_FIXED
        )
        peer_best, _ = search(
            PEER_SPACE, lambda p: _surprise_rmse(_knn_with_means(p), val.train, val.test), trials, fold
        )
        out["ours_tuned"], _ = _ours_rmse("userknn", best, split.train, split.test)
        out["peer_tuned"] = _surprise_rmse(_knn_with_means(peer_best), split.train, split.test)
        out["ours_params"], out["peer_params"] = best, peer_best
    log(f"u{fold} user kNN: " + ", ".join(f"{k}={v:.4f}" for k, v in out.items() if isinstance(v, float)))
    return out


def render_user_knn(results: list[dict[str, Any]], trials: int, losses: list[str]) -> str:
    rows, lines, chosen = [], [], []
    kinds = (("default", "defaults"), ("tuned", f"tuned on validation ({trials} trials)"))
    for side, who in (("ours", "tastebud userknn (msd, mean)"), ("peer", "Surprise KNNWithMeans (msd)")):
        for kind, title in kinds:
            values = [r[f"{side}_{kind}"] for r in results if f"{side}_{kind}" in r]
            if values:
                row = {"model": who, "setting": title, **{f"u{r['fold']}": r[f"{side}_{kind}"] for r in results}}
                rows.append({**row, "mean ± std": mean_std(values)})
    for kind, title in kinds:
        if f"ours_{kind}" in results[0]:
            ours, theirs = [r[f"ours_{kind}"] for r in results], [r[f"peer_{kind}"] for r in results]
            lines.append(f"- {title}: tastebud - Surprise per fold = {paired(ours, theirs, lower_is_better=True)}")
            if statistics.fmean(ours) >= statistics.fmean(theirs):
                losses.append(
                    f"user kNN, {title}: mean RMSE {statistics.fmean(ours):.4f} against KNNWithMeans' "
                    f"{statistics.fmean(theirs):.4f} (lower on {sum(a < b for a, b in zip(ours, theirs, strict=True))} of "
                    f"{len(ours)} folds)."
                )
    for r in results:
        if "ours_params" in r:
            chosen.append(
                {
                    "fold": f"u{r['fold']}",
                    "tastebud chose": _params({k: v for k, v in r["ours_params"].items() if k not in USER_FIXED}),
                    "Surprise chose": _params(r["peer_params"]),
                }
            )
    text = markdown_table(pd.DataFrame(rows)) + "\n\nPaired differences (negative: tastebud's RMSE is lower):\n\n"
    text += "\n".join(lines) + "\n"
    if chosen:
        text += "\nSettings each search chose:\n\n" + markdown_table(pd.DataFrame(chosen)) + "\n"
    return text


# ---------------------------------------------------------------------------- rating: speed
def rating_speed(split: Split, pairs: int, losses: list[str]) -> tuple[str, str]:
    """Fit + predict on one fold, interleaved; tastebud on 2 numba threads and on 1, Surprise on 1."""
    make_item_peer, item_peer_defaults, _ = PEERS["item kNN (Pearson-baseline)"]
    groups = {
        "item kNN (Pearson-baseline, baseline predictor), each library's defaults": (
            ("itemknn", KNN_FIXED),
            ("Surprise KNNBaseline", lambda: make_item_peer(item_peer_defaults, 0)),
        ),
        "user kNN (MSD, mean-centred), each library's defaults": (
            ("userknn", USER_FIXED),
            ("Surprise KNNWithMeans", lambda: _knn_with_means(PEER_DEFAULTS)),
        ),
    }
    tables = []
    for title, ((name, params), (peer, make)) in groups.items():
        sides: dict[str, tuple[Callable[[], Any], str]] = {
            peer: (lambda make=make: _surprise_rmse(make(), split.train, split.test), "1"),
        }
        for threads in (2, 1):
            sides[f"tastebud {name}, {threads} thread{'s' * (threads > 1)}"] = (
                lambda threads=threads, name=name, params=params: _threads(
                    threads, lambda: _ours_rmse(name, params, split.train, split.test)[0]
                ),
                str(threads),
            )
        timings = interleave(sides, pairs=pairs)
        _slower(timings, peer, title, losses)
        rmses = ", ".join(f"{label} {t.results[0]:.4f}" for label, t in timings.items())
        tables.append(f"{title} (RMSE of the timed runs: {rmses}):\n\n" + markdown_table(
            pd.DataFrame(timing_rows(timings, baseline=peer))
        ))  # fmt: skip
        log(f"speed: {title} done")
    return "\n\n".join(tables) + "\n", thread_counts()


def _slower(timings: dict[str, Timing], baseline: str, what: str, losses: list[str]) -> None:
    """Note every side whose median wall time per pair is above the baseline's."""
    base = timings[baseline].wall
    for label, t in timings.items():
        ratio = statistics.median(a / b for a, b in zip(t.wall, base, strict=True))
        if label != baseline and ratio > 1.0:
            losses.append(f"{what}: {label} takes {ratio:.2f}x the wall time of {baseline} (median per pair).")


def _threads(threads: int, run: Callable[[], Any]) -> Any:
    with numba_threads(threads):
        return run()


# ---------------------------------------------------------------------------- top-N
def topn(name: str, trials: int, pairs: int) -> dict[str, Any]:
    """Defaults and tuned rows of ItemKNN and implicit's item-item models, read once on test; fit times."""
    split = fixed_split(name)
    started = time.perf_counter()
    chosen = candidates(name, ["itemknn", "implicit-knn"], trials)
    tune_s = time.perf_counter() - started
    rows = []
    for c in chosen:
        rows.append({"model": c.model, "setting": c.setting, "validation": c.validation, "params": c.params,
                     **top_n(c.build(split.train, 0), split)})  # fmt: skip
        log(f"{name}: {c.model} ({c.setting}): test {rows[-1]['ndcg@10']:.4f}")
    ours = next(c for c in reversed(chosen) if c.side == "tastebud")  # the tuned rows
    theirs = next(c for c in reversed(chosen) if c.side == "peer")
    sides: dict[str, tuple[Callable[[], Any], str]] = {
        "implicit item-kNN, tuned": (lambda: theirs.build(split.train, 0), "2"),
        "tastebud itemknn, tuned, 2 threads": (lambda: _threads(2, lambda: ours.build(split.train, 0)), "2"),
        "tastebud itemknn, tuned, 1 thread": (lambda: _threads(1, lambda: ours.build(split.train, 0)), "1"),
    }
    timings = interleave(sides, pairs=pairs)
    slower: list[str] = []
    _slower(timings, "implicit item-kNN, tuned", f"top-N fit on {name}", slower)
    log(f"{name}: fit times done")
    rows_t = timing_rows(timings, baseline="implicit item-kNN, tuned")
    return {"rows": rows, "timings": rows_t, "tune_s": tune_s, "slower": slower}


def render_topn(name: str, res: dict[str, Any], losses: list[str]) -> str:
    table = pd.DataFrame(
        {
            "model": [r["model"] for r in res["rows"]],
            "setting": [r["setting"] for r in res["rows"]],
            "validation NDCG@10": [f"{r['validation']:.4f}" for r in res["rows"]],
            "NDCG@10": [f"{r['ndcg@10']:.4f}" for r in res["rows"]],
            "Recall@20": [f"{r['recall@20']:.4f}" for r in res["rows"]],
            "parameters": [_params(r["params"]) for r in res["rows"]],
        }
    )
    best = {
        side: max((r for r in res["rows"] if r["model"].startswith(side)), key=lambda r: r["validation"])
        for side in ("tastebud", "implicit")
    }
    a, b = best["tastebud"], best["implicit"]
    for r, q, what in ((a, b, "best by validation"), (res["rows"][0], _peer_defaults(res["rows"]), "defaults")):
        for key in ("ndcg@10", "recall@20"):
            if r[key] < q[key]:
                losses.append(f"top-N on {name}, {what}: {key} {r[key]:.4f} against implicit's {q[key]:.4f}.")
    losses.extend(res["slower"])
    verdict = (
        f"Best by validation: tastebud `{a['setting']}` against implicit `{b['setting']}`: test NDCG@10 "
        f"{a['ndcg@10']:.4f} vs {b['ndcg@10']:.4f} (ratio {a['ndcg@10'] / b['ndcg@10']:.3f}; deterministic fits, "
        f"one split, so no spread); Recall@20 {a['recall@20']:.4f} vs {b['recall@20']:.4f}. "
        f"Choosing the four rows took {res['tune_s']:.0f} s."
    )
    return (
        f"#### {name}\n\n{markdown_table(table)}\n\n{verdict}\n\nFit of the tuned rows on the whole training part, "
        f"interleaved:\n\n{markdown_table(pd.DataFrame(res['timings']))}\n"
    )


def _peer_defaults(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in rows if r["model"].startswith("implicit") and r["setting"] == "defaults")


# ---------------------------------------------------------------------------- item cold start
def _ml100k_with_wiki() -> Interactions:
    data = load_ml100k()
    wiki = pd.read_csv(DATA / "ml-100k-wiki" / "movie_wiki.csv")
    lead = dict(zip(wiki["movie_title"].astype(str), wiki["wiki_summary"].astype(str), strict=False))
    feats = data.item_features.copy()
    feats["wiki"] = [lead.get(t) for t in feats["title"].astype(str)]
    data.item_features = feats
    return data


def cold_start_split(data: Interactions, seed: int, among: np.ndarray | None = None) -> tuple[Split, np.ndarray]:
    """Hold out a tenth of all items (drawn from ``among``, default every item) with all their events."""
    rng = np.random.default_rng(seed)
    pool = np.arange(data.n_items) if among is None else among
    held = np.sort(rng.choice(pool, size=data.n_items // 10, replace=False))
    is_held = np.zeros(data.n_items, bool)
    is_held[held] = True
    ev = is_held[data.item_idx]
    return Split(data.subset(~ev), data.subset(ev), name=f"cold-start seed {seed}"), held


def cold_ndcg(model: Recommender, split: Split, held: np.ndarray) -> float:
    """NDCG@10 of each test user's ranking of the held-out items only."""
    rel = split.test.matrix
    users = np.nonzero(np.diff(rel.indptr) > 0)[0]
    # candidates in a fixed random order: exact ties (items sharing every genre, say) then break
    # at random instead of towards low item ids, which in ML-100K are the popular films
    cand = np.random.default_rng(12345).permutation(held)
    rec, _ = model.rank_rows(users, 10, True, cand)
    return float(np.mean(M.ndcg_at_k(rec, rel[users], 10)))


# block name -> (label, column, kind)
BLOCKS = {
    "genres": ("genres", "genres", "multi"),
    "year": ("year", "year", "numeric"),
    "title": ("title (TF-IDF)", "title", "text"),
    "wiki": ("wiki lead (TF-IDF)", "wiki", "text"),
    "wiki_emb": ("wiki lead (MiniLM embedding)", "wiki", "embedding"),
}
WEIGHT = LogFloat(0.02, 5.0)


def _content(weights: dict[str, float]) -> ContentBased:
    blocks = {b: {"weight": w, "kind": BLOCKS[b][2], "column": BLOCKS[b][1]} for b, w in weights.items()}
    return ContentBased(feature_blocks=blocks)


def cold_start(trials: int) -> dict[str, Any]:
    data = _ml100k_with_wiki()
    test, test_held = cold_start_split(data, 0)
    # the validation carve: another tenth of all items, drawn from the training items only
    val, val_held = cold_start_split(test.train, 1, among=np.setdiff1d(np.arange(data.n_items), test_held))
    weights, _ = search(
        dict.fromkeys(BLOCKS, WEIGHT),
        lambda w: cold_ndcg(_content(w).fit(val.train), val, val_held),
        trials,
        seed=0,
        maximize=True,
    )
    candidates_ = {"random": None, **{BLOCKS[b][0]: {b: 1.0} for b in BLOCKS}}
    candidates_["all blocks, equal weights"] = dict.fromkeys(BLOCKS, 1.0)
    candidates_["all blocks, weights chosen on validation"] = weights
    rows = []
    for label, w in candidates_.items():
        scores = []
        for split, held in ((val, val_held), (test, test_held)):
            model = Random(random_state=0) if w is None else _content(w)
            scores.append(cold_ndcg(model.fit(split.train), split, held))
        rows.append({"features": label, "validation NDCG@10": scores[0], "test NDCG@10": scores[1]})
    # what a user of the library would ship: the content model best on validation, read on test
    pick = max(rows[1:], key=lambda r: r["validation NDCG@10"])
    rows.append({**pick, "features": f"the content row best on validation ({pick['features']})"})
    log("cold start done")
    return {"rows": rows, "weights": weights, "n_held": len(test_held), "trials": trials}


def _cold_note(rows: list[dict[str, Any]], losses: list[str]) -> str:
    """How the chosen mix compares, on validation and on test, with the block that is best alone on validation."""
    chosen = rows[-2]
    alone = max((r for r in rows if r["features"] in {label for label, _, _ in BLOCKS.values()}),
                key=lambda r: r["validation NDCG@10"])  # fmt: skip
    val_word = "above" if chosen["validation NDCG@10"] > alone["validation NDCG@10"] else "not above"
    test_word = "above" if chosen["test NDCG@10"] > alone["test NDCG@10"] else "below"
    if test_word == "below":
        losses.append(
            f"item cold start: the block weights chosen on validation score {chosen['test NDCG@10']:.4f} on test, "
            f"below {alone['features']} alone ({alone['test NDCG@10']:.4f}), the best single block on validation."
        )
    return (
        f"On validation the chosen mix scores {chosen['validation NDCG@10']:.4f}, {val_word} the best block alone "
        f"({alone['features']}, {alone['validation NDCG@10']:.4f}); on test {chosen['test NDCG@10']:.4f}, {test_word} "
        f"that block's {alone['test NDCG@10']:.4f}."
    )


# ---------------------------------------------------------------------------- memory
def _memory_child() -> None:
    """Runs in a fresh process: build 50k x 5M implicit interactions, fit ItemKNN, print JSON."""
    import resource

    from tastebud.data.idmap import IdMap

    rng = np.random.default_rng(0)
    n_items, n_users, n_events = 50_000, 100_000, 5_000_000
    pop = 1.0 / (np.arange(n_items) + 10.0) ** 0.8
    act = rng.lognormal(0.0, 1.0, n_users)
    u = rng.choice(n_users, size=n_events, p=act / act.sum()).astype(np.int32)
    i = rng.choice(n_items, size=n_events, p=pop / pop.sum()).astype(np.int32)
    data = Interactions(IdMap(np.arange(n_users), "user"), IdMap(np.arange(n_items), "item"), u, i, explicit=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    start = time.perf_counter()
    model = ItemKNN(neighbors=50, similarity="cosine").fit(data)
    fit_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "items": n_items,
                "interactions": n_events,
                "users": n_users,
                "unique_pairs": int(data.matrix.nnz),
                "sim_nnz": int(model.sim_.nnz),
                "fit_s": fit_s,
                "rss_before_fit_mb": before,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def memory_row() -> dict:
    out = subprocess.run([sys.executable, __file__, "--memory-child"], capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"memory child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def render_memory(mem: dict) -> str:
    cells = [f"{mem[k]:,}" for k in ("items", "interactions", "users", "unique_pairs", "sim_nnz")]
    cells += [f"{mem['fit_s']:.1f}", f"{mem['rss_before_fit_mb']:.0f}", f"{mem['peak_rss_mb']:.0f}"]
    return (
        "| items | interactions | users | unique pairs | similarities kept | fit s (one fit, 2 threads) | "
        "RSS before fit (MB) | peak RSS (MB) |\n|---|---|---|---|---|---|---|---|\n| " + " | ".join(cells) + " |\n"
    )


# ---------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds", default="1,2,3,4,5", help="ML-100K folds of the user kNN rows")
    ap.add_argument("--trials", type=int, default=20, help="search budget per side (rating and top-N rows)")
    ap.add_argument("--cold-trials", type=int, default=30, help="search budget of the cold-start block weights")
    ap.add_argument("--pairs", type=int, default=5, help="interleaved timing pairs after the warm-up")
    ap.add_argument("--data", action="append", choices=["ml-100k", "ml-latest-small"], help="top-N data (default both)")
    ap.add_argument("--no-memory", action="store_true", help="skip the 50k x 5M memory run")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        _memory_child()
        return
    if args.trials < 0 or args.cold_trials < 1 or args.pairs < 1:
        ap.error("--trials must be >= 0, --cold-trials and --pairs >= 1")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    folds = tuple(int(x) for x in args.folds.split(","))
    splits = {int(s.name[1:]): s for s in ml100k_folds(DATA, folds=folds)}

    losses: list[str] = []  # filled by the renderers: every place tastebud comes out behind
    log(f"rating speed (u{folds[0]}) ...")
    speed, threads = rating_speed(splits[folds[0]], args.pairs, losses)
    log("user kNN vs KNNWithMeans ...")
    user = [user_knn_fold(splits[f], f, args.trials) for f in folds]
    top = {name: topn(name, max(args.trials, 1), args.pairs) for name in args.data or ("ml-100k", "ml-latest-small")}
    log("item cold start ...")
    cold = cold_start(args.cold_trials)
    mem = None
    if not args.no_memory:
        log("memory (50k items x 5M interactions) ...")
        mem = memory_row()
    minutes = (time.perf_counter() - started) / 60
    load_after = os.getloadavg()[0]
    fold_cols = ", ".join(f"u{f}" for f in folds)
    trials = max(args.trials, 1)
    user_text = render_user_knn(user, args.trials, losses)
    top_text = "\n".join(render_topn(name, res, losses) for name, res in top.items())
    cold_note = _cold_note(cold["rows"], losses)

    body = f"""## Neighbourhood and content models (`benchmarks/bench_knn.py`)

Every choice below is made on a validation carve of the training data; each test part is read once.
Item kNN's accuracy beside Surprise's KNNBaseline, defaults and tuned, is the `rating` section's, and
ItemKNN beside implicit's item-kNN with 3 seeds is also in the `implicit` section; this section adds
user kNN, the timings, the cold start and memory.

### Rating prediction, user kNN beside Surprise KNNWithMeans: ML-100K {fold_cols} (RMSE)

tastebud `userknn(similarity="msd", prediction="mean")`, its other settings at their defaults (40
neighbours, minimum support 1), against `KNNWithMeans()` at Surprise's defaults (MSD, user-based, k=40,
min_support 1). Tuned rows: each side searched with Optuna's TPE sampler (seed = fold number,
{args.trials} trials) over neighbours (5-200, log) and minimum support (1-20) on a validation carve of
the fold's base file (20% of its ratings, `tastebud.tune.validation_split`), then refitted on the whole
base file and scored once on the test file. TPE draws its first 10 trials at random, so under the same
seed and mirrored spaces both sides try the same first 10 points; later trials follow each side's own
validation values.

{user_text}
### Fit + predict time, ML-100K u{folds[0]} (seconds; {args.pairs} interleaved rounds after a warm-up round)

Each run fits on the base file's ratings and predicts the test file's pairs by external id.
Surprise's time includes building its trainset from a data frame of the ratings; tastebud's
`Interactions` are built once before the timing, so that conversion is not counted on its side.
Each side runs at its library's defaults for that model (the same settings here), not at tuned ones.
The sides run in turn, the warm-up (numba's compilation, caches) timed apart and excluded. Surprise is single-threaded; tastebud
runs on 2 numba threads and on 1 (`tastebud.models._common.numba_threads`). Thread pools of this
process: {threads}.

{speed}
### Top-N, fixed 80/20 splits, ItemKNN beside implicit's item-item recommenders

Each library at its defaults (tastebud `itemknn()`: cosine, 40 neighbours; implicit
`CosineRecommender(K=20)`) and tuned: {trials} trials of Optuna TPE (seed 0) on the carve of the training
part (a random 20% of each user's training events, seed 0), tastebud through `tastebud.tune` over
`ItemKNN.search_space` (neighbours 5-200, cosine / BM25 / TF-IDF / asymmetric cosine, shrinkage 0-100;
the prediction rule has no effect on ranking), implicit over K 5-200 and Cosine / BM25 / TF-IDF
(`benchmarks/peers.py`). Each row is refitted on the whole training part and read once on the test
part with the same tastebud ranking code (full ranking, training items excluded); the fits are
deterministic, so one fit each. implicit runs with `num_threads=2`. Fit times: the tuned rows, each
at its own chosen setting (so the two sides may keep different neighbour counts), fitted in turn
({args.pairs} rounds after a warm-up round, warm-up excluded); tastebud on 2 numba threads and on 1.

{top_text}
### Item cold start, ML-100K ({cold["n_held"]} items, 10%, held out with all their ratings; NDCG@10)

Test: the held-out items (seed 0); each user who rated them gets only those ranked, in a fixed random
candidate order so that exact ties do not favour low ids. Validation: another {cold["n_held"]} items
drawn from the *training* items only (seed 1), held out of the training part the same way. The weights
of the "weights chosen on validation" row are the best of {cold["trials"]} trials of Optuna TPE (seed 0, each weight
0.02-5, log scale) on the validation items; the last row is whichever content row scores best on
validation. Every row is refitted on the whole training part for the test column. Features: ML-100K
genres, release year, title, and the Wikipedia lead sentence (`ml-100k-wiki`) as TF-IDF and as MiniLM
sentence embeddings.

{markdown_table(pd.DataFrame(cold["rows"]))}

Weights chosen on validation: {", ".join(f"{b} {w:.3g}" for b, w in cold["weights"].items())}. {cold_note}
"""
    if mem is not None:
        body += f"""
### Memory: ItemKNN(cosine, 50 neighbours) on synthetic data (child process)

{render_memory(mem)}"""
    body += (
        "\n### Where tastebud loses or falls short\n\n"
        + ("\n".join(f"- {line}" for line in losses) if losses else "Nowhere in this run.")
        + "\n"
    )
    body += f"""
Whole run: {minutes:.0f} minutes on 2 cores shared with other jobs (1-minute load average
{load_before:.1f} when it started, {load_after:.1f} when it ended), so times are upper bounds.

Reproduce: `.venv/bin/python benchmarks/bench_knn.py --folds {",".join(map(str, folds))} --trials {args.trials} \
--cold-trials {args.cold_trials} --pairs {args.pairs}`"""
    print(body, flush=True)
    if not args.no_write:
        write_section("knn", body, measures=MEASURES)
        print("written section 'knn' of BENCHMARKS.md", flush=True)


if __name__ == "__main__":
    main()
