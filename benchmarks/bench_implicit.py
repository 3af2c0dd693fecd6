"""Top-N beside implicit 0.7.3, cornac and LensKit, under the honest protocol (issues #18, #22); iALS speed.

On the fixed 80/20 splits of ML-100K and ml-latest-small (``tastebud.data.movielens.fixed_split``):

1. every side gets a "defaults" row (its library's own defaults) and a "tuned on validation"
   row: tastebud's ``ials``, ``ease``, ``bpr``, ``itemknn``, ``rp3beta`` (and ``slim`` on request)
   through ``tastebud.tune``; implicit's ALS, BPR and item-kNN (cosine, BM25 or TF-IDF),
   cornac's EASE and BPR, and LensKit's ImplicitMF and item-kNN (run in LensKit's own
   environment, ``make lenskit-env``; see ``peers.py``) through the same Optuna TPE search
   (``protocol.tune_peer``), seed 0, the same
   ``--trials``, over a space that mirrors the tastebud counterpart's, on the same carve of the
   *training part only* (a random 20% of each user's training events);
2. tastebud's hybrid: its defaults, and ``tastebud.tune.choose_fusion`` over the tastebud models,
   each at its better row on validation (members, fusion and weights chosen on the same carve);
3. each row is refitted on the whole training part (``--seeds`` seeds for the models that draw;
   the others once) and read once on the test part: full-ranking NDCG@10 and Recall@20, each
   user's training items excluded, every side ranked by the same tastebud code (a peer's learned
   arrays are carried by ``peers.Carried``);
4. "best tastebud vs best peer" per data set: each side's best row *by validation NDCG@10*,
   compared per seed (``protocol.paired``) with the ratio of mean test NDCG@10.

Then iALS top-10 speed and peak memory on a synthetic 200,000 x 50,000 set with 10 million
interactions, each library in its own subprocess (fit time under the interleaved protocol is
``bench_ials_speed.py``'s section).

    .venv/bin/python benchmarks/bench_implicit.py             # everything: about 80 minutes on 2 busy cores
    .venv/bin/python benchmarks/bench_implicit.py --no-speed  # accuracy only: about 55 minutes
    .venv/bin/python benchmarks/bench_implicit.py --reuse-speed benchmarks/implicit_speed.json  # speed rows kept
    .venv/bin/python benchmarks/bench_implicit.py --data ml-100k --trials 1 --seeds 1 --models ials,ease --no-speed --no-write

Where the time goes (defaults: 10 trials, 3 seeds, 2 busy cores): ML-100K about 10 minutes;
ml-latest-small about 45, most of it the ~26 EASE inversions of tastebud and cornac over 9,724
items (about 70 s each); the speed part about 20. ``slim`` (``--models ...,slim``) adds over 3
minutes per fit on ml-latest-small, so 40 or more. The smoke run above takes about a minute.

Results merge into ``implicit_measured.json`` per data set, so ``--data`` runs one at a time.
``--reuse-speed FILE`` takes the speed rows from a file saved by ``--save-speed`` (each row names
the commit it was measured at) instead of measuring them, and refuses when the code they time
(:data:`SPEED_MEASURES`) changed since that commit; the section then says where they come from.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_section  # noqa: E402
from peers import PEERS, Peer  # noqa: E402
from protocol import carve, mean_std, paired, top_n, tune_peer, validation_value  # noqa: E402

# The code this benchmark's section measures (besides common.COMMON_PATHS); make bench-check reads it.
MEASURES = [
    "src/tastebud/models/ials.py",
    "src/tastebud/models/ease.py",
    "src/tastebud/models/bpr.py",
    "src/tastebud/models/knn.py",
    "src/tastebud/models/rp3beta.py",
    "src/tastebud/models/slim.py",
    "src/tastebud/models/_item_item.py",
    "src/tastebud/models/_common.py",
    "src/tastebud/models/hybrid.py",
    "src/tastebud/kernels/ials.py",
    "src/tastebud/kernels/bpr.py",
    "src/tastebud/kernels/knn.py",
    "src/tastebud/kernels/slim.py",
    "src/tastebud/tune.py",
    "benchmarks/protocol.py",
    "benchmarks/peers.py",
    "benchmarks/lenskit_worker.py",
]
#: The code the speed part times: reused speed rows must have been measured at a commit with the same.
SPEED_MEASURES = [
    "src/tastebud/models/ials.py",
    "src/tastebud/kernels/ials.py",
    "src/tastebud/models/_common.py",
    "src/tastebud/data/synthetic.py",
    "src/tastebud/data/interactions.py",
    "src/tastebud/core",
    "src/tastebud/kernels/topk.py",
]
RESULTS = Path(__file__).resolve().parent / "implicit_measured.json"
DATASETS = ("ml-100k", "ml-latest-small")
METRIC = "ndcg@10"
#: tastebud's models and what they run with that is not a trade-off (threads): never searched.
OURS: dict[str, dict[str, Any]] = {
    "ials": {"threads": 2},
    "ease": {},
    "bpr": {"threads": 1},  # bit-reproducible under a seed
    "itemknn": {},
    "rp3beta": {},
    "slim": {"threads": 2},
}
HYBRID = "hybrid"
ALL_MODELS = (*OURS, HYBRID, *PEERS)
#: slim's coordinate descent over 9,700 items costs minutes per trial on 2 cores: ask for it by name.
DEFAULT_MODELS = tuple(m for m in ALL_MODELS if m != "slim")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Candidate:
    """One row of the table before its final fits: how to build it, and its validation value."""

    side: str  # "tastebud" or "peer"
    model: str
    setting: str
    params: dict[str, Any]
    validation: float
    stochastic: bool
    build: Callable[[Any, int], Any]  # (train, seed) -> fitted model


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "random_state"}


def _ours(name: str, params: dict[str, Any]) -> tuple[bool, Callable[[Any, int], Any]]:
    """Whether tastebud's ``name`` draws, and a builder that fits it with a seed."""
    import tastebud as tb

    cls = tb.get_model(name)
    stochastic = "random_state" in cls().get_params()

    def build(train: Any, seed: int) -> Any:
        return cls(**params, **({"random_state": seed} if stochastic else {})).fit(train)

    return stochastic, build


