"""Vector index: recall@10 of HNSW (and IVF-PQ) against exact search, build time and queries/s.

Data: 1 million synthetic item vectors of dimension 64 shaped like a factor model's: items drawn
around 2,000 taste clusters with a power-law spectrum over the dimensions (singular values of
real factor models decay the same way) and per-item noise; queries are user vectors from the same
distribution. The peer is raw FAISS ``IndexHNSWFlat`` with inner product on the same vectors and
parameters (tastebud lifts inner product to L2 first, see tastebud.index.faiss).

    python benchmarks/bench_index.py            # 1M x 64 (builds once, cached in /tmp)
    python benchmarks/bench_index.py --n 100000 --peer-n 50000   # quicker

The built HNSW index is cached under $TASTEBUD_BENCH_CACHE (default /tmp/tastebud-bench) and
reused by bench_serve.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared cores: do not spin

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_section  # noqa: E402

CACHE = Path(os.environ.get("TASTEBUD_BENCH_CACHE", "/tmp/tastebud-bench"))
DIM = 64


# The code this benchmark's section measures (besides common.COMMON_PATHS); make bench-check reads it.
MEASURES = [
    "src/tastebud/index",
]


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
    """Build (or load the cached) index over ``items``; returns (index, build seconds)."""
    from tastebud.index import load_index, make_index

    folder = hnsw_folder(len(items), spec, ef_construction)
    meta = folder.with_suffix(".json")
    if folder.is_dir() and meta.is_file():
        index = load_index(folder)
        return index, json.loads(meta.read_text())["build_seconds"]
    start = time.perf_counter()
    index = make_index(spec, ef_construction=ef_construction).build(items)
    seconds = time.perf_counter() - start
    index.save(folder)
    meta.write_text(json.dumps({"build_seconds": seconds}))
    return index, seconds


def recall(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / len(b) for a, b in zip(got, ref, strict=False)]))


def single_query_latency(search, queries: np.ndarray) -> tuple[float, float, float]:
    """(queries/s, p50 ms, p99 ms) issuing one query at a time (the service's pattern)."""
    times = []
    for q in queries:
        t = time.perf_counter()
        search(q[None, :])
        times.append(time.perf_counter() - t)
    arr = np.asarray(times)
    return len(arr) / arr.sum(), float(np.percentile(arr, 50) * 1e3), float(np.percentile(arr, 99) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--peer-n", type=int, default=100_000, help="catalogue size for the side-by-side with raw FAISS"
    )
    parser.add_argument("--no-ivfpq", action="store_true")
    args = parser.parse_args()

    import faiss

    from tastebud.index import ExactIndex, make_index

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    users, items = synthetic_factors(args.n, args.queries)
    rows = []

    exact = ExactIndex().build(items)
    t = time.perf_counter()
    ref, _ = exact.search(users, 10)
    exact_s = time.perf_counter() - t
    qps1, p50, p99 = single_query_latency(lambda q: exact.search(q, 10), users[:50])
    rows.append(
        {
            "index": "exact (BLAS, chunked)",
            "n": args.n,
            "build s": 0.0,
            "search param": "-",
            "recall@10": 1.0,
            "batch q/s": args.queries / exact_s,
            "1-query q/s": qps1,
            "p50 ms": p50,
            "p99 ms": p99,
        }
    )

    # efConstruction 80 (the default) and 200 (what bench_serve.py serves: a better graph reaches
    # the same recall with a smaller efSearch, paid once at build time)
    for efc, efs in ((EF_CONSTRUCTION, (64, 128, 256, 512)), (200, (128, 256, 320))):
        index, build_s = cached_hnsw(items, ef_construction=efc)
        for ef in efs:
            index.ef_search = ef
            t = time.perf_counter()
            got, _ = index.search(users, 10)
            batch_s = time.perf_counter() - t
            qps1, p50, p99 = single_query_latency(partial(index.search, k=10), users)
            rows.append(
                {
                    "index": "tastebud HNSW32 (ip lifted to L2)",
                    "n": args.n,
                    "build s": build_s,
                    "search param": f"efConstruction={efc}, efSearch={ef}",
                    "recall@10": recall(got, ref),
                    "batch q/s": args.queries / batch_s,
                    "1-query q/s": qps1,
                    "p50 ms": p50,
                    "p99 ms": p99,
                }
            )
    index.ef_search = 512
    # filters keep k: a 5% allowed subset and 200 excluded items per query
    rng = np.random.default_rng(1)
    allowed = np.sort(rng.choice(args.n, args.n // 20, replace=False))
    exclude = [rng.choice(args.n, 200, replace=False) for _ in range(len(users))]
    got_f, _ = index.search(users[:200], 10, exclude=exclude[:200], allowed=allowed)
    ref_f, _ = exact.search(users[:200], 10, exclude=exclude[:200], allowed=allowed)
    filt_recall = recall(got_f, ref_f)
    full_rows = float(np.mean((got_f >= 0).sum(axis=1) == 10))

    if not args.no_ivfpq:
        t = time.perf_counter()
        ivf = make_index("IVF1024,PQ16", nprobe=32, train_size=100_000).build(items)
        ivf_build = time.perf_counter() - t
        t = time.perf_counter()
        got, _ = ivf.search(users, 10)
        batch_s = time.perf_counter() - t
        qps1, p50, p99 = single_query_latency(lambda q: ivf.search(q, 10), users[:200])
        rows.append(
            {
                "index": "tastebud IVF1024,PQ16",
                "n": args.n,
                "build s": ivf_build,
                "search param": "nprobe=32",
                "recall@10": recall(got, ref),
                "batch q/s": args.queries / batch_s,
                "1-query q/s": qps1,
                "p50 ms": p50,
                "p99 ms": p99,
            }
        )
        del ivf

    # side by side with raw FAISS on a subset (same vectors, same M / efConstruction / efSearch)
    sub_items = items[: args.peer_n]
    sub_ref, _ = ExactIndex().build(sub_items).search(users, 10)
    t = time.perf_counter()
    mine = make_index("HNSW32", ef_construction=EF_CONSTRUCTION, ef_search=128).build(sub_items)
    mine_build = time.perf_counter() - t
    got, _ = mine.search(users, 10)
    qps_mine, p50m, p99m = single_query_latency(lambda q: mine.search(q, 10), users)
    t = time.perf_counter()
    peer = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    peer.hnsw.efConstruction = EF_CONSTRUCTION
    peer.add(sub_items)
    peer_build = time.perf_counter() - t
    peer.hnsw.efSearch = 128
    _, peer_got = peer.search(users, 10)
    qps_peer, p50p, p99p = single_query_latency(lambda q: peer.search(q, 10), users)
    side = pd.DataFrame(
        [
            {
                "index": "tastebud HNSW32",
                "n": args.peer_n,
                "build s": mine_build,
                "recall@10": recall(got, sub_ref),
                "1-query q/s": qps_mine,
                "p99 ms": p99m,
            },
            {
                "index": "raw FAISS IndexHNSWFlat (IP)",
                "n": args.peer_n,
                "build s": peer_build,
                "recall@10": recall(peer_got, sub_ref),
                "1-query q/s": qps_peer,
                "p99 ms": p99p,
            },
        ]
    )
    frame = pd.DataFrame(rows)
    for col in ("build s", "batch q/s", "1-query q/s", "p50 ms", "p99 ms"):
        frame[col] = frame[col].map(lambda v: f"{v:,.1f}")
    frame["recall@10"] = frame["recall@10"].map(lambda v: f"{v:.4f}")
    for col in ("build s", "1-query q/s", "p99 ms"):
        side[col] = side[col].map(lambda v: f"{v:,.1f}")
    side["recall@10"] = side["recall@10"].map(lambda v: f"{v:.4f}")
    body = f"""## Vector index ({args.n:,} x {DIM} synthetic factor vectors, {args.queries} user queries)

Recall@10 against the exact backend; "1-query" issues one query at a time through the Python API
(the service's pattern), "batch" sends all queries in one call. HNSW: M=32, efConstruction as listed.

{markdown_table(frame)}

Filters (efSearch=512, 200 queries, a 5% `allowed` subset and 200 excluded items per query):
recall@10 {filt_recall:.4f} against exact search with the same filters; {full_rows:.0%} of rows
have all 10 results.

Side by side with raw FAISS on the first {args.peer_n:,} vectors (efSearch=128): tastebud
lifts inner product to L2 before building the graph; raw FAISS builds it on inner product directly.
Recall ratio tastebud / FAISS: {recall(got, sub_ref) / max(1e-9, recall(peer_got, sub_ref)):.2f}.

{markdown_table(side)}

Reproduce: `python benchmarks/bench_index.py` (the CPU was shared with other jobs when this ran;
on an idle machine the times are lower)."""
    write_section("index", body, measures=MEASURES)
    print(body)


if __name__ == "__main__":
    main()
