"""SASRec on the paper's leave-last-out protocol beside tuned baselines, under the one protocol (issue #18).

Protocol (Kang & McAuley 2018, section IV-A): each user's interactions are ordered by time (ties
by file order); the last one is the test item, the one before it the validation item, the rest is
training (``tastebud.data.splits.leave_last_out(data, validation=True)``). Every choice is made on
the validation item; the test item is read once per final fit.

* Baselines (``popular``, ``itemknn``, ``ials``, ``ease``): a "defaults" row (the model's own
  defaults) and a "tuned on validation (N trials)" row, each searched with the same tool and budget
  (``protocol.search``: Optuna TPE, seed 0, N trials over the model's own ``search_space``), every
  trial fitted on everything but the last two items and scored on the validation item, the same
  held-out items SASRec early-stops on (``tastebud.tune.validation_split`` would carve a random
  20% for a non-sequential model, so the carve is made explicitly here). Each row is refitted on
  everything but the test item.
* SASRec at its defaults (``loss="ce"``), fitted on everything but the test item: it holds the
  validation item out itself for early stopping (patience at its default), keeps the best epoch's
  weights and reads the validation item as input at test time. Several seeds, mean ± std; the
  paper's BCE and the sampled softmax as one-seed rows.
* Verdict: SASRec against the baseline row with the best *validation* NDCG@10, per seed
  (``protocol.paired``; the baselines are deterministic, so theirs is the same value each seed).

Metrics for the one test item per user, the user's other items excluded from the ranking: full
ranking over the whole catalogue (the headline), and the paper's sampled protocol (the test item
against 100 items drawn uniformly from those the user never interacted with, the same draws for
every model). Ties are counted against the test item.

Timings: SASRec's training epochs (from its history, validation pass excluded) and, interleaved
(``common.interleave``), one SASRec training epoch beside a fit of the chosen baseline on 2 and on 1
thread. The one-seed loss rows and the timing run last; ``--deadline`` skips them (and the section
says so) when they would not end in time.

Where the time goes on 2 busy cores: SASRec's three seeds on ml-latest-small (a full softmax over
9.7k items, 10-25 s an epoch, 20-30 epochs each) are about half the run; EASE on ml-latest-small
(a 9.7k x 9.7k inverse, about a minute a fit) is shown at its defaults only (``--untuned``).

    .venv/bin/python benchmarks/bench_sasrec.py                       # 30-45 min on 2 busy cores
    .venv/bin/python benchmarks/bench_sasrec.py --trials 2 --seeds 2 --epochs 2 --pairs 1 --no-write
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleave, machine, markdown_table, spread, thread_counts, timing_rows, write_section  # noqa: E402
from protocol import mean_std, paired, search  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import tastebud as tb  # noqa: E402
from tastebud.data.interactions import Interactions  # noqa: E402
from tastebud.data.movielens import load_ml100k, load_ml_latest_small  # noqa: E402
from tastebud.data.splits import Split, leave_last_out  # noqa: E402

# torch intra-op threads: on 2 cores shared with other jobs, 1 thread trained 2x faster than 2
# (OpenMP barriers stall when the other core is busy); set TASTEBUD_BENCH_THREADS=2 on a quiet box.
THREADS = int(os.environ.get("TASTEBUD_BENCH_THREADS", "1"))
BASELINES = ("popular", "itemknn", "ials", "ease")
LOSSES = ("bce", "sampled_softmax")  # beside the default "ce", one seed each
LOADERS = {"ml-100k": load_ml100k, "ml-latest-small": load_ml_latest_small}
METRIC = "NDCG@10"

# The code this benchmark's section measures (besides common.COMMON_PATHS); make bench-check reads it.
MEASURES = [
    "src/tastebud/models/sasrec.py",
    "src/tastebud/models/_torch.py",
    "src/tastebud/models/baseline.py",
    "src/tastebud/models/knn.py",
    "src/tastebud/models/ials.py",
    "src/tastebud/models/ease.py",
    "src/tastebud/models/_common.py",
    "src/tastebud/kernels/knn.py",
    "src/tastebud/kernels/ials.py",
    "benchmarks/protocol.py",
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class PeakRSS:
    """Peak resident memory (MB) above the level at entry, sampled every 20 ms."""

    def __enter__(self) -> PeakRSS:
        self.base = self._rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.delta = self.peak - self.base


class LoadLog:
    """The 1-minute load average at each stage of the run: how busy the shared cores were."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.mark()

    def mark(self) -> None:
        self.values.append(os.getloadavg()[0])

    def text(self) -> str:
        v = self.values
        return (
            f"1-minute load average {v[0]:.1f} when the run started, {v[-1]:.1f} when it ended, "
            f"{min(v):.1f}-{max(v):.1f} over its {len(v)} stages"
        )


