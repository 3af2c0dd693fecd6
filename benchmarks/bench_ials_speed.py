"""iALS fit time beside implicit 0.7 (issue #21): steady state on three data sets, and the first fit
in a fresh process.

Steady state follows the protocol of ``common.interleave``: implicit and tastebud in turn, A B A B,
after a warm-up timed apart, with wall and CPU seconds and the per-pair ratio. Both sides run on 2
threads (implicit ``num_threads=2`` with BLAS held to one thread, as it recommends; tastebud
``threads=2``). tastebud is timed through ``fit(Interactions)``, the call its users make (it builds
the matrix and the fingerprint inside); implicit through ``fit(csr)``.

First fit: a fresh Python process loads the data from ``.npz``, imports the library, builds its
input, fits once and exits; the same script without the fit is timed too, and the difference is
the first fit's cost (what numba's cache load and dispatch add shows here; imports are reported on
their own row). The four processes run interleaved, ``--pairs`` times.

Conventions (see bench_implicit.py): implicit's confidence is ``alpha * value``, tastebud's
``1 + alpha * value``, so implicit ``alpha=5`` is tastebud ``alpha=4`` on binary data.

    .venv/bin/python benchmarks/bench_ials_speed.py              # everything (about 30 minutes on 2 quiet cores)
    .venv/bin/python benchmarks/bench_ials_speed.py --no-10m     # the small sets only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleave, markdown_table, spread, thread_counts, timing_rows, write_section  # noqa: E402

MEASURES = ["src/tastebud/models/ials.py", "src/tastebud/kernels/ials.py"]
CACHE = Path("/tmp/tastebud-bench-ials")
THREADS = 2
# name: (generator arguments or None for ML-100K, factors, epochs, reg)
SETS = {
    "synthetic 10M (200k x 50k)": ((200_000, 50_000, 10_000_000), 64, 15, 0.1),
    "Last.fm-sized synthetic (1.9k x 15k, 74k)": ((1_900, 15_000, 74_000), 128, 30, 0.1),
    "ML-100K (943 x 1,682, 100k)": (None, 128, 30, 30.0),
}
IMPLICIT_ALPHA = 5.0  # = tastebud alpha 4 on binary data


def csr_of(name: str) -> sp.csr_matrix:
    """The set's user x item matrix, cached as .npz in CACHE (the 10M set takes minutes to generate)."""
    gen = SETS[name][0]
    path = CACHE / (f"synthetic_{gen[0]}x{gen[1]}_{gen[2]}.npz" if gen else "ml100k.npz")
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        if gen:
            from tastebud.data.synthetic import generate

            m = generate(n_users=gen[0], n_items=gen[1], n_interactions=gen[2], explicit=False, features=False).matrix
        else:
            from tastebud.data.movielens import load_ml100k

            data = load_ml100k(features=False)
            m = data.matrix
            m.data[:] = 1.0  # every rating is one interaction
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, indptr=m.indptr, indices=m.indices, data=m.data, shape=np.array(m.shape))
        tmp.replace(path)
    z = np.load(path)
    return sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))


def interactions(m: sp.csr_matrix):
    from tastebud.data.idmap import IdMap
    from tastebud.data.interactions import Interactions

    c = m.tocoo()
    users, items = IdMap(np.arange(m.shape[0]), "user"), IdMap(np.arange(m.shape[1]), "item")
    return Interactions(users, items, c.row, c.col, c.data, explicit=False)


def steady(name: str, pairs: int) -> list[dict]:
    from tastebud.models._common import numba_threads
    from tastebud.models.ials import ImplicitALS

    with numba_threads(THREADS):  # starts the OpenMP runtime both libraries share here (sleeping waits)
        pass
    import implicit.cpu.als as ials
    from threadpoolctl import threadpool_limits

    _, factors, epochs, reg = SETS[name]
    m = csr_of(name)
    data = interactions(m)

    def run_implicit() -> None:
        model = ials.AlternatingLeastSquares(
            factors=factors, regularization=reg, alpha=IMPLICIT_ALPHA, iterations=epochs,
            num_threads=THREADS, random_state=0,
        )  # fmt: skip
        with threadpool_limits(1, "blas"):
            model.fit(m, show_progress=False)

    def run_tastebud() -> None:
        ImplicitALS(
            factors=factors, reg=reg, alpha=IMPLICIT_ALPHA - 1, reg_exponent=0.0, epochs=epochs, threads=THREADS
        ).fit(data)

    sides = {
        "implicit": (run_implicit, f"{THREADS} (num_threads, BLAS 1)"),
        "tastebud": (run_tastebud, f"{THREADS} (threads)"),
    }
    rows = timing_rows(interleave(sides, pairs=pairs), baseline="implicit")
    for row in rows:
        row["data"] = f"{name}: {factors} f, {epochs} it."
        print(row, flush=True)
    return rows


FIRST = """
import json, sys, time
import numpy as np, scipy.sparse as sp
z = np.load(sys.argv[1]); m = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
side, what = sys.argv[2], sys.argv[3]
if what == "bare":
    sys.exit(0)
k, epochs, reg = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
if side == "tastebud":
    from tastebud.data.idmap import IdMap
    from tastebud.data.interactions import Interactions
    from tastebud.models.ials import ImplicitALS
    c = m.tocoo()
    data = Interactions(IdMap(np.arange(m.shape[0]), "user"), IdMap(np.arange(m.shape[1]), "item"), c.row, c.col,
                        c.data, explicit=False)
    def fit():
        ImplicitALS(factors=k, reg=reg, alpha=4.0, reg_exponent=0.0, epochs=epochs, threads=2).fit(data)
else:
    import implicit.cpu.als as ials
    from threadpoolctl import threadpool_limits
    def fit():
        model = ials.AlternatingLeastSquares(factors=k, regularization=reg, alpha=5.0, iterations=epochs,
                                             num_threads=2, random_state=0)
        with threadpool_limits(1, "blas"):
            model.fit(m, show_progress=False)
if what == "fit":
    fit()
elif what == "twice":  # the first and a warm fit, timed inside the process
    times = []
    for _ in range(2):
        start = time.perf_counter()
        fit()
        times.append(time.perf_counter() - start)
    print(json.dumps(times))
"""


