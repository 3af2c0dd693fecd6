"""Progress bars for long work: one place every training loop reports through.

Whether bars show is a run-time setting, not a model hyper-parameter: a context variable, off by
default in the library (a library should not write to a terminal it was not asked to) and turned
on by the CLI unless ``--quiet``. Turn it on in your own code with::

    with tastebud.progress.enabled():
        model.fit(data)

Bars are tqdm bars on stderr (stdout stays for results) with a total, so they show an ETA. Loops
report once per epoch, sweep or batch, never per element, so compiled kernels do not slow down.
A context variable is per thread: fits in threads you start show no bars unless that thread
turns them on (a server's background retrain stays quiet).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_SHOW: ContextVar[bool] = ContextVar("tastebud_progress", default=False)


def progress_enabled() -> bool:
    """True when progress bars show in the current context."""
    return _SHOW.get()


def set_progress(on: bool) -> None:
    """Show (or hide) progress bars from now on in the current context (thread or task)."""
    _SHOW.set(bool(on))


@contextmanager
def enabled(on: bool = True) -> Iterator[None]:
    """Show (``on=True``) or hide progress bars inside the ``with`` block, then restore."""
    token = _SHOW.set(bool(on))
    try:
        yield
    finally:
        _SHOW.reset(token)


def progress_bar(total: int | None, desc: str, unit: str = "it", *, initial: int = 0, force: bool = False) -> Any:
    """A tqdm bar on stderr, disabled unless progress is enabled (or ``force``, a model's own switch).

    ``total`` gives the bar its ``n/total`` and ETA. Use it as a context manager and call
    ``bar.update(n)`` once per epoch, sweep or batch; ``bar.set_postfix(..., refresh=False)``
    before the update adds the loss. A disabled bar costs next to nothing.
    """
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        disable=not (force or progress_enabled()),
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def note(bar: Any, message: str) -> None:
    """A line above ``bar`` on stderr (an epoch's summary), written only when the bar shows."""
    if not bar.disable:
        bar.write(message, file=sys.stderr)


__all__ = ["enabled", "note", "progress_bar", "progress_enabled", "set_progress"]
