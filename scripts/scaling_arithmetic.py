"""The arithmetic of docs/scaling.md, from per-worker figures measured by benchmarks/bench_dist.py.

    .venv/bin/python scripts/scaling_arithmetic.py                       # reads benchmarks/dist_measured.json
    .venv/bin/python scripts/scaling_arithmetic.py --factors 64 --bandwidth-gbs 12.5

Memory is exact arithmetic (bytes per number times counts). Times are a cost model: a measured
per-core throughput divided over workers, plus the communication each design needs at a stated
network bandwidth. They are estimates for planning, not measurements.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MEASURED = Path(__file__).resolve().parents[1] / "benchmarks" / "dist_measured.json"
GB = 1e9


def gb(x: float) -> str:
    if x >= 1e12:
        return f"{x / 1e12:,.1f} TB"
    if x >= GB:
        return f"{x / GB:,.1f} GB"
    return f"{x / 1e6:,.1f} MB"


def table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measured", type=Path, default=MEASURED)
    ap.add_argument("--factors", type=int, default=128, help="vector dimension d")
    ap.add_argument("--users", type=float, default=250e6)
    ap.add_argument("--titles", type=float, default=17_000)
    ap.add_argument("--events-per-user", type=float, default=100, help="distinct interactions per user")
    ap.add_argument("--big-items", type=float, default=1e9, help="the billion-item catalogue")
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--pq-bytes", type=int, default=16, help="PQ code size per vector (IVF-PQ)")
    ap.add_argument("--ivf-lists", type=int, default=262_144)
    ap.add_argument("--bandwidth-gbs", type=float, default=12.5, help="network GB/s per worker (100 Gbit/s)")
    ap.add_argument("--worker-memory-gb", type=float, default=80.0, help="memory of one worker (an 80 GB GPU)")
    args = ap.parse_args()

    m = json.loads(args.measured.read_text()) if args.measured.is_file() else {}
    d = args.factors
    f32 = 4

    # ------------------------------------------------------------------ memory
    print("## Memory\n")
    nnz = args.users * args.events_per_user
    rows = [
        ["user factors (250M x d, float32)", gb(args.users * d * f32)],
        ["title factors (17k x d)", gb(args.titles * d * f32)],
        [
            "interactions, one CSR orientation (int32 index + float32 value + int64 indptr)",
            gb(nnz * 8 + args.users * 8),
        ],
        ["Gramian / one item's normal equations (d x d, float64)", gb(d * d * 8)],
        [
            "all titles' partial normal equations on one worker (17k x (d^2 + d) float64)",
            gb(args.titles * (d * d + d) * 8),
        ],
    ]
    print(table(["what (Netflix-sized: 250M users x 17,000 titles)", "size"], rows))
    n = args.big_items
    flat = n * d * f32
    hnsw_links = n * args.hnsw_m * 2 * 4  # layer 0 keeps 2M neighbours of 4 bytes; upper layers add ~1/M
    hnsw = flat + hnsw_links * (1 + 1 / args.hnsw_m) + n * 8
    ivfpq = n * (args.pq_bytes + 8) + args.ivf_lists * d * f32
    print()
    print(
        table(
            [f"index over 1 billion items, d = {d}", "size", f"machines of {args.worker_memory_gb:.0f} GB"],
            [
                ["raw vectors (Flat)", gb(flat), f"{flat / (args.worker_memory_gb * GB):.1f}"],
                [f"HNSW{args.hnsw_m} (vectors + graph)", gb(hnsw), f"{hnsw / (args.worker_memory_gb * GB):.1f}"],
                [
                    f"IVF{args.ivf_lists},PQ{args.pq_bytes} (codes + ids + centroids)",
                    gb(ivfpq),
                    f"{ivfpq / (args.worker_memory_gb * GB):.2f}",
                ],
            ],
        )
    )

    # ------------------------------------------------------------------ iALS
    if "ials_local_seconds_per_epoch" in m:
        print("\n## iALS time per epoch vs workers\n")
        meas_nnz, meas_k = m["interactions"], m["factors"]
        # one core's throughput in (non-zero x factor^2) units: CG cost per row is O(nnz_u k + k^2)
        # per step; with nnz >> rows the nnz x k term dominates, and the Gramian adds k^2 per row
        cores_local = 2
        work = meas_nnz * meas_k * 2 + (m["users"] + m["items"]) * meas_k**2
        per_core = work / (m["ials_local_seconds_per_epoch"] * cores_local)
        print(
            f"Measured: {meas_nnz:,} interactions, {m['users']:,} users x {m['items']:,} items, k = {meas_k}: "
            f"{m['ials_local_seconds_per_epoch']:.2f} s / epoch locally on {cores_local} cores, "
            f"{m['ials_ray_fit_seconds'] / m['epochs']:.2f} s on Ray with {m['workers']} workers (median fit / epochs) "
            f"=> {per_core / 1e9:.2f} G(work units)/s per core.\n"
        )
        big_work = nnz * d * 2 + (args.users + args.titles) * d**2
        item_factors = args.titles * d * f32
        partial_ne = args.titles * (d * d + d) * 8
        rows = []
        for w in (1, 8, 64, 256, 1024):
            compute = big_work / (per_core * w)
            # user sweep: broadcast 17k title factors (tiny); item sweep: reduce per-title normal
            # equations from every worker (ring all-reduce moves ~2x the buffer per worker)
            comm = (item_factors + 2 * partial_ne * (w - 1) / max(w, 1)) / (args.bandwidth_gbs * GB)
            rows.append([str(w), f"{compute:,.0f}", f"{comm:,.2f}", f"{compute + comm:,.0f}"])
        print(
            table(
                [
                    f"workers (1 core each), 250M x 17k, {args.events_per_user:.0f} events/user, d={d}",
                    "compute s",
                    "network s",
                    "s / epoch",
                ],
                rows,
            )
        )

    # ------------------------------------------------------------------ two-tower
    if "two_tower_local_ex_s" in m:
        print("\n## Two-tower throughput vs workers (data parallel, all-reduce of dense gradients)\n")
        ex_s = m["two_tower_local_ex_s"]
        rows = []
        for label, n_ids in (("17k titles", args.titles), ("1B items", args.big_items)):
            table_bytes = n_ids * d * f32
            for w in (1, 8, 64):
                # ring all-reduce of a dense gradient: 2 (w-1)/w x size per step per worker
                steps_per_s = ex_s / 512
                comm = 2 * (w - 1) / w * table_bytes / (args.bandwidth_gbs * GB)
                step_time = 1 / steps_per_s + comm
                fits = table_bytes * 4 <= args.worker_memory_gb * GB  # weights + grads + 2 Adam moments
                rows.append(
                    [label, str(w), gb(table_bytes), f"{w * 512 / step_time:,.0f}", "yes" if fits else "no: shard it"]
                )
        print(
            f"Measured one-process throughput {ex_s:,.0f} examples/s (batch 512, d=32, CPU); "
            f"Ray Train with {m['workers']} workers on the same 2 cores: {m.get('two_tower_ray_ex_s', float('nan')):,.0f}.\n"
        )
        print(table(["item table", "workers", "table size", "examples/s (model)", "replicable (DDP)?"], rows))


if __name__ == "__main__":
    main()