def first_fit(name: str, pairs: int) -> list[dict]:
    """Seconds of whole fresh processes: (fit) - (no fit) per side, interleaved; also the imports,
    and the first fit over a second one timed inside one fresh process."""
    _, factors, epochs, reg = SETS[name]
    csr_of(name)
    path = sorted(CACHE.glob("synthetic_1900x15000_*.npz" if "Last.fm" in name else "ml100k.npz"))[0]
    script = CACHE / "first_fit.py"
    script.write_text(FIRST)

    def proc(side: str, what: str) -> float:
        args = [sys.executable, str(script), str(path), side, what, str(factors), str(epochs), str(reg)]
        start = time.perf_counter()
        out = subprocess.run(args, check=True, capture_output=True, text=True)
        if what == "twice":
            first, warm = json.loads(out.stdout.strip().splitlines()[-1])
            return first / warm
        return time.perf_counter() - start

    for side in ("implicit", "tastebud"):  # the numba cache exists and the files are in the page cache
        proc(side, "fit")
    got: dict[str, list[float]] = {f"{s} {w}": [] for s in ("implicit", "tastebud") for w in ("fit", "nofit", "bare")}
    twice: dict[str, list[float]] = {"implicit": [], "tastebud": []}
    for _ in range(pairs):
        for side in ("implicit", "tastebud"):
            for what in ("fit", "nofit", "bare"):
                got[f"{side} {what}"].append(proc(side, what))
            twice[side].append(proc(side, "twice"))
    fit = {
        s: [a - b for a, b in zip(got[f"{s} fit"], got[f"{s} nofit"], strict=True)] for s in ("implicit", "tastebud")
    }
    imports = {s: [a - b for a, b in zip(got[f"{s} nofit"], got[f"{s} bare"], strict=True)] for s in fit}
    rows = [
        {
            "data": f"{name}: {factors} f, {epochs} it.",
            "side": s,
            "first fit s (process with fit - without)": spread(fit[s]),
            "import + input s": spread(imports[s]),
            "first fit / implicit's, per pair": spread([a / b for a, b in zip(fit[s], fit["implicit"], strict=True)]),
            "first fit / warm fit, same process": spread(twice[s]),
            "runs": pairs,
        }
        for s in ("implicit", "tastebud")
    ]
    for row in rows:
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--no-10m", action="store_true", help="skip the 10M set (its generation and fits)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--steady-json", help="save the steady-state rows here, or reuse them when the file exists")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    names = [n for n in SETS if not (args.no_10m and "10M" in n)]
    if args.steady_json and Path(args.steady_json).exists():
        steady_rows = json.loads(Path(args.steady_json).read_text())
    else:
        steady_rows = []
        for name in reversed(names):  # small sets first
            steady_rows += steady(name, args.pairs)
        if args.steady_json:
            Path(args.steady_json).write_text(json.dumps(steady_rows))
    first_rows: list[dict] = []
    for name in [n for n in names if "10M" not in n]:
        first_rows += first_fit(name, args.pairs)
    cols = ["data", "side", "threads", "warm-up wall s", "wall s, median (min-max)", "CPU s, median (min-max)",
            "wall / implicit, per pair", "runs"]  # fmt: skip
    body = [
        "## iALS speed beside implicit (issue #21)",
        "",
        "`benchmarks/bench_ials_speed.py`. Steady state: implicit 0.7 and tastebud in turn (A B A B) after a "
        "warm-up timed apart; both on 2 threads (implicit `num_threads=2`, BLAS held to 1 thread; tastebud "
        "`threads=2`); same factors, iterations and regularization, implicit `alpha=5` = tastebud `alpha=4`. "
        "tastebud is timed through `fit(Interactions)` (matrix, fingerprint and confidences included); implicit "
        "through `fit(csr)`. Both libraries use the same GNU OpenMP runtime, so in this process both run with the "
        "sleeping waits tastebud starts it with (implicit is faster so than at its spinning default on a busy "
        f"machine; the first-fit rows run each at its own default). Thread pools of this process: {thread_counts()}. "
        f"The 1-minute load average was {load_before:.1f} when the run started and {os.getloadavg()[0]:.1f} when it "
        "ended; single timings move with the machine's load, so read the per-pair ratios.",
        "",
        markdown_table(pd.DataFrame([{c: r.get(c, "") for c in cols} for r in steady_rows])),
        "",
        "First fit in a fresh process: whole processes that load the `.npz`, import the library, build the "
        "input and fit once, minus the same process without the fit (interleaved, numba's on-disk cache "
        "present). `import + input` is the process without the fit minus one that only loads the data; "
        "`first fit / warm fit` times two fits inside one fresh process.",
        "",
        markdown_table(pd.DataFrame(first_rows)),
    ]
    text = "\n".join(body)
    print(text)
    if not args.no_write:
        write_section("ials_speed", text, measures=MEASURES)


if __name__ == "__main__":
    main()
