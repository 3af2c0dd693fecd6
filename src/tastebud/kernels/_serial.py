"""Single-threaded twins of parallel kernels, for the calls that serve one person.

Starting a numba parallel region wakes every worker thread; for one row (a request) that costs
more than the work, by milliseconds on a busy machine. A twin is the same Python source compiled
without ``parallel`` (``prange`` then runs as ``range``), under its own name so the two never
share an on-disk cache entry.
"""

from __future__ import annotations

import types
from typing import Any

from numba import njit


def serial_twin(kernel: Any) -> Any:
    """The ``njit(cache=True)`` compilation of ``kernel``'s Python function, named ``<name>_serial``."""
    fn = kernel.py_func
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_serial"
    twin.__doc__ = fn.__doc__
    return njit(cache=True)(twin)


__all__ = ["serial_twin"]