def _hybrid(params: dict[str, Any]) -> tuple[bool, Callable[[Any, int], Any]]:
    """A hybrid builder: every member that draws gets the seed."""
    import tastebud as tb

    members = list(params.get("models", ("itemknn", "ials")))
    drawing = [m for m in members if "random_state" in tb.get_model(m)().get_params()]

    def build(train: Any, seed: int) -> Any:
        per = {m: dict((params.get("params") or {}).get(m, {})) for m in members}
        for m in drawing:
            per[m]["random_state"] = seed
        return tb.get_model(HYBRID)(**{**params, "params": per}).fit(train)

    return bool(drawing), build


def candidates(name: str, models: list[str], trials: int) -> list[Candidate]:
    """Every row's setting, chosen on the carve of the training part: defaults and tuned, both sides."""
    from tastebud.data.movielens import fixed_split
    from tastebud.tune import choose_fusion, tune

    train = fixed_split(name).train
    val = carve(train, "ials", METRIC)  # the carve tune and choose_fusion use (seed 0)
    tuned_label = f"tuned on validation, {trials} trials"
    out: list[Candidate] = []
    members: dict[str, tuple[float, dict[str, Any]]] = {}  # each model's better row on validation
    for m in (m for m in models if m in OURS):
        stochastic, build = _ours(m, OURS[m])
        t0 = time.perf_counter()
        value = validation_value(build(val.train, 0), val, METRIC)
        out.append(Candidate("tastebud", f"tastebud {m}", "defaults", dict(OURS[m]), value, stochastic, build))
        members[m] = (value, dict(OURS[m]))
        log(f"{name}: tastebud {m} defaults: validation {value:.4f} ({time.perf_counter() - t0:.0f} s)")
        t0 = time.perf_counter()
        res = tune(m, train, metric=METRIC, trials=trials, params=OURS[m], random_state=0)
        tuned = _clean(res.params)
        stochastic, build = _ours(m, tuned)
        out.append(Candidate("tastebud", f"tastebud {m}", tuned_label, tuned, res.value, stochastic, build))
        if res.value > members[m][0]:
            members[m] = (res.value, tuned)
        log(f"{name}: tastebud {m} tuned {tuned}: validation {res.value:.4f} ({time.perf_counter() - t0:.0f} s)")
    if HYBRID in models:
        defaults = {"params": {m: OURS[m] for m in ("itemknn", "ials")}}
        stochastic, build = _hybrid(defaults)
        t0 = time.perf_counter()
        value = validation_value(build(val.train, 0), val, METRIC)
        out.append(Candidate("tastebud", "tastebud hybrid", "defaults", defaults, value, stochastic, build))
        log(f"{name}: tastebud hybrid defaults: validation {value:.4f} ({time.perf_counter() - t0:.0f} s)")
        if members:
            t0 = time.perf_counter()
            fusion = choose_fusion(train, {m: p for m, (_, p) in members.items()}, metric=METRIC, random_state=0)
            params = {**fusion.params, "params": {m: _clean(p) for m, p in fusion.params["params"].items()}}
            stochastic, build = _hybrid(params)
            label = f"choose_fusion over {', '.join(members)}"
            out.append(Candidate("tastebud", "tastebud hybrid", label, params, fusion.value, stochastic, build))
            log(f"{name}: hybrid chose {'+'.join(params['models'])} ({params['method']}, weights {params['weights']}): "
                f"validation {fusion.value:.4f} ({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    for m in (m for m in models if m in PEERS):
        peer = PEERS[m]
        if not peer.available():
            log(f"{name}: {peer.label} skipped ({peer.missing()})")
            continue
        build = _peer(peer, peer.defaults)
        t0 = time.perf_counter()
        value = validation_value(build(val.train, 0), val, METRIC)
        out.append(Candidate("peer", peer.label, "defaults", dict(peer.defaults), value, peer.stochastic, build))
        log(f"{name}: {peer.label} defaults: validation {value:.4f} ({time.perf_counter() - t0:.0f} s)")
        t0 = time.perf_counter()
        best, value = tune_peer(lambda t, p, peer=peer: peer.fit(t, p, 0), peer.space, train, peer.counterpart,
                                METRIC, trials)  # fmt: skip
        out.append(Candidate("peer", peer.label, tuned_label, best, value, peer.stochastic, _peer(peer, best)))
        log(f"{name}: {peer.label} tuned {best}: validation {value:.4f} ({time.perf_counter() - t0:.0f} s)")
    return out


def _peer(peer: Peer, params: dict[str, Any]) -> Callable[[Any, int], Any]:
    return lambda train, seed: peer.fit(train, dict(params), seed)


def accuracy(name: str, models: list[str], trials: int, seeds: list[int]) -> dict[str, Any]:
    """Choose every row on validation, then refit on the training part and read the test part once."""
    from tastebud.data.movielens import fixed_split

    split = fixed_split(name)
    t0 = time.perf_counter()
    chosen = candidates(name, models, trials)
    tune_s = time.perf_counter() - t0
    rows = []
    for c in chosen:
        runs = []
        for seed in seeds if c.stochastic else seeds[:1]:
            start = time.perf_counter()
            model = c.build(split.train, seed)
            fit_s = time.perf_counter() - start
            runs.append({"seed": seed, **top_n(model, split), "fit_s": fit_s})
        row = {f.name: getattr(c, f.name) for f in fields(c) if f.name != "build"}
        rows.append({**row, "runs": runs})
        log(f"{name}: {c.model} ({c.setting}): test NDCG@10 {mean_std([r['ndcg@10'] for r in runs])}")
    return {"rows": rows, "trials": trials, "seeds": list(seeds), "tune_s": tune_s}


def _per_seed(row: dict[str, Any], seeds: list[int], key: str) -> list[float]:
    """One value per seed; a deterministic row's single fit stands for every seed."""
    by_seed = {r["seed"]: r[key] for r in row["runs"]}
    return [by_seed.get(s, row["runs"][0][key]) for s in seeds]


def _params(params: dict[str, Any]) -> str:
    if "params" in params:  # a hybrid; what it leaves out are Hybrid's defaults
        members = "+".join(params.get("models", ("itemknn", "ials")))
        method = params.get("method", "rrf")
        how = method + (f" k={params.get('rrf_k', 60)}" if method == "rrf" else "")
        weights = params.get("weights")
        return f"{members}, {how}" + (f", weights {weights}" if weights else "")
    shown = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in params.items() if k != "threads"}
    return ", ".join(f"{k} {v}" for k, v in shown.items()) or "(library defaults)"


