"""Helpers the compiled models share: numba thread control and checks of implicit-feedback values.

They lived in the iALS module; every model that runs numba kernels (iALS, BPR, SVD, SLIM, EASE,
the item-item models) uses them, so they have a home of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np

from tastebud.core.errors import DataError
from tastebud.models._openmp import sleeping_waits


def _start_threads() -> None:
    """Start numba's thread pool with OpenMP threads that sleep while they wait (once per process;
    see :mod:`tastebud.models._openmp` for why)."""
    global _THREADS_STARTED
    if _THREADS_STARTED:
        return
    _THREADS_STARTED = True
    with sleeping_waits():
        numba.get_num_threads()  # loads the threading layer (and its OpenMP runtime) now


_THREADS_STARTED = False


@contextmanager
def numba_threads(threads: int) -> Iterator[int]:
    """Run compiled kernels on ``threads`` threads (0: every core numba may use), then restore."""
    _start_threads()
    limit = numba.config.NUMBA_NUM_THREADS
    want = limit if threads <= 0 else min(int(threads), limit)
    before = numba.get_num_threads()
    numba.set_num_threads(want)
    try:
        yield want
    finally:
        numba.set_num_threads(before)


def check_values(values: np.ndarray, what: str = "values") -> None:
    """Confidences must be finite and >= 0 (raise DataError naming the first bad one)."""
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(
            f"{what}: entry {int(np.argmax(bad))} is {values[bad][0]!r}; confidences must be finite numbers"
        )
    neg = values < 0
    if neg.any():
        raise DataError(
            f"{what}: entry {int(np.argmax(neg))} is {float(values[neg][0]):g}; implicit feedback needs values >= 0 "
            "(counts, durations, ratings); drop or shift negative values"
        )


def cosine_rows(factors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Cosine similarity of ``factors[rows]`` to every row of ``factors`` (zero vectors score 0)."""
    norms = np.linalg.norm(factors, axis=1)
    safe = np.where(norms > 0, norms, 1.0).astype(np.float32)
    unit = factors / safe[:, None]
    return unit[rows] @ unit.T
