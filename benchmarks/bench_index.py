"""Vector index (section "index" of BENCHMARKS.md): recall@10 against exact search, build time and
queries/s of HNSW and IVF-PQ, and tastebud's FAISS backend beside raw FAISS.

Data: synthetic item vectors of dimension 64 shaped like a factor model's: items drawn around 2,000
taste clusters with a power-law spectrum over the dimensions (singular values of real factor models
decay the same way) and per-item noise; queries are user vectors from the same distribution. They
are *not* trained factors: which HNSW geometry recalls more depends on the vectors (the lift to L2 of
Bachrach et al. 2014 suits these clusters; trained iALS factors, whose norms spread widely, may
favour the inner-product graph). The `serve` section (bench_serve.py) measures recall on trained iALS
factors through the service; this section is a speed/recall table of the index itself.

Both geometries the library offers are measured: ``make_index("HNSW32")`` (the default: inner
product lifted to L2) and ``make_index("HNSW32", euclidean=False)`` (the graph built on inner
product). The side-by-side with raw FAISS compares like with like: ``IndexHNSWFlat`` on inner
product beside the inner-product graph, and ``IndexHNSWFlat`` on L2 over vectors lifted the same
way (the lift inside the timed build and search) beside the default. Its timings follow
``common.interleave``: the four sides in turn after a warm-up round timed apart, ``--pairs`` rounds,
median with min-max of wall and CPU seconds.

    python benchmarks/bench_index.py                          # 1M x 64 (two 1M builds per geometry)
    python benchmarks/bench_index.py --n 200000 --note "..."  # scaled down; the note says why

The default-geometry graphs built here also refresh the cache under $TASTEBUD_BENCH_CACHE (default
/tmp/tastebud-bench) that bench_serve.py's reload registry reads.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared cores: do not spin

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_seconds, interleave, markdown_table, spread, timing_rows, write_section  # noqa: E402

CACHE = Path(os.environ.get("TASTEBUD_BENCH_CACHE", "/tmp/tastebud-bench"))
DIM = 64
DEFAULT_N = 1_000_000


# The code this benchmark's section measures (besides common.COMMON_PATHS); make bench-check reads it.
MEASURES = [
    "src/tastebud/index",
]

# The two graphs the library builds: ``euclidean`` as passed to make_index (None: its default, the lift).
GEOMETRIES = {"lifted to L2 (default)": None, "inner product (`euclidean=False`)": False}


def synthetic_factors(n_items: int, n_users: int, dim: int = DIM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(user vectors, item vectors) shaped like a factor model's (clusters, decaying spectrum)."""
    rng = np.random.default_rng(seed)
    scale = (1.0 / (1.0 + np.arange(dim)) ** 0.8).astype(np.float32)
    centers = rng.standard_normal((2000, dim)).astype(np.float32) * scale
    items = np.empty((n_items, dim), np.float32)
    step = 200_000
    for s in range(0, n_items, step):
        m = min(step, n_items - s)
        items[s : s + m] = (
            centers[rng.integers(0, 2000, m)] + 0.3 * rng.standard_normal((m, dim)).astype(np.float32) * scale
        )
    users = (
        centers[rng.integers(0, 2000, n_users)] + 0.3 * rng.standard_normal((n_users, dim)).astype(np.float32) * scale
    )
    return users.astype(np.float32), items


EF_CONSTRUCTION = 80


def hnsw_folder(n: int, spec: str = "HNSW32", ef_construction: int = EF_CONSTRUCTION) -> Path:
    return CACHE / f"{spec.lower()}-efc{ef_construction}-{n}x{DIM}"


def cached_hnsw(items: np.ndarray, spec: str = "HNSW32", ef_construction: int = EF_CONSTRUCTION):
    """Build (or load the cached) default-geometry index over ``items``; returns (index, build seconds)."""
    from tastebud.index import load_index, make_index

    folder = hnsw_folder(len(items), spec, ef_construction)
    meta = folder.with_suffix(".json")
    if folder.is_dir() and meta.is_file():
        index = load_index(folder)
        return index, json.loads(meta.read_text())["build_seconds"]
    start = time.perf_counter()
    index = make_index(spec, ef_construction=ef_construction).build(items)
    seconds = time.perf_counter() - start
    cache_hnsw(index, len(items), spec, ef_construction, seconds)
    return index, seconds