def render_accuracy(results: dict[str, Any]) -> str:
    parts, verdicts = [], []
    for name in DATASETS:
        if name not in results:
            continue
        res = results[name]
        table = pd.DataFrame(
            {
                "model": [r["model"] for r in res["rows"]],
                "setting": [r["setting"] for r in res["rows"]],
                "validation NDCG@10": [f"{r['validation']:.4f}" for r in res["rows"]],
                "NDCG@10": [mean_std([x["ndcg@10"] for x in r["runs"]]) for r in res["rows"]],
                "Recall@20": [mean_std([x["recall@20"] for x in r["runs"]]) for r in res["rows"]],
                "fits": [len(r["runs"]) for r in res["rows"]],
                "fit s": [f"{statistics.median(x['fit_s'] for x in r['runs']):.1f}" for r in res["rows"]],
                "parameters": [_params(r["params"]) for r in res["rows"]],
            }
        )
        parts.append(f"### {name}\n\n{markdown_table(table)}\n")
        ours = [r for r in res["rows"] if r["side"] == "tastebud"]
        theirs = [r for r in res["rows"] if r["side"] == "peer"]
        if ours and theirs:
            a = max(ours, key=lambda r: r["validation"])
            b = max(theirs, key=lambda r: r["validation"])
            x, y = _per_seed(a, res["seeds"], "ndcg@10"), _per_seed(b, res["seeds"], "ndcg@10")
            verdicts.append(
                f"- {name}: best tastebud by validation, `{a['model']}` ({a['setting']}), vs best peer by validation, "
                f"`{b['model']}` ({b['setting']}): test NDCG@10 {statistics.fmean(x):.4f} vs {statistics.fmean(y):.4f}, "
                f"ratio **{statistics.fmean(x) / statistics.fmean(y):.3f}**; per seed {paired(x, y, lower_is_better=False)}. "
                f"Choosing every row took {res['tune_s']:.0f} s."
            )
    missing = [n for n in DATASETS if n not in results]
    if missing:
        verdicts.append(f"- not measured yet: {', '.join(missing)} (run `bench_implicit.py --data NAME`).")
    first = next(iter(results.values()))
    trials, seeds = first["trials"], first["seeds"]
    return (
        "Fixed 80/20 splits (`tastebud.data.movielens.fixed_split`). Every setting is chosen on a validation carve "
        "of the training part (a random 20% of each user's training events, seed 0; the test part is read once, "
        f"at the end): a {trials}-trial Optuna TPE search (seed 0) per model and side, tastebud's through "
        "`tastebud.tune`, each peer's through the same search over a space that mirrors its tastebud counterpart's "
        "(`benchmarks/peers.py`); \"defaults\" rows are each library's own defaults. The hybrid's tuned row is "
        "`tastebud.tune.choose_fusion` over the tastebud models above, each at its row (defaults or tuned) with the "
        "higher validation value (members, fusion and weights chosen on the same carve; it may pick one model "
        "alone; its validation value is read within choose_fusion's 200-item pool per user). Each row is refitted on the whole training part, with seeds "
        f"{', '.join(map(str, seeds))} for the models that draw (mean ± standard deviation; the others fit once), "
        "and ranked by the same tastebud code: full ranking, each user's training items excluded (a peer's factors "
        "or item weights are carried by a tastebud model). implicit runs with `num_threads=2` and BLAS held to one "
        "thread; its ALS confidence is `alpha * value` where tastebud's is `1 + alpha * value` (LensKit's "
        "`1 + weight`). cornac's BPR keeps an item bias, carried as implicit's is (a last factor); LensKit "
        "runs in its own environment (it pins pandas 2) and scores a training user by its own user solve "
        "from the user's history (ALS) and by the sum of the `max_nbrs` largest similarities to the user's "
        "items (item-kNN, implicit feedback: its default explicit mode centres every value of clicks to "
        "zero), each rule checked against LensKit's own scorer. Items without training events get no score "
        "from cornac's BPR and LensKit (outside their vocabularies), 0 from cornac's EASE. fit s is the "
        "median over the fits, on a shared 2-core machine. The comparison takes each side's best row by "
        "*validation* NDCG@10, never by test.\n\n" + "\n".join(parts) + "\n" + "\n".join(verdicts) + "\n"
    )


