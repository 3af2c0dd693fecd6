"""Several worker processes serving one version: ``tastebud serve --workers N``.

One Python process answers on about one core (the GIL), so a machine with N cores runs N
uvicorn workers that share the listening socket. A ``POST /admin/reload`` reaches only one of
them; the fleet therefore shares a small control file, JSON ``{"version", "generation"}``
written atomically. The worker that was asked loads the version and bumps ``generation``; every
worker polls the file twice a second and follows. Loading takes an exclusive ``flock`` on
``<control>.lock``, so at most one worker of the fleet loads at any moment (a rolling reload):
the others keep answering at full speed, and no request fails.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tastebud.core.persist import atomic_write_bytes

POLL_SECONDS = 0.5


class FleetControl:
    """The version a fleet of workers serves, and a lock that lets one worker load at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._seen: tuple[int, int] | None = None

    def read(self) -> tuple[str | None, int]:
        """(version, generation); version None means "whatever the source serves by default"."""
        raw = json.loads(self.path.read_text(encoding="utf-8"))
        return raw.get("version"), int(raw.get("generation", 0))

    def write(self, version: str | None, generation: int) -> None:
        atomic_write_bytes(self.path, json.dumps({"version": version, "generation": generation}).encode("utf-8"))

    def changed(self) -> bool:
        """Whether the file was rewritten since the last call (a stat, no read, on the poll path)."""
        st = self.path.stat()
        key = (st.st_mtime_ns, st.st_ino)
        if key == self._seen:
            return False
        self._seen = key
        return True

    @contextmanager
    def loading(self) -> Iterator[None]:
        """Hold the fleet's load lock: one worker loads a version at a time."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


__all__ = ["POLL_SECONDS", "FleetControl"]
