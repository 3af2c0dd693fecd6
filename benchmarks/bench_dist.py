"""Distributed training and batch scoring on Ray vs one process (section "dist" of BENCHMARKS.md).

iALS on a synthetic implicit set (default 200,000 x 50,000 with 10 million interactions): the local
fit (numba threads on every core), the Ray fit (W local workers, one core each, the same kernels)
and the same fit from Parquet files with each Ray actor reading and holding only its share of the
events, with the same seed and epochs; then top-10 batch scoring of every user, the model's own
batch path in one process vs Ray Data with W actors writing Parquet; two-tower training throughput,
1 local process vs W Ray Train workers; the quality parity of the neural models on Ray Train
(two-tower, SASRec, NeuMF on ML-100K, 1 process vs W workers, several seeds); and the two-tower and
SASRec from Parquet files. Per-worker figures go to ``benchmarks/dist_measured.json`` for
``scripts/scaling_arithmetic.py``.

Timings follow ``common.interleave``: the sides of each comparison run in turn (A B A B ...) after a
warm-up round timed apart and excluded; median with min-max of wall and CPU seconds. CPU is counted
twice: this process alone (``common.cpu_seconds``), and this process plus every live descendant
(Ray's raylet, workers and actors: :class:`TreeCPU`), since a Ray side does its work in other
processes. Ray's start-up (``ray.init``) is timed once, apart from every fit.

    .venv/bin/python benchmarks/bench_dist.py                  # the 10M set; about an hour on 2 loaded cores
    .venv/bin/python benchmarks/bench_dist.py --users 50000 --items 20000 --interactions 2000000 --note "..."
    .venv/bin/python benchmarks/bench_dist.py --parts parity --seeds 1 --no-write   # a quick look

Each part's text is kept in ``dist_measured.json`` with the commit it ran at; a run of some parts
rewrites the section with the stored text of the others only when none of the section's measured
paths changed since their commit (the rule ``benchmarks/check.py`` applies to a whole section).

On 2 cores the Ray runs cannot be faster: both sides use the same 2 cores, and Ray adds task
scheduling, object-store copies of the factors each half-sweep and its own processes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    git,
    interleave,
    measured_commit,
    section_paths,
    spread,
    thread_counts,
    timer,
    timing_rows,
    write_section,
)
from tastebud.data.interactions import Interactions  # noqa: E402
from tastebud.data.splits import Split, holdout  # noqa: E402
from tastebud.data.synthetic import generate  # noqa: E402
from tastebud.eval.evaluate import evaluate_fitted  # noqa: E402
from tastebud.models.ials import ImplicitALS  # noqa: E402
from tastebud.scale.engine import RayEngine  # noqa: E402

OUT_JSON = Path(__file__).resolve().parent / "dist_measured.json"
DEFAULT_SCALE = {"users": 200_000, "items": 50_000, "interactions": 10_000_000}


# The code this benchmark's section measures (besides common.COMMON_PATHS); make bench-check reads it.
MEASURES = [
    "src/tastebud/scale",
    "src/tastebud/models/two_tower",
    "src/tastebud/models/sasrec.py",
    "src/tastebud/models/ncf.py",
    "src/tastebud/models/_torch.py",
    "src/tastebud/models/ials.py",
    "src/tastebud/kernels/ials.py",
]


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


PARTS = ("ials", "parquet", "batch", "throughput", "parity", "parquet_neural")

#: Ray Train parity on ML-100K: 1 process vs W workers, same hyper-parameters. Split per model:
#: "fixed" = the fixed 80/20 top-N split; "last" = leave-last-out by timestamp (SASRec is a
#: sequence model: the fixed split's files carry no timestamps, so its order would be arbitrary).
#: SASRec uses bench_sasrec.py's paper settings with a fixed number of epochs.
PARITY = {
    "two-tower": (
        "two_tower",
        "fixed",
        {"factors": 32, "batch_size": 512, "epochs": 3, "temperature": 0.05, "learning_rate": 0.002, "validation": 0.0},
    ),
    "SASRec": (
        "sasrec",
        "last",
        {
            "factors": 50,
            "maxlen": 50,
            "dropout": 0.2,
            "batch_size": 32,
            "learning_rate": 0.002,
            "epochs": 20,
            "patience": None,
        },
    ),
    "NeuMF": (
        "neumf",
        "fixed",
        {
            "factors": 32,
            "layers": 3,
            "negatives": 4,
            "batch_size": 1024,
            "epochs": 4,
            "learning_rate": 0.002,
            "validation": 0.0,
        },
    ),
}
SPLIT_NAMES = {
    "fixed": 'the fixed 80/20 top-N split `fixed_split("ml-100k")`, all test users',
    "last": "leave-last-out by timestamp on `load_ml100k()`, each user's last item",
}


class TreeCPU:
    """CPU seconds spent by this process's live descendants (Ray's raylet, workers and actors).

    ``common.cpu_seconds`` sees this process and its reaped children only; a Ray side computes in
    other processes, still alive when its run ends. A thread reads every descendant's user + system
    time from ``/proc`` each ``interval`` seconds while a run is measured, so a process that ends
    during the run (a Ray Train worker, a Ray Data actor) counts up to its last sample: at most
    ``interval`` seconds of each such process's CPU are missed. A child this process reaps during a
    run would be counted here and in ``common.cpu_seconds``; Ray's workers are reaped by the raylet,
    which lives until ``ray.shutdown``. Linux only.
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._tick = float(os.sysconf("SC_CLK_TCK"))
        self._lock = threading.Lock()
        self._base: dict[int, float] = {}
        self._seen: dict[int, float] = {}
        self._active = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _snapshot(self) -> dict[int, float]:
        parent: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    raw = fh.read()
            except OSError:  # ended meanwhile
                continue
            fields = raw[raw.rfind(b")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
            parent[int(entry.name)] = int(fields[1])
            cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / self._tick  # utime + stime
        children: dict[int, list[int]] = {}
        for pid, ppid in parent.items():
            children.setdefault(ppid, []).append(pid)
        out: dict[int, float] = {}
        stack = list(children.get(os.getpid(), []))
        while stack:
            pid = stack.pop()
            out[pid] = cpu[pid]
            stack.extend(children.get(pid, []))
        return out

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if self._active:
                    self._seen.update(self._snapshot())

    def begin(self) -> None:
        with self._lock:
            self._base = self._snapshot()
            self._seen = dict(self._base)
            self._active = True

    def end(self) -> float:
        """Descendants' CPU seconds since :meth:`begin`."""
        with self._lock:
            self._seen.update(self._snapshot())
            self._active = False
            return float(sum(v - self._base.get(pid, 0.0) for pid, v in self._seen.items()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def measured_sides(
    tree: TreeCPU, sides: dict[str, tuple[Callable[[], Any], str]], keep: dict[str, Any]
) -> dict[str, tuple[Callable[[], Any], str]]:
    """``sides`` for ``common.interleave`` whose runs also measure the descendants' CPU: each run's
    result becomes ``(result, descendants' CPU s)``, and the first result of each side is kept in
    ``keep`` (later ones are dropped, so fitted models do not pile up)."""

    def wrap(label: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> tuple[Any, float]:
            tree.begin()
            try:
                out = fn()
            finally:
                extra = tree.end()
            keep.setdefault(label, out)
            return summary(out), extra

        return run

    return {label: (wrap(label, fn), threads) for label, (fn, threads) in sides.items()}


def summary(out: Any) -> Any:
    """What a run keeps of its result: a digest of a model's factors (are the runs identical?)."""
    if hasattr(out, "user_factors_") and isinstance(getattr(out, "user_factors_", None), np.ndarray):
        import hashlib

        h = hashlib.sha1(np.ascontiguousarray(out.user_factors_).tobytes())
        h.update(np.ascontiguousarray(out.item_factors_).tobytes())
        return h.hexdigest()[:16]
    return out


def timing_table(timings: dict[str, Any], baseline: str) -> str:
    """``common.timing_rows`` plus the CPU of this process and its descendants (Ray's processes)."""
    rows = timing_rows(timings, baseline=baseline)
    for row, t in zip(rows, timings.values(), strict=True):
        tree = [c + extra for c, (_, extra) in zip(t.cpu, t.results, strict=True)]
        row["CPU s incl. descendants, median (min-max)"] = spread(tree)
    cols = list(rows[0])
    cols.insert(cols.index("CPU s, median (min-max)") + 1, cols.pop())
    return markdown_table(cols, [[str(r[c]) for c in cols] for r in rows])


def ials_part(args: argparse.Namespace, parts: list[str], measured: dict, tree: TreeCPU) -> str:
    """iALS: 1 process, Ray in memory, Ray from Parquet, interleaved; quality; then batch scoring."""
    from tastebud.data.parquet import read_interactions, write_interactions
    from tastebud.scale.sharded import fit_parquet

    with timer() as t_gen:
        data = generate(
            n_users=args.users, n_items=args.items, n_interactions=args.interactions, explicit=False, features=False
        )
    split = holdout(data, fraction=0.2, random_state=0)
    # NDCG@10 on a fixed sample of test users (scoring every user twice would dominate the run and
    # measure nothing distributed)
    rng = np.random.default_rng(0)
    test_users = np.unique(split.test.user_idx)
    keep_users = rng.choice(test_users, min(args.eval_users, len(test_users)), replace=False)
    esplit = Split(split.train, split.test.subset(np.isin(split.test.user_idx, keep_users)), name="synthetic")
    print(f"data {data} in {t_gen['s']:.0f}s; train {len(split.train):,} events", flush=True)

    params = {"epochs": args.epochs, "random_state": 0, **({"factors": args.factors} if args.factors else {})}
    settings = ImplicitALS(**params).get_params()
    cores = os.cpu_count() or 1
    local_threads = f"{settings['threads'] or cores} (numba; `threads={settings['threads']}`)"
    w = args.workers
    sides: dict[str, tuple[Callable[[], Any], str]] = {
        "1 process": (lambda: ImplicitALS(**params).fit(split.train), local_threads),
        f"Ray, {w} workers, in memory": (
            lambda: ImplicitALS(**params).fit(split.train, engine=RayEngine(workers=w)),
            f"{w} tasks x 1 numba thread, + driver",
        ),
    }
    keep: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "parquet" in parts:
            with timer() as t_write:
                write_interactions(split.train, f"{tmp}/train", partitions=16)
                # test events of the sampled users whose user and item occur in training (the
                # files' vocabularies are those of the training files)
                test = split.test.subset(
                    np.isin(split.test.user_idx, keep_users)
                    & np.isin(split.test.item_idx, np.unique(split.train.item_idx))
                    & np.isin(split.test.user_idx, np.unique(split.train.user_idx))
                )
                write_interactions(test, f"{tmp}/test", partitions=1)
            print(f"parquet written in {t_write['s']:.0f}s", flush=True)
            sides[f"Ray, {w} actors, from Parquet (16 files)"] = (
                lambda: fit_parquet(ImplicitALS(**params), f"{tmp}/train", workers=w),
                f"{w} actors x 1 numba thread, + driver",
            )
        print(f"iALS: {len(sides)} sides, {args.pairs} pairs", flush=True)
        timings = interleave(measured_sides(tree, sides, keep), pairs=args.pairs)
        labels = list(sides)
        local, ray_mem = keep[labels[0]], keep[labels[1]]
        n_local = evaluate_fitted(local, esplit, 10)["ndcg@10"]
        n_ray = evaluate_fitted(ray_mem, esplit, 10)["ndcg@10"]
        diff = _max_diff(ray_mem, local)
        same = {label: len({r for r, _ in t.results}) == 1 for label, t in timings.items()}
        quality = [
            ["1 process", f"{n_local:.4f}", "-", _yes(same[labels[0]]), "all"],
            [labels[1], f"{n_ray:.4f}", f"{diff:.1e}", _yes(same[labels[1]]), "all (the driver puts them in the object store)"],
        ]  # fmt: skip
        if "parquet" in parts:
            pq = keep[labels[2]]
            test_pq = read_interactions(f"{tmp}/test", users=pq.users_, items=pq.items_)
            # the reference: the same files read into one process (their vocabulary is sorted, so
            # the random start differs from the in-memory rows) and fitted locally, once
            reference = ImplicitALS(**params).fit(read_interactions(f"{tmp}/train"))
            fsplit = Split(_as_train(pq), test_pq, name="synthetic-parquet")
            info = pq._dist_info
            biggest = max(info["held_events"], key=lambda h: h["user_events"] + h["item_events"])
            quality.append(
                [
                    labels[2],
                    f"{evaluate_fitted(pq, fsplit, 10)['ndcg@10']:.4f} "
                    f"(1 process, same files: {evaluate_fitted(reference, fsplit, 10)['ndcg@10']:.4f})",
                    f"{_max_diff(pq, reference):.1e} (vs 1 process, same files)",
                    _yes(same[labels[2]]),
                    f"actor: {biggest['user_events']:,} + {biggest['item_events']:,} of {info['events']:,} "
                    f"(user block + item block); driver: 0",
                ]
            )
            measured.update(
                ials_parquet_fit_seconds=float(np.median(timings[labels[2]].wall)),
                ials_parquet_held_events=info["held_events"],
                ials_parquet_factor_diff=_max_diff(pq, reference),
            )
    med = {label: float(np.median(t.wall)) for label, t in timings.items()}
    measured.update(
        interactions=len(split.train),
        users=int(split.train.n_users),
        items=int(split.train.n_items),
        factors=int(settings["factors"]),
        epochs=args.epochs,
        workers=w,
        ials_local_seconds_per_epoch=med[labels[0]] / args.epochs,
        ials_ray_fit_seconds=med[labels[1]],
    )
    shown = ", ".join(f"{k}={v!r}" for k, v in settings.items())
    scale = {"users": args.users, "items": args.items, "interactions": args.interactions}
    scaled = (
        f"**Scaled down:** {args.users:,} x {args.items:,} with {args.interactions:,} interactions instead of the "
        f"script's default {DEFAULT_SCALE['users']:,} x {DEFAULT_SCALE['items']:,} with "
        f"{DEFAULT_SCALE['interactions']:,}. {args.note}\n\n"
        if scale != DEFAULT_SCALE
        else ""
    )
    text = f"""### iALS: one process, Ray in memory, Ray from Parquet

{scaled}Synthetic implicit set: {split.train.n_users:,} users x {split.train.n_items:,} items, {len(split.train):,} training
interactions (80/20 holdout of `generate(n_users={args.users}, n_items={args.items}, n_interactions={args.interactions}, explicit=False)`,
generated in {t_gen["s"]:.0f}s); iALS `ImplicitALS({shown})` ({", ".join(params)} set here, every other setting
the model's default),
the same seed on every side. The sides run in turn after a warm-up round timed apart ({args.pairs} rounds); a fit is
`fit` from its input to fitted factors (the Parquet side reads its files inside the fit; the files are written once,
before, in {t_write["s"] if "parquet" in parts else 0:.0f}s). "Events held" is what one process holds of the training events:
the in-memory runs hold all of them; the Parquet run's actors each read the files themselves and keep only their user
block and item block (counted by the actors), and its driver holds none while training.

{timing_table(timings, labels[0])}

Quality (NDCG@10 on {len(keep_users):,} sampled test users; the first counted run of each side; "identical" says
whether every run of the side gave bit-identical factors):

{markdown_table(["run", "NDCG@10", "max factor diff", "identical across runs", "events held per process"], quality)}
"""
    if "batch" in parts:
        text += batch_part(args, local, measured, tree)
    return text


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _max_diff(a: Any, b: Any) -> float:
    return float(max(np.abs(a.user_factors_ - b.user_factors_).max(), np.abs(a.item_factors_ - b.item_factors_).max()))


def batch_part(args: argparse.Namespace, model: ImplicitALS, measured: dict, tree: TreeCPU) -> str:
    """Top-10 of every user: ``rank_rows`` in one process vs Ray Data writing Parquet, interleaved."""
    import numba

    from tastebud.scale.batch import recommend_all

    n_users = model.n_users
    w = args.workers
    keep: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = iter(range(10**6))
        sides: dict[str, tuple[Callable[[], Any], str]] = {
            "1 process, `rank_rows` in memory": (
                lambda: model.rank_rows(np.arange(n_users), 10)[0].shape,
                f"{numba.get_num_threads()} (numba)",
            ),
            f"Ray Data, {w} actors, written as Parquet": (
                lambda: recommend_all(model, Path(tmp) / f"run{next(runs)}", k=10, workers=w, batch_size=8192),
                f"{w} actors x 1 CPU, + driver",
            ),
        }
        print(f"batch: {args.pairs} pairs", flush=True)
        timings = interleave(measured_sides(tree, sides, keep), pairs=args.pairs)
    labels = list(sides)
    med = {label: float(np.median(t.wall)) for label, t in timings.items()}
    measured.update(batch_local_users_per_s=n_users / med[labels[0]], batch_ray_users_per_s=n_users / med[labels[1]])
    files = keep[labels[1]]["files"]
    return f"""
### Top-10 for every user ({n_users:,} users; the first side's model)

The sides in turn after a warm-up round timed apart ({args.pairs} rounds). The Ray side also writes
the lists as Parquet ({files} files), the in-memory side keeps them as arrays. Users per second at the
median wall: {n_users / med[labels[0]]:,.0f} in one process, {n_users / med[labels[1]]:,.0f} on Ray Data.

{timing_table(timings, labels[0])}
"""


def throughput_part(args: argparse.Namespace, measured: dict, tree: TreeCPU) -> str:
    """Two-tower training, 1 process vs Ray Train, interleaved: examples per second at the median wall."""
    import torch

    from tastebud.models.two_tower import TwoTower

    data = generate(n_users=5000, n_items=2000, n_interactions=200_000, explicit=False, features=False, random_state=1)
    split = holdout(data, fraction=0.2, random_state=0)
    params = dict(factors=32, epochs=2, batch_size=512, validation=0.0, device="cpu", max_history=20, random_state=0)
    w = args.workers
    sides: dict[str, tuple[Callable[[], Any], str]] = {
        "two-tower, 1 process": (lambda: TwoTower(**params).fit(split.train), f"{torch.get_num_threads()} (torch)"),
        f"two-tower, Ray Train {w} workers (gloo)": (
            lambda: TwoTower(**params).fit(split.train, engine=RayEngine(workers=w)),
            f"{w} workers x 1 CPU, + driver",
        ),
    }
    keep: dict[str, Any] = {}
    print(f"throughput: {args.neural_pairs} pairs", flush=True)
    timings = interleave(measured_sides(tree, sides, keep), pairs=args.neural_pairs)
    labels = list(sides)
    examples = len(split.train) * params["epochs"]
    med = {label: float(np.median(t.wall)) for label, t in timings.items()}
    ndcg = {label: evaluate_fitted(keep[label], split, 10)["ndcg@10"] for label in labels}
    measured.update(
        two_tower_interactions=len(split.train),
        two_tower_epochs=params["epochs"],
        two_tower_batch_size=params["batch_size"],
        two_tower_local_s=med[labels[0]],
        two_tower_ray_s=med[labels[1]],
        two_tower_local_ex_s=examples / med[labels[0]],
        two_tower_ray_ex_s=examples / med[labels[1]],
        two_tower_local_ndcg=ndcg[labels[0]],
        two_tower_ray_ndcg=ndcg[labels[1]],
    )
    settings = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"""
### Two-tower training throughput

{len(split.train):,} interactions (`generate(n_users=5000, n_items=2000, n_interactions=200_000)`, 80/20 holdout),
`TwoTower({settings})`: global batch {params["batch_size"]}, each Ray worker computes its share of every batch. A Ray
fit starts its worker group (processes, gloo) inside the fit, so every Ray run pays it. The sides in turn after a
warm-up round timed apart ({args.neural_pairs} rounds). Examples per second at the median wall:
{examples / med[labels[0]]:,.0f} in one process, {examples / med[labels[1]]:,.0f} on Ray Train; NDCG@10 (first
counted run): {ndcg[labels[0]]:.4f} and {ndcg[labels[1]]:.4f}.

{timing_table(timings, labels[0])}
"""


def _text(entry: Any) -> str:
    """A stored part's text (the former layout stored the text alone)."""
    return entry["text"] if isinstance(entry, dict) else str(entry)


def _current(entry: dict, paths: list[str]) -> bool:
    """Whether a stored part still describes HEAD: measured at a clean commit of HEAD's history, and
    none of the section's measured paths changed since (``benchmarks/check.py``'s rule)."""
    commit = entry.get("commit", "")
    if not commit or "+" in commit or git("cat-file", "-t", commit) != "commit":
        return False
    if commit == git("rev-parse", "HEAD"):
        return True
    return git("merge-base", commit, "HEAD") == commit and not git("diff", "--name-only", commit, "HEAD", "--", *paths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=DEFAULT_SCALE["users"])
    ap.add_argument("--items", type=int, default=DEFAULT_SCALE["items"])
    ap.add_argument("--interactions", type=int, default=DEFAULT_SCALE["interactions"])
    ap.add_argument("--factors", type=int, default=None, help="iALS factors (default: the model's)")
    ap.add_argument("--epochs", type=int, default=5, help="iALS epochs (the timing is per fit)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--eval-users", type=int, default=20_000)
    ap.add_argument("--pairs", type=int, default=5, help="interleaved rounds of the iALS and batch timings")
    ap.add_argument("--neural-pairs", type=int, default=3, help="interleaved rounds of the two-tower timing")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per model in the parity table")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument(
        "--models", default=",".join(PARITY), help="parity, parquet_neural: comma-separated subset of the models"
    )
    ap.add_argument("--note", default="", help="a sentence for the section: why the run was scaled down")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md and the JSON alone")
    args = ap.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown part(s) {sorted(unknown)}; choose from {','.join(PARTS)}")
    if {"parquet", "batch"} & set(parts) and "ials" not in parts:
        ap.error("parquet and batch run with the ials part (they share its data and fitted model)")
    if (
        min(
            args.users,
            args.items,
            args.interactions,
            args.epochs,
            args.workers,
            args.pairs,
            args.neural_pairs,
            args.seeds,
        )
        < 1
    ):
        ap.error("sizes, --epochs, --workers, --pairs, --neural-pairs and --seeds must be positive")

    import logging

    import ray

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # Ray Data logs every dataset's progress
    paths = section_paths(__file__, MEASURES)
    commit = measured_commit(paths)
    cmd = " ".join(shlex.quote(x) for x in sys.argv[1:])
    measured: dict = json.loads(OUT_JSON.read_text()) if OUT_JSON.exists() else {}
    with timer() as t_init:
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    tree = TreeCPU()
    # each part's text is kept in the JSON with its commit, so a run of some parts can rewrite the
    # section with the stored text of the others while their code is unchanged (see _current)
    stored: dict = measured.setdefault("sections", {})

    def run_part(part: str, measure: Callable[[], str]) -> None:
        load, started = os.getloadavg()[0], time.perf_counter()
        text = measure()
        text += (
            f"\n_Measured {time.strftime('%Y-%m-%d %H:%M')} at commit {commit[:12]}{'+dirty' if commit.endswith('+dirty') else ''} by `bench_dist.py {cmd}`: "
            f"{(time.perf_counter() - started) / 60:.1f} minutes; 1-minute load average {load:.1f} when the part "
            f"started, {os.getloadavg()[0]:.1f} when it ended; this run's `ray.init` took {t_init['s']:.1f}s "
            "(not counted in any timing)._\n"
        )
        print(text, flush=True)
        stored[part] = {"text": text, "commit": commit}
        if not args.no_write:  # after every part, so a run cut short keeps what it measured
            tmp = OUT_JSON.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(measured, indent=1))
            tmp.replace(OUT_JSON)

    if "ials" in parts:
        measured["ray_init_seconds"] = t_init["s"]
        for old in ("ials_ray_seconds_per_epoch_steady", "ials_parquet_seconds_per_epoch_steady"):
            measured.pop(old, None)  # figures of the former single-run layout
        run_part("ials", lambda: ials_part(args, parts, measured, tree))
    if "throughput" in parts:
        run_part("throughput", lambda: throughput_part(args, measured, tree))
    if "parity" in parts:
        measured["parity"] = {}  # only the models measured now: the table must not mix runs

        def parity_part() -> str:
            parity(args.workers, args.seeds, [m for m in args.models.split(",") if m], measured)
            return parity_text(measured["parity"], args.workers)

        run_part("parity", parity_part)
    if "parquet_neural" in parts:
        chosen = [m for m in args.models.split(",") if m in ("two-tower", "SASRec")]

        def parquet_neural_part() -> str:
            measured["parquet_neural"] = parquet_neural(args.workers, chosen)
            spread_of = measured["parity"] if "parity" in parts else {}
            return parquet_neural_text(measured["parquet_neural"], args.workers, spread_of)

        run_part("parquet_neural", parquet_neural_part)
    tree.close()
    ray.shutdown()

    order = ("ials", "throughput", "parity", "parquet_neural")
    current = [k for k in order if isinstance(stored.get(k), dict) and _current(stored[k], paths)]
    absent = [k for k in order if k not in current]
    body = f"""## Distributed: iALS, batch scoring and Ray Train on Ray (`benchmarks/bench_dist.py`)

One machine, {os.cpu_count()} cores shared with other jobs: the Ray side cannot gain from parallelism the local side
does not already have, and pays Ray's overhead (scheduling, object-store copies, its own processes). Ray: a local
instance with {args.workers} CPUs, started once per run (`ray.init`, timed apart: each part's last line). Timings:
the sides of each table run in turn (A B A B ...) after a warm-up round timed apart and excluded; median and min-max of
wall and CPU seconds. "CPU s" is this process alone (every thread); "incl. descendants" adds every live child process
(Ray's raylet, workers and actors, read from `/proc` every 0.5 s while a run is timed), since a Ray side computes
in them. "wall / 1 process" is the ratio within each round. Thread pools of the driver: {thread_counts()}.
Single timings move with the machine's load (each part's last line gives it), so read the per-round ratios.

""" + "\n".join(_text(stored[k]) for k in current)
    if absent:
        body += (
            f"\nNot in this section: {', '.join(absent)} (no run at this code; "
            f"`--parts {','.join(absent)}` measures them).\n"
        )
    body += """
Reproduce: `.venv/bin/python benchmarks/bench_dist.py` with the arguments on each part's last line; `--parts` reruns
some parts, the others' text is kept in `benchmarks/dist_measured.json` with the commit each ran at. Arithmetic beyond
one machine: `scripts/scaling_arithmetic.py` (docs/scaling.md).
"""
    print(body, flush=True)
    if args.no_write:
        return
    if not current:
        print("section 'dist' not written: no part was measured at this code (uncommitted changes?)", flush=True)
        return
    write_section("dist", body, measures=MEASURES)
    print("written section 'dist' of BENCHMARKS.md", flush=True)


def _as_train(model: ImplicitALS) -> Interactions:
    """The fitted model's seen matrix as Interactions (evaluation needs the training side of a split)."""
    coo = model.user_items_.tocoo()
    return Interactions(
        model.users_, model.items_, coo.row.astype(np.int32), coo.col.astype(np.int32), None, None, explicit=False
    )


def parity(workers: int, seeds: int, models: list[str], measured: dict) -> None:
    """NDCG@10 of the neural models on ML-100K: 1 process vs Ray Train, several seeds (into ``measured``)."""
    from tastebud.core.registry import get_model
    from tastebud.data.movielens import fixed_split, load_ml100k
    from tastebud.data.splits import leave_last_out

    splits = {"fixed": fixed_split("ml-100k"), "last": leave_last_out(load_ml100k())}
    raw = measured.setdefault("parity", {})
    for label in models:
        name, split_name, params = PARITY[label]
        split = splits[split_name]
        res: dict = {"local": [], "ray": [], "local_s": [], "ray_s": [], "split": split_name, "params": params}
        for seed in range(seeds):
            p = dict(params, device="cpu", random_state=seed)
            for engine in ("local", "ray"):
                model = get_model(name)(**p)
                with timer() as t:
                    model.fit(split.train, engine=RayEngine(workers=workers) if engine == "ray" else None)
                res[engine].append(evaluate_fitted(model, split, 10)["ndcg@10"])
                res[f"{engine}_s"].append(t["s"])
                print(f"parity {label} seed {seed} {engine}: {res[engine][-1]:.4f} in {t['s']:.0f}s", flush=True)
        res["measured"] = time.strftime("%Y-%m-%d %H:%M")
        raw[label] = res


def parity_text(raw: dict, workers: int) -> str:
    from protocol import mean_std, paired

    rows = []
    for label, res in raw.items():
        lo, ra = res["local"], res["ray"]
        rows.append(
            [
                label,
                res.get("split", "fixed"),
                ", ".join(f"{x:.4f}" for x in lo),
                ", ".join(f"{x:.4f}" for x in ra),
                mean_std(lo),
                mean_std(ra),
                paired(ra, lo, lower_is_better=False),
                f"{spread(res['local_s'], 0)} / {spread(res['ray_s'], 0)}",
            ]
        )
    settings = "; ".join(f"{label}: `{json.dumps(res.get('params', {}))[1:-1]}`" for label, res in raw.items())
    splits = "; ".join(f"`{k}` = {v}" for k, v in SPLIT_NAMES.items())
    seeds = max(len(res["local"]) for res in raw.values())
    return f"""
### Ray Train quality parity on ML-100K

1 process vs Ray Train with {workers} workers (gloo), the same hyper-parameters and seed.
Each worker computes its share of every global batch (the single-process batch), gradients are summed, and the two-tower's
in-batch softmax all-gathers the item vectors of the whole batch, so the runs follow the same trajectory up to float rounding
(two-tower, NeuMF) or up to the dropout masks (SASRec). One value per seed (0 to {seeds - 1}); ± is the sample standard
deviation over seeds; "Ray - 1 process" pairs the runs of each seed (mean ± sd of the differences, then each one).
Splits: {splits}. Settings: {settings}; `device="cpu"`.
Fit seconds: median (min-max) over the seeds; for each seed the 1-process fit runs, then the Ray fit (so the two
alternate), and every Ray fit starts its worker group inside the fit.

{markdown_table(["model", "split", "NDCG@10, 1 process", f"NDCG@10, Ray {workers} workers", "mean ± sd, 1 process", "mean ± sd, Ray", "Ray - 1 process, per seed", "fit s, 1 process / Ray"], rows)}
"""


def parquet_neural(workers: int, models: list[str]) -> dict:
    """Two-tower and SASRec (the parity settings, seed 0) from Parquet files, each worker holding its block.

    Three fits on the same events: 1 process and in-memory Ray Train (the whole data set through
    the object store), both on the events read back from the files (so all three index users and
    items alike), and ``fit_parquet`` with each worker reading only its user block.
    """
    import dataclasses

    from tastebud.core.registry import get_model
    from tastebud.data.movielens import fixed_split, load_ml100k
    from tastebud.data.parquet import read_interactions, write_interactions
    from tastebud.data.splits import leave_last_out
    from tastebud.scale.sharded import ParquetSource, fit_parquet

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        labels = [x for m in models for x in ([m, RELABELED] if m == "two-tower" else [m])]
        for label in labels:
            name, _, params = PARITY[label.split(" ")[0]]
            split = leave_last_out(load_ml100k()) if name == "sasrec" else fixed_split("ml-100k")
            if label == RELABELED:  # the same events in another order: how much the order alone moves NDCG@10
                split = Split(_relabel_users(split.train), _relabel_users(split.test), name=split.name)
            root = Path(tmp) / label.replace(" ", "_").replace("(", "").replace(")", "")
            write_interactions(split.train, root / "train", partitions=8)
            time_col = "timestamp" if split.train.timestamps is not None else None
            src = ParquetSource(str(root / "train"), time=time_col)
            train = read_interactions(root / "train", time=time_col)
            if name == "two_tower":  # catalogue tables: read whole (items) / per block (users) by each worker
                for what, frame in (("item", split.train.item_features), ("user", split.train.user_features)):
                    if frame is not None:
                        frame.rename_axis(what).reset_index().to_parquet(root / f"{what}s.parquet")
                        src = dataclasses.replace(src, **{f"{what}_features": str(root / f"{what}s.parquet")})
                train.item_features, train.user_features = split.train.item_features, split.train.user_features
            test, dropped = _in_vocabulary(split.test, train)
            files = Split(train, test, name=split.name)
            p = dict(params, device="cpu", random_state=0)
            res: dict = {"params": params, "events": len(train), "files": 8, "test_dropped": dropped}
            for run in ("local", "ray", "parquet"):
                model = get_model(name)(**p)
                with timer() as t:
                    if run == "parquet":
                        fit_parquet(model, src, workers=workers)
                    else:
                        model.fit(train, engine=RayEngine(workers=workers) if run == "ray" else None)
                res[run] = evaluate_fitted(model, files, 10)["ndcg@10"]
                res[f"{run}_s"] = t["s"]
                if run == "parquet":
                    res["held_events"] = model._dist_info["held_events"]
                print(f"parquet_neural {label} {run}: {res[run]:.4f} in {t['s']:.0f}s", flush=True)
            res["measured"] = time.strftime("%Y-%m-%d %H:%M")
            out[label] = res
    return out


RELABELED = "two-tower (user ids relabeled)"


def _relabel_users(data: Interactions) -> Interactions:
    """``data`` with user ids replaced by a fixed random relabelling: the same events, users in another order."""
    from tastebud.data.idmap import IdMap

    perm = np.random.default_rng(1).permutation(len(data.users))
    new_ids = np.array([f"u{p:07d}" for p in perm])
    uf = data.user_features
    if uf is not None:
        uf = uf.set_axis(new_ids[data.users.lookup(uf.index.to_numpy())])
    return Interactions(
        IdMap(new_ids, "user"),
        data.items,
        data.user_idx,
        data.item_idx,
        data.values,
        data.timestamps,
        explicit=data.explicit,
        item_features=data.item_features,
        user_features=uf,
    )


def _in_vocabulary(test: Interactions, train: Interactions) -> tuple[Interactions, int]:
    """``test`` indexed like ``train`` (the vocabularies read from the files); events of users or
    items with no training event are dropped (no model can rank them). Returns it and the drop count."""
    u = train.users.lookup(test.users.ids[test.user_idx])
    i = train.items.lookup(test.items.ids[test.item_idx])
    keep = (u >= 0) & (i >= 0)
    ts = None if test.timestamps is None else test.timestamps[keep]
    out = Interactions(train.users, train.items, u[keep], i[keep], test.values[keep], ts, explicit=test.explicit)
    return out, int((~keep).sum())


def parquet_neural_text(raw: dict, workers: int, parity_raw: dict) -> str:
    rows = []
    order = ["two-tower", RELABELED, "SASRec"]
    for label, r in sorted(raw.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
        held = r["held_events"]
        rows.append(
            [
                label,
                f"{r['local']:.4f}",
                f"{r['ray']:.4f}",
                f"{r['parquet']:.4f}",
                f"{r['parquet'] / r['ray']:.3f} / {r['parquet'] / r['local']:.3f}",
                f"{r['local_s']:.0f} / {r['ray_s']:.0f} / {r['parquet_s']:.0f}",
                " + ".join(f"{h:,}" for h in held) + f" of {r['events']:,} ({max(held) / r['events']:.0%} max)",
            ]
        )
    settings = "the parity settings, seed 0"
    when = ", ".join(sorted({r["measured"] for r in raw.values()}))
    sds = {
        label: statistics.stdev(parity_raw[label]["ray"])
        for label in ("two-tower", "SASRec")
        if label in parity_raw and len(parity_raw[label]["ray"]) > 1
    }
    spread_note = (
        ": the parity table above gives the seed-to-seed spread on Ray ("
        + ", ".join(f"sd {sd:.4f} {label}" for label, sd in sds.items())
        + ")"
        if sds
        else ""
    )
    return f"""
### Two-tower and SASRec from Parquet files

Two-tower and SASRec from Parquet files (8 files) on Ray Train with {workers} workers, each worker reading and holding only
its block of users (`fit_parquet`), vs the same events in memory: 1 process and in-memory Ray Train (the whole data set put in
the object store, every worker holding all of it). Splits as in the parity table (two-tower `fixed`, SASRec `last`); {settings}.
State over all users is merged, not gathered: the two-tower's logQ estimator streams over the item ids of every global batch
(all-gathered in the loss with the item vectors: the single-process stream), item features are read whole by every worker
(catalogue data), user features per block, validation metrics are averaged over workers. Events held are counted
by the workers; the driver holds none. All three runs index users and items by the files' vocabularies, so test events of
items without a training event are left out ({", ".join(f"{label}: {r['test_dropped']}" for label, r in raw.items())}). One seed{spread_note}; the order of the
events alone also moves the two-tower: the second two-tower row is the same events with the user ids relabeled at random (so
the files, the batches of every run and the users' blocks come in another order). Fit seconds are one run each (the
tables above time the sides interleaved). _(measured {when})_

{markdown_table(["model", "NDCG@10, 1 process", f"NDCG@10, Ray {workers} workers in memory", f"NDCG@10, Ray {workers} workers from Parquet", "Parquet / in-memory Ray, Parquet / 1 process", "fit s, one run each (1 proc / Ray / Parquet)", "events held per worker (Parquet)"], rows)}
"""


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"total {time.time() - t0:.0f}s")