# ---------------------------------------------------------------------------- metrics
def metrics(
    model: tb.Recommender, train: Interactions, target: Interactions, negatives: np.ndarray | None
) -> dict[str, float]:
    """NDCG@10 / HR@10 for one target item per user: full ranking, and against ``negatives``.

    The rank of the target is the number of other candidates scoring at least as high (ties count
    against it); the user's ``train`` items are no candidates. NDCG with one relevant item is
    ``1 / log2(rank + 2)`` when ``rank < 10``.
    """
    users = target.user_idx.astype(np.int64)
    items = target.item_idx.astype(np.int64)
    scores = model.score_rows(users).astype(np.float64)
    t = scores[np.arange(len(users)), items]
    seen = train.matrix[users].tocsr()
    rows = np.repeat(np.arange(len(users)), np.diff(seen.indptr))
    scores[rows, seen.indices] = -np.inf
    scores[np.arange(len(users)), items] = -np.inf  # the target itself does not count against itself
    rank = (scores >= t[:, None]).sum(axis=1)
    out = {"NDCG@10": _ndcg(rank), "HR@10": float(np.mean(rank < 10))}
    if negatives is not None:
        neg = scores[np.arange(len(users))[:, None], negatives]
        srank = (neg >= t[:, None]).sum(axis=1)
        out["NDCG@10 (100 neg)"] = _ndcg(srank)
        out["HR@10 (100 neg)"] = float(np.mean(srank < 10))
    return out


def _ndcg(rank: np.ndarray) -> float:
    return float(np.mean(np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0)))


def sample_negatives(data: Interactions, users: np.ndarray, n: int = 100, seed: int = 0) -> np.ndarray:
    """``n`` distinct items per user, uniform over the items the user never interacted with."""
    rng = np.random.default_rng(seed)
    m = data.matrix
    out = np.empty((len(users), n), np.int64)
    for row, u in enumerate(users):
        seen = m.indices[m.indptr[u] : m.indptr[u + 1]]
        pool = np.setdiff1d(np.arange(data.n_items), seen)
        out[row] = rng.choice(pool, size=n, replace=False)
    return out