# ---------------------------------------------------------------------- speed (subprocesses)
SPEED = {
    "n_users": 200_000,
    "n_items": 50_000,
    "n_interactions": 10_000_000,
    "factors": 64,
    "epochs": 15,
    "users": 10_000,
}


def speed_worker(which: str) -> dict:
    """Runs in a fresh process: build the set, fit, top-10 for 10,000 users; peak memory."""
    import resource

    from tastebud.data.synthetic import generate

    data = generate(
        n_users=SPEED["n_users"], n_items=SPEED["n_items"], n_interactions=SPEED["n_interactions"],
        explicit=False, random_state=0, features=False,
    )  # fmt: skip
    ui = data.matrix.tocsr()
    users = np.linspace(0, data.n_users - 1, SPEED["users"]).astype(np.int64)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out = {"nnz": int(ui.nnz), "rss_after_data_mb": rss_data, "measured_at": _head()}
    if which == "tastebud":
        from tastebud.models.ials import ImplicitALS

        # implicit's model: a plain penalty (reg_exponent 0); compiled outside the timing
        ImplicitALS(factors=4, epochs=1, reg_exponent=0.0, threads=2).fit(data.subset(np.arange(1000)))
        model = ImplicitALS(
            factors=SPEED["factors"], reg=0.1, alpha=4.0, reg_exponent=0.0, epochs=SPEED["epochs"], threads=2
        )
        start = time.perf_counter()
        model.fit(data)
        out["fit_s"] = time.perf_counter() - start
        ids = data.users.ids[users].tolist()
        model.recommend(ids[:10], k=10)
        start = time.perf_counter()
        recs = model.recommend(ids, k=10)
        out["top10_s"] = time.perf_counter() - start
        out["first"] = data.items.index(recs.items_of(0), "item").tolist()
    else:
        import implicit.cpu.als as ials
        from threadpoolctl import threadpool_limits

        model = ials.AlternatingLeastSquares(factors=SPEED["factors"], regularization=0.1, alpha=5.0,
                                             iterations=SPEED["epochs"], num_threads=2, random_state=0)  # fmt: skip
        with threadpool_limits(1, "blas"):
            start = time.perf_counter()
            model.fit(ui, show_progress=False)
            out["fit_s"] = time.perf_counter() - start
        model.recommend(users[:10], ui[users[:10]], N=10)
        start = time.perf_counter()
        ids, _ = model.recommend(users, ui[users], N=10, filter_already_liked_items=True)
        out["top10_s"] = time.perf_counter() - start
        out["first"] = ids[0].tolist()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def _head() -> str:
    return subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip


