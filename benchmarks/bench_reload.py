"""What a hot reload of a 1M-item version costs the worker that keeps answering meanwhile.

The bench_serve registry (iALS with synthetic factors, 1M items x 64, HNSW32) is published twice;
the versions are loaded in turn with ``Engine.load`` while a second thread, standing for the event
loop that answers requests, sleeps 1 ms at a time and records how late it wakes. Its longest
delay is the longest pause a request of that worker would see. Rows: the worker that moves a
fleet to a version (checks the SHA-256 sums) and a worker that follows it (``verify=False``).

    python benchmarks/bench_reload.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import build_registry  # noqa: E402
from common import markdown_table, write_section  # noqa: E402
from tastebud.serve.engine import Engine  # noqa: E402

# The code this benchmark's section measures (besides common.COMMON_PATHS); make bench-check reads it.
MEASURES = [
    "src/tastebud/serve",
    "src/tastebud/index",
    "src/tastebud/models/ials.py",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tastebud-bench-reload-"))
    root = work / "registry"
    build_registry(root, args.n)
    served = Engine.load(root, "v0001")  # imports, compiled kernels: paid once, at start-up
    lateness: list[float] = []
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            time.sleep(0.001)
            lateness.append(time.perf_counter() - t - 0.001)

    probe = threading.Thread(target=answer, daemon=True)
    probe.start()
    rows = []
    try:
        for rep in range(args.repeats):
            for role, verify in (
                ("the worker that loads first (checks SHA-256)", True),
                ("a worker that follows", False),
            ):
                version = "v0002" if served.version == "v0001" else "v0001"
                time.sleep(0.2)
                lateness.clear()
                t, cpu = time.perf_counter(), time.process_time()
                fresh = Engine.load(root, version, verify=verify)
                wall, cpu = time.perf_counter() - t, time.process_time() - cpu
                t = time.perf_counter()
                gc.collect(1)
                served = fresh  # the replaced version goes by reference counting, as in the service
                freed = time.perf_counter() - t
                time.sleep(0.1)
                late = np.asarray(lateness) * 1000
                rows.append(
                    {
                        "load": role,
                        "repeat": rep + 1,
                        "wall s": f"{wall:.2f}",
                        "CPU s": f"{cpu:.2f}",
                        "longest pause ms": f"{late.max():.1f}",
                        "pauses > 5 ms": int((late > 5).sum()),
                        "swap + free ms": f"{freed * 1000:.1f}",
                    }
                )
                print(rows[-1], flush=True)
    finally:
        stop.set()
        probe.join()
        shutil.rmtree(work, ignore_errors=True)
    body = f"""## Hot reload ({args.n:,}-item iALS version with its HNSW index)

`Engine.load` of the bench_serve registry's versions in turn, while a second thread sleeps 1 ms
at a time and records how late it wakes (the longest pause a request of the reloading worker
would see). The FAISS index is mapped from its file; "a worker that follows" loads a version
another worker of the fleet has verified, without checking the SHA-256 sums again. CPU is the
whole process's (the probe thread adds a few milliseconds).

{markdown_table(pd.DataFrame(rows))}

Reproduce: `python benchmarks/bench_reload.py --repeats {args.repeats}`."""
    write_section("reload", body, measures=MEASURES)
    print(body)


if __name__ == "__main__":
    main()