def best_by_validation(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row with the highest validation NDCG@10 (the first on a tie); the test columns are not read."""
    return max(rows, key=lambda r: r["validation"])


# ---------------------------------------------------------------------------- fits
def final_fit(build: Callable[[], tb.Recommender], test: Split, negatives: np.ndarray) -> tuple[tb.Recommender, dict]:
    """Fit on everything but the test item (timed, peak memory) and read the test item once."""
    started = time.perf_counter()
    with PeakRSS() as mem:
        model = build().fit(test.train)
    fit_s = time.perf_counter() - started
    return model, {**metrics(model, test.train, test.test, negatives), "fit s": fit_s, "peak MB": mem.delta}


def baseline_rows(model_name: str, val: Split, test: Split, negatives: np.ndarray, trials: int) -> list[dict]:
    """The defaults row and the tuned row (the best of ``trials``) of one baseline, each with its
    NDCG@10 on the validation item (fitted on everything but the last two items) and on the test item."""
    cls = tb.get_model(model_name)

    def validation(params: dict[str, Any]) -> float:
        model = cls(**params).fit(val.train)
        return metrics(model, val.train, val.test, None)[METRIC]

    space = dict(cls.search_space)
    defaults = {k: v for k, v in cls().get_params().items() if k in space}
    settings = [("defaults", {}, validation({}), 0.0, defaults)]
    if trials and space:
        started = time.perf_counter()
        best, value = search(space, validation, trials, seed=0, maximize=True)
        settings.append((f"tuned on validation ({trials} trials)", best, value, time.perf_counter() - started, best))
    rows = []
    for setting, params, value, search_s, shown in settings:
        _, row = final_fit(lambda params=params: cls(**params), test, negatives)
        rows.append(
            {
                "model": model_name,
                "setting": setting,
                "params": params,
                "shown": shown,
                "validation": value,
                "search s": search_s,
                **row,
            }
        )
        log(f"  {model_name} ({setting}): validation {value:.4f}, test {row[METRIC]:.4f}")
    return rows


def sasrec_row(test: Split, negatives: np.ndarray, loss: str | None, seed: int, epochs: int | None) -> dict:
    """SASRec at its defaults (``loss`` None) or with another loss; early-stopped on the validation item."""
    params: dict[str, Any] = {"random_state": seed}
    if loss is not None:
        params["loss"] = loss
    if epochs is not None:
        params["epochs"] = epochs
    model, row = final_fit(lambda: tb.get_model("sasrec")(**params), test, negatives)
    hist = model.history_
    best = max((h["metric"] for h in hist if h["metric"] is not None), default=float("nan"))
    out = {
        "loss": model.loss,
        "seed": seed,
        "validation": best,
        "best epoch": model.best_epoch_,
        "epochs run": len(hist),
        "epoch s": [h["seconds"] for h in hist],
        **row,
    }
    log(
        f"  sasrec {model.loss} seed {seed}: validation {best:.4f}, test {row[METRIC]:.4f}, "
        f"{len(hist)} epochs, {row['fit s']:.0f} s"
    )
    return out


def timing(test: Split, base: dict[str, Any], pairs: int) -> tuple[list[dict], str]:
    """One SASRec training epoch beside a fit of the chosen baseline on 2 threads and on 1, interleaved."""
    from threadpoolctl import threadpool_limits

    from tastebud.models._common import numba_threads

    log(f"  timing one SASRec epoch beside {base['model']} ({base['setting']}) ...")

    cls = tb.get_model(base["model"])
    sasrec = tb.get_model("sasrec")

    def one_thread() -> Any:
        with ExitStack() as stack:
            stack.enter_context(numba_threads(1))
            stack.enter_context(threadpool_limits(1))
            return cls(**base["params"]).fit(test.train)

    label = f"{base['model']} {base['setting'].split(' (')[0]}"
    sides = {
        "SASRec epoch": (lambda: sasrec(epochs=1, patience=None).fit(test.train), f"torch {THREADS}"),
        f"{label} fit": (lambda: cls(**base["params"]).fit(test.train), f"numba/BLAS {os.cpu_count()}"),
        f"{label} fit, 1 thread": (one_thread, "numba/BLAS 1"),
    }
    timings = interleave(sides, pairs=pairs)
    return timing_rows(timings, baseline=next(iter(sides))), thread_counts()


# ---------------------------------------------------------------------------- one data set
def run(name: str, args: argparse.Namespace, load: LoadLog) -> dict[str, Any]:
    """The rows every section holds: the baselines and SASRec's seeds (the extras come later)."""
    import torch

    torch.set_num_threads(THREADS)
    data = LOADERS[name](features=False)
    val, test = leave_last_out(data, validation=True)
    assert len(np.unique(test.test.user_idx)) == len(test.test)  # one test item per user
    negatives = sample_negatives(data, test.test.user_idx.astype(np.int64))
    log(f"{name}: {data.n_users} users, {data.n_items} items, {len(test.test)} test items")
    baselines = []
    for model_name in args.baselines:
        trials = 0 if f"{name}:{model_name}" in args.untuned else args.trials
        baselines += baseline_rows(model_name, val, test, negatives, trials)
        load.mark()
    sasrec = [sasrec_row(test, negatives, None, seed, args.epochs) for seed in range(args.seeds)]
    load.mark()
    return {
        "name": name,
        "shape": (data.n_users, data.n_items, len(data)),
        "baselines": baselines,
        "sasrec": sasrec,
        "others": [],
        "best": best_by_validation(baselines),
        "speed": [],
        "threads": "",
        "split": (test, negatives),
    }


def extras(results: list[dict[str, Any]], args: argparse.Namespace, load: LoadLog, deadline: float | None) -> list[str]:
    """The one-seed loss rows and the interleaved timing, each only if its estimate ends before
    ``deadline`` (a ``time.time()``); returns what was skipped, for the section."""
    skipped = []

    def fits(what: str, seconds: float) -> bool:
        if deadline is None or time.time() + seconds <= deadline:
            return True
        skipped.append(f"{what} (its estimated {seconds:.0f} s would have passed the run's deadline)")
        log(f"skipped: {skipped[-1]}")
        return False

    for res in results:
        test, negatives = res["split"]
        per_fit = statistics.fmean(r["fit s"] for r in res["sasrec"])
        if res["name"] in args.losses_data:
            for loss in args.losses:
                if fits(f"SASRec loss={loss} on {res['name']}", per_fit):
                    res["others"].append(sasrec_row(test, negatives, loss, 0, args.epochs))
                    load.mark()
    for res in results:
        if args.pairs and res["name"] in args.timing_data:
            epoch = statistics.median(s for r in res["sasrec"] for s in r["epoch s"])
            cost = (args.pairs + 1) * (epoch + 2 * res["best"]["fit s"])
            if fits(f"the interleaved timing on {res['name']}", cost):
                res["speed"], res["threads"] = timing(res["split"][0], res["best"], args.pairs)
                load.mark()
    return skipped


# ---------------------------------------------------------------------------- rendering
def _params(params: dict[str, Any]) -> str:
    shown = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in params.items()}
    return ", ".join(f"{k} {v}" for k, v in shown.items()) or "-"