def cache_hnsw(index: Any, n: int, spec: str, ef_construction: int, seconds: float) -> None:
    """Save a default-geometry index where :func:`cached_hnsw` finds it, with its build seconds."""
    folder = hnsw_folder(n, spec, ef_construction)
    index.save(folder)
    meta = folder.with_suffix(".json")
    tmp = meta.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"build_seconds": seconds}))
    tmp.replace(meta)


def recall(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / len(b) for a, b in zip(got, ref, strict=False)]))


def single_query_latency(search, queries: np.ndarray) -> tuple[float, float, float]:
    """(queries/s, p50 ms, p99 ms) issuing one query at a time (the service's pattern)."""
    arr = np.asarray(_latencies(search, queries))
    return len(arr) / arr.sum(), float(np.percentile(arr, 50) * 1e3), float(np.percentile(arr, 99) * 1e3)


def _latencies(search, queries: np.ndarray) -> list[float]:
    times = []
    for q in queries:
        t = time.perf_counter()
        search(q[None, :])
        times.append(time.perf_counter() - t)
    return times


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall s, CPU s of this process) of one call."""
    c0, w0 = cpu_seconds(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - w0, cpu_seconds() - c0


def _search_row(label: str, n: int, build: str, param: str, index: Any, users: np.ndarray, ref: np.ndarray,
                repeats: int, single: int) -> dict[str, Any]:  # fmt: skip
    """One row of the index table: batch search ``repeats`` times (median q/s, min-max), then
    ``single`` queries one at a time."""
    got = None
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        got, _ = index.search(users, 10)
        rates.append(len(users) / (time.perf_counter() - start))
    qps1, p50, p99 = single_query_latency(lambda q: index.search(q, 10), users[:single])
    print(f"{label} {param}: recall {recall(got, ref):.4f}", flush=True)
    return {
        "index": label,
        "n": f"{n:,}",
        "build s, wall / CPU": build,
        "search param": param,
        "recall@10": f"{recall(got, ref):.4f}",
        f"batch q/s, median (min-max) of {repeats}": spread(rates, 0),
        "1-query q/s": f"{qps1:,.0f}",
        "p50 ms": f"{p50:.2f}",
        "p99 ms": f"{p99:.2f}",
    }


def index_table(users: np.ndarray, items: np.ndarray, args: argparse.Namespace) -> tuple[list[dict], dict[str, Any]]:
    """The index's own rows over all ``items``: exact, HNSW32 in both geometries at two
    efConstruction values, IVF-PQ; and the filters' recall."""
    from tastebud.index import ExactIndex, make_index

    exact = ExactIndex().build(items)
    ref, _ = exact.search(users, 10)
    rows = [_search_row("exact (BLAS, chunked)", len(items), "-", "-", exact, users, ref, args.repeats, 50)]
    notes: dict[str, Any] = {}
    for geometry, euclidean in GEOMETRIES.items():
        for efc in (EF_CONSTRUCTION, 200):
            index, wall, cpu = _timed(
                lambda efc=efc, eu=euclidean: make_index("HNSW32", euclidean=eu, ef_construction=efc).build(items)
            )
            if euclidean is None:  # the default graph: refresh what bench_serve.py's cache holds (untimed)
                cache_hnsw(index, len(items), "HNSW32", efc, wall)
            print(f"built {geometry} efc={efc} in {wall:.0f}s", flush=True)
            for ef in args.ef_search:
                index.ef_search = ef
                rows.append(
                    _search_row(
                        f"tastebud HNSW32, {geometry}",
                        len(items),
                        f"{wall:.1f} / {cpu:.1f}",
                        f"efConstruction={efc}, efSearch={ef}",
                        index,
                        users,
                        ref,
                        args.repeats,
                        args.queries,
                    )
                )
            if euclidean is None and efc == 200:  # filters keep k: a 5% allowed subset, 200 excluded per query
                index.ef_search = 512
                rng = np.random.default_rng(1)
                allowed = np.sort(rng.choice(len(items), len(items) // 20, replace=False))
                asked = users[:200]
                exclude = [rng.choice(len(items), 200, replace=False) for _ in range(len(asked))]
                got_f, _ = index.search(asked, 10, exclude=exclude, allowed=allowed)
                ref_f, _ = exact.search(asked, 10, exclude=exclude, allowed=allowed)
                notes["filter_queries"] = len(asked)
                notes["filter_recall"] = recall(got_f, ref_f)
                notes["filter_full"] = float(np.mean((got_f >= 0).sum(axis=1) == 10))
            del index
    if not args.no_ivfpq:
        ivf, wall, cpu = _timed(lambda: make_index("IVF1024,PQ16", nprobe=32, train_size=100_000).build(items))
        rows.append(
            _search_row(
                "tastebud IVF1024,PQ16",
                len(items),
                f"{wall:.1f} / {cpu:.1f}",
                "nprobe=32",
                ivf,
                users,
                ref,
                args.repeats,
                min(200, args.queries),
            )
        )
    return rows, notes


def _lift(items: np.ndarray) -> tuple[np.ndarray, float]:
    """Bachrach et al.'s lift, written out for the raw FAISS side: ``[x, sqrt(M^2 - |x|^2)]``."""
    sq = np.einsum("ij,ij->i", items, items, dtype=np.float64)
    top = float(np.sqrt(sq.max()))
    extra = np.sqrt(np.maximum(top**2 - sq, 0.0)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([items, extra[:, None]]), dtype=np.float32), top


class RawLifted:
    """Raw FAISS ``IndexHNSWFlat`` on L2 over lifted vectors, queries lifted with a zero: the same
    problem tastebud's default graph solves, with nothing of tastebud around it."""

    def __init__(self, items: np.ndarray, ef_search: int) -> None:
        import faiss

        lifted, _ = _lift(items)
        self.index = faiss.IndexHNSWFlat(lifted.shape[1], 32)  # METRIC_L2
        self.index.hnsw.efConstruction = EF_CONSTRUCTION
        self.index.add(lifted)
        self.index.hnsw.efSearch = ef_search

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        lifted = np.ascontiguousarray(np.hstack([queries, np.zeros((len(queries), 1), np.float32)]))
        return self.index.search(lifted, k)[1]


class RawIP:
    """Raw FAISS ``IndexHNSWFlat`` on inner product."""

    def __init__(self, items: np.ndarray, ef_search: int) -> None:
        import faiss

        self.index = faiss.IndexHNSWFlat(items.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = EF_CONSTRUCTION
        self.index.add(items)
        self.index.hnsw.efSearch = ef_search

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(queries, k)[1]


class Ours:
    """tastebud's FAISS backend through its public API (``make_index(...).build``, ``.search``)."""

    def __init__(self, items: np.ndarray, ef_search: int, euclidean: bool | None) -> None:
        from tastebud.index import make_index

        self.index = make_index("HNSW32", euclidean=euclidean, ef_construction=EF_CONSTRUCTION, ef_search=ef_search)
        self.index.build(items)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(queries, k)[0]


def side_by_side(users: np.ndarray, items: np.ndarray, pairs: int, ef_search: int) -> dict[str, Any]:
    """tastebud beside raw FAISS, each geometry like with like: builds, batch searches and one-query
    searches, each interleaved over the four sides; recall@10 of every build against exact search."""
    import faiss

    from tastebud.index import ExactIndex

    ref, _ = ExactIndex().build(items).search(users, 10)
    threads = faiss.omp_get_max_threads()
    t_build = f"{threads} (FAISS OpenMP)"
    sides: dict[str, tuple[str, str, Callable[[], Any]]] = {
        # label: (geometry, who, build)
        "tastebud `make_index(\"HNSW32\")`": (
            "lifted to L2", "tastebud", lambda: Ours(items, ef_search, None)),
        "raw FAISS `IndexHNSWFlat` (L2) on lifted vectors": (
            "lifted to L2", "raw", lambda: RawLifted(items, ef_search)),
        "tastebud `make_index(\"HNSW32\", euclidean=False)`": (
            "inner product", "tastebud", lambda: Ours(items, ef_search, False)),
        "raw FAISS `IndexHNSWFlat` (METRIC_INNER_PRODUCT)": (
            "inner product", "raw", lambda: RawIP(items, ef_search)),
    }  # fmt: skip
    print(f"side by side: builds ({pairs} pairs)", flush=True)
    builds = interleave({label: (build, t_build) for label, (_, _, build) in sides.items()}, pairs=pairs)
    recalls = {label: [recall(b.search(users, 10), ref) for b in t.results] for label, t in builds.items()}
    built = {label: t.results[-1] for label, t in builds.items()}  # the last build of each side is searched
    for t in builds.values():
        t.results = []
    print("side by side: batch searches", flush=True)
    batch = interleave(
        {
            label: (lambda b=b: b.search(users, 10), f"{threads} (FAISS OpenMP, over queries)")
            for label, b in built.items()
        },
        pairs=pairs,
    )
    print("side by side: one query at a time", flush=True)
    single = interleave(
        {
            label: (lambda b=b: _latencies(lambda q: b.search(q, 10), users), "1 per query")
            for label, b in built.items()
        },
        pairs=pairs,
    )
    tables: dict[str, list[dict[str, Any]]] = {}
    ratio = {}
    for geometry in ("lifted to L2", "inner product"):
        ours, raw = (
            next(lb for lb, (g, who, _) in sides.items() if g == geometry and who == w) for w in ("tastebud", "raw")
        )
        ratio[geometry] = float(np.median(recalls[ours])) / max(1e-9, float(np.median(recalls[raw])))
    for what, timings in (("build", builds), ("batch", batch), ("single", single)):
        rows = []
        for geometry in ("lifted to L2", "inner product"):
            labels = [label for label, (g, _, _) in sides.items() if g == geometry]
            raw = next(label for label in labels if sides[label][1] == "raw")
            for row in timing_rows({label: timings[label] for label in labels}, baseline=raw):
                row["wall / raw FAISS, per pair"] = row.pop(f"wall / {raw}, per pair")
                label = row["side"]
                row = {"geometry": geometry, **row}
                if what == "build":
                    row["recall@10 of each build"] = spread(recalls[label], 4)
                if what == "single":
                    lat = np.concatenate([np.asarray(x) for x in timings[label].results]) * 1e3
                    row["q/s (median wall)"] = f"{len(users) / float(np.median(timings[label].wall)):,.0f}"
                    row["p50 / p99 ms"] = f"{np.percentile(lat, 50):.2f} / {np.percentile(lat, 99):.2f}"
                if what == "batch":
                    row["q/s (median wall)"] = f"{len(users) / float(np.median(timings[label].wall)):,.0f}"
                rows.append(row)
        tables[what] = rows
    return {"tables": tables, "threads": threads, "recall_ratio": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="vectors in the index table")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--peer-n", type=int, default=100_000, help="vectors in the side-by-side with raw FAISS")
    parser.add_argument("--pairs", type=int, default=5, help="interleaved rounds of the side-by-side after a warm-up")
    parser.add_argument("--repeats", type=int, default=3, help="batch searches per row of the index table")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--peer-ef-search", type=int, default=128)
    parser.add_argument("--no-ivfpq", action="store_true")
    parser.add_argument("--note", default="", help="a sentence for the section: why the run was scaled down")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    if min(args.n, args.queries, args.peer_n, args.pairs, args.repeats, *args.ef_search) < 1:
        parser.error("--n, --queries, --peer-n, --pairs, --repeats and --ef-search must be positive")
    if args.peer_n > args.n:
        parser.error("--peer-n must not exceed --n (the side-by-side uses the first --peer-n vectors)")

    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    load = [os.getloadavg()[0]]
    users, items = synthetic_factors(args.n, args.queries)
    rows, notes = index_table(users, items, args)
    load.append(os.getloadavg()[0])
    side = side_by_side(users, items[: args.peer_n], args.pairs, args.peer_ef_search)
    load.append(os.getloadavg()[0])
    minutes = (time.perf_counter() - started) / 60

    ratio_lift, ratio_ip = side["recall_ratio"]["lifted to L2"], side["recall_ratio"]["inner product"]
    scaled = (
        f"\n**Scaled down:** {args.n:,} vectors instead of the script's default {DEFAULT_N:,}. {args.note}\n"
        if args.n != DEFAULT_N
        else ""
    )
    cols_side = ["geometry", "side", "threads", "warm-up wall s", "wall s, median (min-max)", "CPU s, median (min-max)",
                 "wall / raw FAISS, per pair", "runs"]  # fmt: skip
    build_cols = cols_side + ["recall@10 of each build"]
    search_cols = cols_side[:4] + ["wall s, median (min-max)", "CPU s, median (min-max)", "q/s (median wall)"]
    search_cols += ["wall / raw FAISS, per pair", "runs"]
    single_cols = search_cols[:-2] + ["p50 / p99 ms", "wall / raw FAISS, per pair", "runs"]

    def table(name: str, cols: list[str]) -> str:
        return markdown_table(pd.DataFrame([{c: r.get(c, "") for c in cols} for r in side["tables"][name]]))

    cmd = " ".join(shlex.quote(a) for a in sys.argv[1:])
    body = f"""## Vector index ({args.n:,} x {DIM} synthetic vectors, {args.queries} queries; `benchmarks/bench_index.py`)

A speed/recall table of the index itself. The vectors are random (2,000 taste clusters with a
decaying spectrum, like a factor model's), **not trained factors**: which HNSW geometry recalls more
depends on the vectors, and here it is the lift to L2 (Bachrach et al. 2014) while on trained iALS
factors, whose norms spread widely, it can be the inner-product graph. Recall on trained iALS
factors, through the service, is the `serve` section's.
{scaled}
### The index ({args.n:,} vectors)

Recall@10 against exact search; "batch" sends all {args.queries} queries in one call ({args.repeats}
calls, median and min-max of queries/s), "1-query" issues one query at a time through the Python API
(the service's pattern; {args.queries} queries, 50 for exact, {min(200, args.queries)} for IVF-PQ). HNSW: M=32, both geometries the
library offers, efConstruction 80 (the default) and 200 (a better graph reaches the same recall with a
smaller efSearch, paid once at build time). Builds are one run each, wall / CPU seconds (CPU of every
thread); the side-by-side below times builds interleaved. FAISS runs {side["threads"]} OpenMP threads.

{markdown_table(pd.DataFrame(rows))}

Filters (default geometry, efConstruction 200, efSearch 512, {notes["filter_queries"]} queries, a 5% `allowed` subset and
200 excluded items per query): recall@10 {notes["filter_recall"]:.4f} against exact search with the
same filters; {notes["filter_full"]:.0%} of rows have all 10 results.

### Beside raw FAISS (first {args.peer_n:,} vectors, M=32, efConstruction {EF_CONSTRUCTION}, efSearch {args.peer_ef_search})

Like with like in each geometry: tastebud's default graph (inner product lifted to L2) beside raw
`IndexHNSWFlat` on L2 over vectors lifted the same way (the lift done inside the timed build and
search), and tastebud's inner-product graph beside raw `IndexHNSWFlat` on `METRIC_INNER_PRODUCT`.
tastebud runs through its public API (`make_index(...).build`, `.search`, which also checks the
input, handles filters and maps lifted distances back to inner products). The four sides run in
turn (A B C D, ...) after a warm-up round timed apart and excluded, {args.pairs} rounds; median and
min-max of wall and CPU seconds (CPU of every thread of the process), and tastebud's wall over raw
FAISS's within each round. Recall@10 against exact search, for every build (HNSW's parallel insertion
makes each build a little different): median recall tastebud / raw FAISS {ratio_lift:.3f} lifted,
{ratio_ip:.3f} on inner product.

Build:

{table("build", build_cols)}

Search, all {args.queries} queries in one call:

{table("batch", search_cols)}

Search, one query per call ({args.queries} calls per run; FAISS parallelises over the queries of a call,
so one thread works per query):

{table("single", single_cols)}

Whole run: {minutes:.0f} minutes on a machine shared with other jobs; 1-minute load average
{load[0]:.1f} at the start, {load[1]:.1f} before the side-by-side, {load[2]:.1f} at the end, so single
timings are upper bounds and the per-round ratios are the figures to read.

Reproduce: `python benchmarks/bench_index.py {cmd}`"""
    print(body, flush=True)
    if not args.no_write:
        write_section("index", body, measures=MEASURES)
        print("written section 'index' of BENCHMARKS.md", flush=True)


if __name__ == "__main__":
    main()
