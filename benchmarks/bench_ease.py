"""EASE at 24,000 items: tastebud against cornac's EASE on the same synthetic data.

The size of issue #21 (31,000 users, 24,000 items, 256,000 interactions), where tastebud's EASE
used to kill the process inside OpenBLAS. Every fit runs in its own child process, so a native
crash is recorded instead of ending the run and peak memory does not mix; the children alternate
tastebud, cornac, tastebud, cornac, ... after one warm-up pair that is reported but not counted.
Wall and CPU seconds (all threads of the child) are measured around ``fit`` inside the child.
Both libraries then rank the top 10 unseen items of a few users, to check they agree.

    .venv/bin/python benchmarks/bench_ease.py               # 5 timed pairs + a warm-up pair
    .venv/bin/python benchmarks/bench_ease.py --items 3000  # smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_section  # noqa: E402

N_USERS, N_ITEMS, N_INTERACTIONS = 31_000, 24_000, 256_000
LAMBDA = 300.0
MEASURES = ["src/tastebud/models/ease.py", "src/tastebud/models/_common.py", "src/tastebud/data/synthetic.py"]
USERS = ["u0", "u1", "u2", "u3", "u4"]


def child(lib: str, n_items: int) -> dict:
    """Fit one library once; return timings, thread counts and the top 10 of ``USERS``."""
    from threadpoolctl import threadpool_info

    from tastebud.data.synthetic import generate

    data = generate(N_USERS, n_items, N_INTERACTIONS, explicit=False, features=False, random_state=0)
    if lib == "tastebud":
        from tastebud.models.ease import EASE

        model = EASE(reg=LAMBDA)
        w0, c0 = time.perf_counter(), time.process_time()
        model.fit(data)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        recs = model.recommend(USERS, k=10)
        top = {u: [str(x) for x in recs.items_of(i)] for i, u in enumerate(USERS)}
    else:
        import cornac

        users, items = data.users.to_ids(data.user_idx), data.items.to_ids(data.item_idx)
        train = cornac.data.Dataset.from_uir(
            list(zip(map(str, users), map(str, items), data.values.tolist(), strict=True)), seed=0
        )
        model = cornac.models.EASE(lamb=LAMBDA, posB=False, verbose=False)  # posB=True drops negative weights
        w0, c0 = time.perf_counter(), time.process_time()
        model.fit(train)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        inner_item = {v: k for k, v in train.iid_map.items()}
        top = {}
        for u in USERS:
            uidx = train.uid_map[u]
            scores = np.asarray(model.score(uidx), np.float64).ravel().copy()
            scores[train.matrix[uidx].indices] = -np.inf
            best = np.argsort(-scores, kind="stable")[:10]
            top[u] = [inner_item[i] for i in best]
    blas = [f"{x['internal_api']} {x['version']} ({x['num_threads']} threads)" for x in threadpool_info()]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"lib": lib, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss, "blas": blas, "top": top}


def run_child(lib: str, n_items: int) -> dict:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", lib, "--items", str(n_items)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        print(proc.stderr[-1500:], file=sys.stderr)
        return {"lib": lib, "crash": proc.returncode, "after_s": time.perf_counter() - started}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summary(runs: list[dict], key: str) -> str:
    xs = [r[key] for r in runs if "crash" not in r]
    if not xs:
        return "crashed"
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["tastebud", "cornac"])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--items", type=int, default=N_ITEMS, help="smaller for a smoke test (writes no section)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.items)))
        return
    import cornac

    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {"tastebud": [], "cornac": []}
    warm = {}
    for p in range(args.pairs + 1):
        for lib in ("tastebud", "cornac"):
            r = run_child(lib, args.items)
            shown = f"crash (exit {r['crash']})" if "crash" in r else f"{r['wall_s']:.1f} s wall"
            print(f"pair {p} {lib}: {shown}", file=sys.stderr, flush=True)
            if p == 0:
                warm[lib] = r
            else:
                runs[lib].append(r)
    ok = [r for r in runs["tastebud"] + runs["cornac"] + list(warm.values()) if "crash" not in r]
    by_lib = {r["lib"]: r for r in ok}
    rows = []
    for lib, label in [("tastebud", "tastebud ease"), ("cornac", f"cornac {cornac.__version__} EASE")]:
        rs = runs[lib]
        w = warm[lib]
        rows.append(
            {
                "library": label,
                "timed fits": f"{sum('crash' not in r for r in rs)} of {len(rs)}",
                "wall s, median (min-max)": summary(rs, "wall_s"),
                "CPU s, median (min-max)": summary(rs, "cpu_s"),
                "peak RSS MB, median": summary(rs, "peak_rss_mb"),
                "warm-up wall s": f"crash (exit {w['crash']})" if "crash" in w else f"{w['wall_s']:.1f}",
            }
        )
    parts = [
        "## EASE at 24,000 items (vs cornac)",
        "",
        f"Synthetic implicit data (`tastebud.data.synthetic.generate`, seed 0): {N_USERS:,} users, {args.items:,} items, "
        f"{N_INTERACTIONS:,} interactions; lambda {LAMBDA:g} for both. Each fit in its own child process, tastebud "
        f"and cornac alternating, {args.pairs} timed pairs after one warm-up pair (shown apart, not counted). Wall "
        "and CPU seconds of `fit` only (CPU over all threads of the child); peak RSS includes the data. "
        "Benchmark: `benchmarks/bench_ease.py`.",
        "",
        markdown_table(pd.DataFrame(rows)),
        "",
    ]
    blas = by_lib.get("tastebud", by_lib.get("cornac", {})).get("blas", [])
    parts.append(f"Threads: both libraries run with the BLAS pools as loaded: {'; '.join(blas)}.")
    if "tastebud" in by_lib and "cornac" in by_lib:
        same = [
            len(set(by_lib["tastebud"]["top"][u]) & set(by_lib["cornac"]["top"][u])) for u in USERS
        ]  # fmt: skip
        order = sum(by_lib["tastebud"]["top"][u] == by_lib["cornac"]["top"][u] for u in USERS)
        parts.append(
            f"Top 10 of users {', '.join(USERS)}: {sum(same)} of {10 * len(USERS)} items in common, "
            f"{order} of {len(USERS)} lists identical in order."
        )
    pairs = [
        (t["wall_s"] / c["wall_s"], t["cpu_s"] / c["cpu_s"])
        for t, c in zip(runs["tastebud"], runs["cornac"], strict=True)
        if "crash" not in t and "crash" not in c
    ]
    if pairs:
        wall, cpu = ([p[i] for p in pairs] for i in (0, 1))
        parts.append(
            f"tastebud / cornac, per pair ({len(pairs)} pairs): wall {statistics.median(wall):.2f}x "
            f"({min(wall):.2f}-{max(wall):.2f}), CPU {statistics.median(cpu):.2f}x ({min(cpu):.2f}-{max(cpu):.2f}); "
            "target (issue #21): wall <= 1.0x."
        )
    parts.append(f"1-minute load average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after.")
    crashes = [r for r in runs["cornac"] + runs["tastebud"] + list(warm.values()) if "crash" in r]
    if crashes:
        parts.append(
            "Crashed fits (exit code -11 is a segmentation fault): "
            + ", ".join(f"{r['lib']} (exit {r['crash']} after {r['after_s']:.0f} s)" for r in crashes)
            + "."
        )
    if args.items == N_ITEMS:
        write_section("ease", "\n".join(parts), measures=MEASURES)
    print("\n".join(parts))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