def reused_speed(path: str) -> tuple[list[dict], str]:
    """Speed rows saved by an earlier run, and the commit they were measured at; refuses rows whose
    timed code (:data:`SPEED_MEASURES`) changed since, or that do not say where they come from."""
    rows = json.loads(Path(path).read_text())
    commits = {r.get("measured_at") for r in rows}
    if len(commits) != 1 or None in commits:
        raise SystemExit(f"{path}: every speed row must name the one commit it was measured at (measured_at)")
    commit = commits.pop()
    repo = str(Path(__file__).resolve().parents[1])
    diff = subprocess.run(["git", "-C", repo, "diff", "--quiet", commit, "HEAD", "--", *SPEED_MEASURES])
    if diff.returncode != 0:
        raise SystemExit(f"{path}: the timed code changed since {commit[:12]} (or it is unknown): measure speed again")
    return rows, commit


def speed() -> list[dict]:
    rows = []
    for which in ("implicit", "tastebud"):
        proc = subprocess.run(
            [sys.executable, __file__, "--speed-worker", which], capture_output=True, text=True, timeout=3000
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{which} speed worker failed:\n{proc.stderr[-3000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["library"] = which
        rows.append(res)
        print(which, res, flush=True)
    return rows


def render_speed(rows: list[dict], reused: str | None = None) -> str:
    """The speed table; ``reused``: the commit the rows were measured at, when not this run."""
    sp_frame = pd.DataFrame(rows)[["library", "nnz", "fit_s", "top10_s", "peak_rss_mb", "rss_after_data_mb"]]
    imp = sp_frame.set_index("library").loc["implicit"]
    sp_frame["fit / implicit"] = sp_frame["fit_s"] / imp["fit_s"]
    sp_frame["top10 / implicit"] = sp_frame["top10_s"] / imp["top10_s"]
    sp_frame["peak memory / implicit"] = sp_frame["peak_rss_mb"] / imp["peak_rss_mb"]
    return "\n".join(
        [
            f"### iALS speed: synthetic {SPEED['n_users']:,} users x {SPEED['n_items']:,} items x "
            f"{SPEED['n_interactions']:,} interactions (`tastebud.data.synthetic.generate(explicit=False)`), "
            f"{SPEED['factors']} factors, {SPEED['epochs']} iterations, 2 threads",
            "",
            "Each library in its own subprocess (peak RSS includes generating the data set; `rss_after_data_mb` is "
            "the peak before fitting, so where the two are equal the fit and top-10 stayed below the generator's "
            f"peak). top10_s: top-10 with seen items excluded for {SPEED['users']:,} users. One fit each: for fit "
            "time under the interleaved protocol see the iALS speed section (`bench_ials_speed.py`).",
            "",
            markdown_table(sp_frame, ".2f"),
            "",
            *(
                [
                    f"These rows were measured at commit {reused[:12]} and reused (`--reuse-speed`): the code they "
                    f"time ({', '.join(SPEED_MEASURES)}) is the same at the commit stamped below.",
                    "",
                ]
                if reused
                else []
            ),
        ]
    )


def versions() -> str:
    """The peers' library versions (LensKit's from its own environment), or why one is missing."""
    import cornac
    import implicit

    from peers import LENSKIT_ALS, lenskit_version

    ok = LENSKIT_ALS.available()
    lenskit = f"LensKit {lenskit_version()}" if ok else f"LensKit not measured ({LENSKIT_ALS.missing()})"
    return f"Peers: implicit {implicit.__version__}, cornac {cornac.__version__}, {lenskit}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speed-worker", choices=["tastebud", "implicit"])
    parser.add_argument("--data", choices=DATASETS, action="append", help="data set(s) to run (default: both)")
    parser.add_argument("--trials", type=int, default=10, help="tuning trials per model and side (default 10)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the final fits of models that draw (default 3)")
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated subset of {','.join(ALL_MODELS)} (default: all but slim)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only: leave BENCHMARKS.md and the JSON alone")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--speed-only", action="store_true", help="measure speed only and save it (--save-speed)")
    parser.add_argument("--save-speed", help="write the speed rows to this JSON file")
    parser.add_argument("--reuse-speed", help="take the speed rows from this JSON file instead of measuring")
    args = parser.parse_args()
    if args.speed_worker:
        print(json.dumps(speed_worker(args.speed_worker)))
        return
    if args.speed_only:
        rows = speed()
        Path(args.save_speed or "implicit_speed.json").write_text(json.dumps(rows))
        return
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(ALL_MODELS))
    if unknown:
        parser.error(f"unknown --models {unknown}; choose from {', '.join(ALL_MODELS)}")
    if args.trials < 1 or args.seeds < 1:
        parser.error("--trials and --seeds must be at least 1")

    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() and not args.no_write else {}
    for name in args.data or DATASETS:
        log(f"{name}: {args.trials} trials, {args.seeds} seeds, models {', '.join(models)}")
        results[name] = accuracy(name, models, args.trials, list(range(args.seeds)))
        if not args.no_write:
            tmp = RESULTS.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(results, indent=1, default=float) + "\n")
            tmp.replace(RESULTS)
    text = "## Top-N beside implicit 0.7.3, cornac and LensKit: iALS, EASE, BPR, item-kNN, RP3beta, hybrid\n\n"
    text += f"{versions()}\n\n"
    text += render_accuracy(results)
    if not args.no_speed:
        reused = None
        if args.reuse_speed:
            rows, reused = reused_speed(args.reuse_speed)
        else:
            rows = speed()
            if args.save_speed:
                Path(args.save_speed).write_text(json.dumps(rows))
        text += "\n" + render_speed(rows, reused)
    print(text, flush=True)
    if not args.no_write:
        ran_slim = "slim" in json.dumps([r["rows"] for r in results.values()])
        write_section("implicit", text, measures=[p for p in MEASURES if ran_slim or "slim" not in p])


if __name__ == "__main__":
    main()