def _sasrec_label(loss: str) -> str:
    return "sasrec" if loss == "ce" else f"sasrec loss={loss}"


def render_data(res: dict[str, Any], shortfalls: list[str]) -> str:
    """One data set's table, verdict, per-seed table and timings."""
    cols = ("NDCG@10", "HR@10", "NDCG@10 (100 neg)", "HR@10 (100 neg)")
    rows = []
    for r in res["baselines"]:
        rows.append(
            {
                "model": r["model"],
                "setting": r["setting"],
                "validation NDCG@10": f"{r['validation']:.4f}",
                **{c: f"{r[c]:.4f}" for c in cols},
                "fit s": f"{r['fit s']:.1f}",
                "search s": f"{r['search s']:.0f}" if r["search s"] else "",
                "epochs": "",
                "peak MB": f"{r['peak MB']:.0f}",
                "parameters": _params(r["shown"]),
            }
        )
    sas = res["sasrec"]
    if sas:
        rows.append(
            {
                "model": "sasrec",
                "setting": f"defaults, {len(sas)} seed{'s' * (len(sas) > 1)}",
                "validation NDCG@10": mean_std([r["validation"] for r in sas]),
                **{c: mean_std([r[c] for r in sas]) for c in cols},
                "fit s": mean_std([r["fit s"] for r in sas], 0),
                "search s": "",
                "epochs": mean_std([float(r["epochs run"]) for r in sas], 1),
                "peak MB": f"{max(r['peak MB'] for r in sas):.0f}",
                "parameters": "defaults",
            }
        )
    for r in res["others"]:
        rows.append(
            {
                "model": _sasrec_label(r["loss"]),
                "setting": "defaults otherwise, 1 seed (seed 0)",
                "validation NDCG@10": f"{r['validation']:.4f}",
                **{c: f"{r[c]:.4f}" for c in cols},
                "fit s": f"{r['fit s']:.1f}",
                "search s": "",
                "epochs": str(r["epochs run"]),
                "peak MB": f"{r['peak MB']:.0f}",
                "parameters": f"loss {r['loss']}",
            }
        )
    n_users, n_items, n_events = res["shape"]
    out = f"#### {res['name']} ({n_users:,} users, {n_items:,} items, {n_events:,} interactions)\n\n"
    out += markdown_table(pd.DataFrame(rows)) + "\n\n"
    base = res["best"]
    if sas:
        base_name = f"`{base['model']}` ({base['setting']}, validation NDCG@10 {base['validation']:.4f})"
        lines = []
        for metric in ("NDCG@10", "HR@10"):
            ours = [r[metric] for r in sas]
            ratio = statistics.fmean(ours) / base[metric] if base[metric] > 0 else float("nan")
            lines.append(
                f"- {metric}: SASRec - {base['model']} per seed = {paired(ours, [base[metric]] * len(ours), False)}; "
                f"mean ratio {ratio:.2f}x"
            )
            if statistics.fmean(ours) <= base[metric]:
                shortfalls.append(
                    f"{res['name']}: SASRec's mean test {metric} {statistics.fmean(ours):.4f} is not above "
                    f"{base['model']}'s {base[metric]:.4f}."
                )
        out += (
            f"Verdict: the baseline with the best validation NDCG@10 is {base_name}; SASRec (defaults, "
            f"{len(sas)} seed{'s' * (len(sas) > 1)}, validation NDCG@10 {mean_std([r['validation'] for r in sas])}) against it on "
            "the test item, paired by seed (the baseline is deterministic, so its value repeats):\n\n"
            + "\n".join(lines)
            + "\n\n"
        )
        out += _order_note(res, cols) + "\n\n"
    every = [*sas, *res["others"]]
    if every:
        per_seed = [
            {
                "loss": r["loss"],
                "seed": r["seed"],
                "best epoch": r["best epoch"],
                "epochs run": r["epochs run"],
                "training s/epoch, median (min-max)": spread(r["epoch s"], 1),
                "validation NDCG@10 (best epoch)": f"{r['validation']:.4f}",
                "test NDCG@10": f"{r['NDCG@10']:.4f}",
                "test HR@10": f"{r['HR@10']:.4f}",
                "fit s": f"{r['fit s']:.0f}",
            }
            for r in every
        ]
        out += "SASRec per run (seconds per epoch: training only, the validation pass excluded):\n\n"
        out += markdown_table(pd.DataFrame(per_seed)) + "\n\n"
    if res["speed"]:
        out += (
            f"Time of one SASRec training epoch (defaults, `patience=None`, so no validation pass) beside a fit of "
            f"the chosen baseline on everything but the test item, interleaved after a warm-up round (thread pools "
            f"while timed: {res['threads']}):\n\n" + markdown_table(pd.DataFrame(res["speed"])) + "\n\n"
        )
    return out


