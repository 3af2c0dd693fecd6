"""The OpenMP wait policy tastebud loads its thread pools with (numba's and torch's).

GNU OpenMP's default is to spin between parallel regions. A fit runs many short regions with
Python in between (a torch training step is dozens of small ops), and on a busy machine the
spinning thread takes the core the other one needs: NeuMF's epoch on ML-100K with 2 torch threads
measured 5-19 s of CPU under load against 1 s with sleeping waits (issue #21), and numba's iALS twice
the time of a 1-thread fit. The policy is read once, when the runtime loads, so it is set for that
moment only, and never over a policy the user chose.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sleeping_waits() -> Iterator[None]:
    """Within this block an OpenMP runtime that loads gets ``OMP_WAIT_POLICY=PASSIVE``
    (unless the environment already names a policy); the environment is restored after."""
    if "OMP_WAIT_POLICY" in os.environ:
        yield
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        yield
    finally:
        os.environ.pop("OMP_WAIT_POLICY", None)
