"""Neural training speed on CPU beside cornac (issue #21): NeuMF's time per epoch on ML-100K, and
SASRec's at the paper's settings.

NeuMF runs at cornac's architecture (8 predictive factors, MLP layers 64-32-16-8, which is tastebud
``factors=8, layers=3``), 4 negatives per positive, Adam at 0.001, every rating one interaction, no
validation. cornac's ``batch_size`` counts positives (256, each with its 4 negatives: 1,280 rows a
step), tastebud's counts rows, so ``batch_size=1280`` is the same work per step and the same steps
per epoch; tastebud's default (256 rows a step, five times the steps) has a row of its own.

Each run is one fit of ``--epochs`` epochs; the time per epoch is its wall (and CPU) seconds over
the epochs (setup included on both sides: negative sampling is part of an epoch). The sides run in
turn, A B A B, after a warm-up timed apart (``common.interleave``), at 1 and then 2 torch threads.
torch is loaded through tastebud before cornac is imported, so the process's one OpenMP runtime has
threads that sleep while they wait, for both sides (tastebud's default since issue #21).

    .venv/bin/python benchmarks/bench_neural_speed.py [--pairs 5] [--epochs 2] [--no-sasrec] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleave, markdown_table, spread, thread_counts, timing_rows, write_section  # noqa: E402

MEASURES = [
    "src/tastebud/models/ncf.py",
    "src/tastebud/models/sasrec.py",
    "src/tastebud/models/_torch.py",
    "src/tastebud/models/_openmp.py",
]
NEGATIVES = 4
CORNAC_BATCH = 256  # positives per step (cornac's default)
NEUMF = {"factors": 8, "layers": 3, "negatives": NEGATIVES, "learning_rate": 0.001, "validation": 0.0, "device": "cpu"}
# Kang & McAuley 2018: 2 blocks, 50 dimensions, sequences of 200, dropout 0.2, batch 128, BCE with one negative
SASREC = {"factors": 50, "transformer_blocks": 2, "maxlen": 200, "dropout": 0.2, "batch_size": 128,
          "loss": "bce", "negatives": 1, "patience": None, "device": "cpu"}  # fmt: skip


def neumf_rows(threads: int, pairs: int, epochs: int) -> list[dict]:
    import cornac
    from cornac.data import Dataset

    from tastebud.data.movielens import load_ml100k
    from tastebud.models._torch import require_torch
    from tastebud.models.ncf import NeuMF

    torch = require_torch()
    torch.set_num_threads(threads)
    data = load_ml100k(features=False)
    coo = data.matrix.tocoo()
    triples = list(zip(coo.row.astype(str), coo.col.astype(str), np.ones(coo.nnz), strict=True))
    dataset = Dataset.from_uir(triples, seed=0)

    def run_cornac() -> None:
        cornac.models.NeuMF(
            num_factors=8, layers=(64, 32, 16, 8), num_epochs=epochs, batch_size=CORNAC_BATCH, num_neg=NEGATIVES,
            lr=0.001, backend="pytorch", verbose=False, seed=0,
        ).fit(dataset)  # fmt: skip

    def run_tastebud(batch_size: int):  # type: ignore[no-untyped-def]
        def run() -> None:
            NeuMF(**NEUMF, batch_size=batch_size, epochs=epochs).fit(data)

        return run

    same = CORNAC_BATCH * (1 + NEGATIVES)
    sides = {
        "cornac NeuMF (batch_size=256 positives)": (run_cornac, str(threads)),
        f"tastebud NeuMF (batch_size={same} rows: same steps)": (run_tastebud(same), str(threads)),
        "tastebud NeuMF (batch_size=256 rows: its default, 5x the steps)": (run_tastebud(256), str(threads)),
    }
    timings = interleave(sides, pairs=pairs)
    rows = timing_rows(timings, baseline=next(iter(sides)))
    for row, t in zip(rows, timings.values(), strict=True):
        row["s / epoch, median (min-max)"] = spread([w / epochs for w in t.wall])
        row["CPU s / epoch"] = spread([c / epochs for c in t.cpu])
        print(row, flush=True)
    return rows


def sasrec_rows(threads: int, pairs: int, epochs: int) -> list[dict]:
    from tastebud.data.movielens import load_ml100k
    from tastebud.models._torch import require_torch
    from tastebud.models.sasrec import SASRec

    require_torch().set_num_threads(threads)
    data = load_ml100k(features=False)

    def run() -> None:
        SASRec(**SASREC, epochs=epochs).fit(data)

    timings = interleave({"tastebud SASRec (2 blocks, d=50, maxlen=200)": (run, str(threads))}, pairs=pairs)
    rows = timing_rows(timings)
    for row, t in zip(rows, timings.values(), strict=True):
        row["s / epoch, median (min-max)"] = spread([w / epochs for w in t.wall])
        row["CPU s / epoch"] = spread([c / epochs for c in t.cpu])
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5, help="counted rounds of A B after the warm-up (>= 5)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per fit (the time per epoch divides by it)")
    parser.add_argument("--threads", default="1,2", help="torch thread counts, comma-separated")
    parser.add_argument("--no-sasrec", action="store_true", help="skip SASRec's row")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    from tastebud.models._torch import require_torch

    # first: whichever library loads the OpenMP runtime sets its wait policy for the process, and
    # cornac's compiled extensions load one too (with the spinning default) when cornac is imported
    require_torch()
    counts = [int(t) for t in args.threads.split(",")]
    rows: list[dict] = []
    for threads in counts:
        rows += neumf_rows(threads, args.pairs, args.epochs)
    seq: list[dict] = []
    if not args.no_sasrec:
        for threads in counts:
            seq += sasrec_rows(threads, args.pairs, args.epochs)
    cols = ["side", "threads", "warm-up wall s", "s / epoch, median (min-max)", "CPU s / epoch",
            "runs"]  # fmt: skip
    ratio = [c for c in rows[0] if c.startswith("wall / ")] if rows else []
    body = [
        "## Neural training speed beside cornac (issue #21)",
        "",
        f"`benchmarks/bench_neural_speed.py`. NeuMF on ML-100K (every rating one interaction) at cornac's "
        f"architecture: 8 factors, MLP 64-32-16-8 (tastebud `factors=8, layers=3`), {NEGATIVES} negatives per "
        "positive, Adam at 0.001, no validation. cornac 2.3 (pytorch backend) counts `batch_size` in positives, "
        "tastebud in rows (positives and their negatives): `batch_size=1280` is cornac's step. Each run is one "
        f"fit of {args.epochs} epochs, reported per epoch; the sides run in turn (A B A B) after a warm-up timed "
        "apart, at each torch thread count; the ratio is per pair against cornac. Both sides share the "
        f"process's OpenMP runtime, loaded by tastebud with sleeping waits. Thread pools: {thread_counts()}.",
        "",
        markdown_table(pd.DataFrame([{c: r.get(c, "") for c in cols + ratio} for r in rows])),
    ]
    if seq:
        body += [
            "",
            "SASRec at the paper's settings (Kang & McAuley 2018: 2 blocks, 50 dimensions, sequences of 200, "
            "dropout 0.2, batch 128, BCE with one negative) on the same data, tastebud alone (cornac has no SASRec).",
            "",
            markdown_table(pd.DataFrame([{c: r.get(c, "") for c in cols} for r in seq])),
        ]
    text = "\n".join(body)
    print(text)
    if not args.no_write:
        write_section("neural_speed", text, measures=MEASURES)


if __name__ == "__main__":
    main()