def _order_note(res: dict[str, Any], cols: tuple[str, ...]) -> str:
    """How often the 100-negatives numbers order two rows differently from full ranking."""
    rows = [(f"{r['model']} {r['setting']}", r) for r in res["baselines"]]
    if res["sasrec"]:
        rows.append(("sasrec", {c: statistics.fmean(r[c] for r in res["sasrec"]) for c in cols}))
    rows += [(_sasrec_label(r["loss"]), r) for r in res["others"]]
    pairs = flips = 0
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            a, b = rows[i][1], rows[j][1]
            full = a["NDCG@10"] - b["NDCG@10"]
            sampled = a["NDCG@10 (100 neg)"] - b["NDCG@10 (100 neg)"]
            pairs += 1
            flips += full * sampled < 0
    return (
        f"The 100-negatives NDCG@10 orders {flips} of the {pairs} pairs of rows above the other way round from "
        "full ranking (Krichene & Rendle 2020): quote full ranking."
    )


def render(
    results: list[dict[str, Any]], args: argparse.Namespace, load: LoadLog, minutes: float, skipped: list[str]
) -> str:
    from tastebud.models._torch import pick_device

    sasrec = tb.get_model("sasrec")()
    d = sasrec.get_params()
    desc = (
        f"factors {d['factors']}, {d['transformer_blocks']} blocks, {d['heads']} head(s), maxlen {d['maxlen']}, "
        f"dropout {d['dropout']}, loss {d['loss']}, Adam {d['learning_rate']}, batch {d['batch_size']}, "
        f"at most {d['epochs']} epochs, patience {d['patience']}"
    )
    scaled = []
    if args.epochs is not None:
        scaled.append(f"SASRec's epoch ceiling lowered to {args.epochs} (the model's default is {d['epochs']})")
    if args.seeds < 3:
        scaled.append(f"{args.seeds} SASRec seed(s)")
    if args.losses and set(args.losses_data) != set(args.data):
        scaled.append(f"the other losses on {', '.join(args.losses_data) or 'no data set'} only")
    if args.pairs and set(args.timing_data) != set(args.data):
        scaled.append(f"the interleaved timing on {', '.join(args.timing_data) or 'no data set'} only")
    if set(args.baselines) != set(BASELINES):
        scaled.append(f"baselines {', '.join(args.baselines)} only")
    for res in results:
        for r in res["baselines"]:
            if f"{res['name']}:{r['model']}" in args.untuned:
                scaled.append(
                    f"`{r['model']}` on {res['name']} at its defaults only (one fit took {r['fit s']:.0f} s here, so "
                    f"{args.trials} trials would take about {args.trials * r['fit s'] / 60:.0f} minutes)"
                )
    shortfalls: list[str] = []  # filled by render_data: every place SASRec is not ahead
    parts = [render_data(res, shortfalls) for res in results]
    scaled += [f"skipped {what}" for what in skipped]
    kept = "SASRec runs at its defaults, with no cap on maxlen or epochs. " if args.epochs is None else ""
    scaled_text = kept + (("Scaled down to fit the budget: " + "; ".join(scaled) + ".") if scaled else "")
    body = f"""## SASRec (sequential), leave-last-out (`benchmarks/bench_sasrec.py`)

Kang & McAuley's protocol (`leave_last_out(data, validation=True)`): per user, the last interaction by
time is the test item and the one before it the validation item. Every choice is made on the validation
item; the test item is read once per final fit.

- Baselines (`popular`, `itemknn`, `ials`, `ease`): a *defaults* row and a *tuned on validation
  ({args.trials} trials)* row, both sides of the search the same tool and budget: Optuna TPE (seed 0,
  `benchmarks/protocol.search`) over each model's own `search_space`, every trial fitted on everything
  but each user's last two items and scored on the validation item (full-ranking NDCG@10). Both rows are
  refitted on everything but the test item. The tuned row is the best of its trials on validation, which
  need not include the defaults (the verdict below picks from both rows). The *parameters* column shows
  the searched parameters (the model's defaults on the defaults row).
- SASRec at its defaults ({desc}; device {pick_device(d["device"])}; torch threads {THREADS}),
  fitted on everything but the test item: it holds the validation item out itself, early-stops on its
  full-ranking NDCG@10, keeps the best epoch's weights and reads the validation item as input at test
  time; {args.seeds} seeds (0-{args.seeds - 1}), mean ± std. The other losses, where shown, are one seed each
  (seed 0), everything else at the defaults. SASRec's *validation NDCG@10* is its own reading at the best
  epoch, on the same items after the same training items as the baselines' (there a tie counts for the
  item; with float scores ties are rare). SASRec is not tuned here: one fit costs minutes on these
  cores, so a search with the baselines' budget of {args.trials} trials would not fit in the run.

*Full ranking* ranks the test item against every item the user has not interacted with (the headline);
*100 neg* against 100 uniformly drawn non-interacted items (the paper's protocol; the same draws for
every model). Ties count against the test item. *fit s* and *peak MB* are the final `fit`'s wall time
and rise of resident memory; *search s* is the whole search's wall time. {scaled_text}

{"".join(parts)}### Where SASRec falls short

{chr(10).join(f"- {line}" for line in shortfalls) if shortfalls else "Nowhere in this run: SASRec's mean test NDCG@10 and HR@10 are above the baseline chosen on validation on both sets."}

Whole run: {minutes:.0f} minutes on 2 cores shared with other benchmark runs ({load.text()}), so
times are upper bounds; read the per-pair ratios.

Reproduce: `.venv/bin/python benchmarks/bench_sasrec.py {_cli(args)}`"""
    return body


def _cli(args: argparse.Namespace) -> str:
    parts = [f"--trials {args.trials}", f"--seeds {args.seeds}", f"--pairs {args.pairs}"]
    if args.epochs is not None:
        parts.append(f"--epochs {args.epochs}")
    parts.append("--losses " + " ".join(args.losses) if args.losses else "--losses")
    parts.append("--baselines " + " ".join(args.baselines))
    parts.append("--data " + " ".join(args.data))
    parts.append("--untuned " + " ".join(args.untuned) if args.untuned else "--untuned")
    parts.append("--timing-data " + " ".join(args.timing_data) if args.timing_data else "--timing-data")
    parts.append("--losses-data " + " ".join(args.losses_data) if args.losses_data else "--losses-data")
    return " ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", default=list(LOADERS), choices=list(LOADERS))
    ap.add_argument("--baselines", nargs="+", default=list(BASELINES), choices=list(BASELINES))
    ap.add_argument("--trials", type=int, default=20, help="search budget of every baseline (0: defaults only)")
    ap.add_argument("--seeds", type=int, default=3, help="SASRec seeds at its defaults")
    ap.add_argument("--losses", nargs="*", default=list(LOSSES), choices=list(LOSSES), help="one-seed loss rows")
    ap.add_argument(
        "--losses-data",
        nargs="*",
        default=["ml-100k"],
        choices=list(LOADERS),
        help="data sets of the one-seed loss rows",
    )
    ap.add_argument("--epochs", type=int, default=None, help="SASRec epoch ceiling (default: the model's)")
    ap.add_argument(
        "--untuned",
        nargs="*",
        default=["ml-latest-small:ease"],
        metavar="DATA:MODEL",
        help="baselines shown at their defaults only (too slow to search on these cores)",
    )
    ap.add_argument("--pairs", type=int, default=5, help="interleaved timing pairs after the warm-up (0: none)")
    ap.add_argument(
        "--timing-data",
        nargs="*",
        default=["ml-100k"],
        choices=list(LOADERS),
        help="data sets of the interleaved epoch-vs-fit timing",
    )
    ap.add_argument(
        "--deadline",
        metavar="HH:MM",
        help="UTC time by which the run must end: the one-seed loss rows "
        "and the timing are skipped (and the section says so) when their estimate would pass it",
    )
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    if args.trials < 0 or args.seeds < 1 or args.pairs < 0 or (args.epochs is not None and args.epochs < 1):
        ap.error("--trials and --pairs must be >= 0, --seeds and --epochs >= 1")
    if args.deadline and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", args.deadline):
        ap.error(f"--deadline must be HH:MM (UTC), got {args.deadline!r}")
    started = time.perf_counter()
    load = LoadLog()
    log(f"{machine()}; torch threads {THREADS}")
    deadline = None
    if args.deadline:
        hour, minute = (int(x) for x in args.deadline.split(":"))
        now = time.gmtime()
        deadline = time.time() + ((hour * 60 + minute) - (now.tm_hour * 60 + now.tm_min)) * 60 - now.tm_sec
    results = [run(name, args, load) for name in args.data]
    skipped = extras(results, args, load, deadline)
    body = render(results, args, load, (time.perf_counter() - started) / 60, skipped)
    print(body, flush=True)
    if not args.no_write:
        write_section("sasrec", body, measures=MEASURES)
        log("written section 'sasrec' of BENCHMARKS.md")


if __name__ == "__main__":
    main()
