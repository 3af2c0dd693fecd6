"""The model registry: a folder of numbered versions and a pointer to the one being served.

::

    registry/
      CURRENT                 the served version's name, replaced atomically
      versions/
        v0001/
          serving.json        models, hybrid policy, index specs, event watermark, base data
          models/<name>/      saved models (tastebud's pickle-free bundles)
          index/<name>/       vector indexes of the factor models (index/<ranker>/<retriever>/:
                              of a ranker's retrievers)
          popularity/         global and per-segment popularity

Publishing builds the version in a hidden staging folder, fsyncs it, renames it into place (a
rename is atomic) and only then moves ``CURRENT``: a reader sees the old version or the new one,
never half of one. Versions are never modified after publishing.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tastebud.core.errors import ConfigError, ModelFormatError
from tastebud.core.persist import MANIFEST, _fsync_dir, atomic_write_bytes

SERVING = "serving.json"
CURRENT = "CURRENT"
_VERSION = re.compile(r"^v(\d{4,})$")


def is_model_folder(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


class ModelRegistry:
    """Versions of served models under one root folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if is_model_folder(self.root):
            raise ConfigError(f"{self.root} is a single saved model, not a registry folder")

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    def versions(self) -> list[str]:
        """Published version names, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        names = [
            p.name
            for p in self.versions_dir.iterdir()
            if p.is_dir() and _VERSION.match(p.name) and (p / SERVING).is_file()
        ]
        return sorted(names, key=lambda n: int(_VERSION.match(n).group(1)))  # type: ignore[union-attr]

    def current(self) -> str | None:
        """The version being served: ``CURRENT`` if present, else the newest."""
        pointer = self.root / CURRENT
        if pointer.is_file():
            name = pointer.read_text(encoding="utf-8").strip()
            if name in self.versions():
                return name
            raise ModelFormatError(f"{pointer} names version {name!r}, which is not published")
        versions = self.versions()
        return versions[-1] if versions else None

    def path(self, version: str | None = None) -> Path:
        name = version or self.current()
        if name is None:
            raise ModelFormatError(f"{self.root}: the registry has no published version yet; run `tastebud retrain`")
        if not isinstance(name, str) or not _VERSION.match(name):
            raise ConfigError(f"version names look like v0001, got {name!r}")
        path = self.versions_dir / name
        if not path.resolve().is_relative_to(self.versions_dir.resolve()):
            raise ModelFormatError(f"{self.root}: version {name!r} resolves outside the registry; refused")
        if not (path / SERVING).is_file():
            raise ModelFormatError(f"{self.root}: no version {name!r}")
        return path

    def spec(self, version: str | None = None) -> dict[str, Any]:
        path = self.path(version)
        try:
            spec = json.loads((path / SERVING).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"{path / SERVING}: cannot be read ({exc})") from None
        spec["version"] = path.name
        return spec

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def stage(self) -> Path:
        """A fresh hidden folder to build a version in (pass it to :meth:`publish`)."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        path = self.versions_dir / f".stage-{uuid.uuid4().hex}"
        path.mkdir()
        return path

    def publish(self, staged: str | Path, spec: dict[str, Any], make_current: bool = True) -> str:
        """Give the staged folder the next version number, atomically, and (by default) serve it."""
        staged = Path(staged)
        if not staged.is_dir():
            raise ConfigError(f"{staged}: staged version folder does not exist")
        spec = dict(spec, created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        atomic_write_bytes(staged / SERVING, json.dumps(spec, indent=2, sort_keys=True, default=str).encode("utf-8"))
        _fsync_tree(staged)
        with self._lock():
            existing = [int(_VERSION.match(n).group(1)) for n in self.versions()]  # type: ignore[union-attr]
            taken = {p.name for p in self.versions_dir.iterdir()}
            number = max(existing, default=0) + 1
            while f"v{number:04d}" in taken:
                number += 1
            name = f"v{number:04d}"
            os.rename(staged, self.versions_dir / name)
            _fsync_dir(self.versions_dir)
            if make_current:
                atomic_write_bytes(self.root / CURRENT, (name + "\n").encode("utf-8"))
        return name

    def set_current(self, version: str) -> None:
        """Point ``CURRENT`` at a published version (a rollback is this too)."""
        if version not in self.versions():
            raise ConfigError(f"no published version {version!r}; have: {', '.join(self.versions()) or 'none'}")
        with self._lock():
            atomic_write_bytes(self.root / CURRENT, (version + "\n").encode("utf-8"))

    def discard(self, staged: str | Path) -> None:
        shutil.rmtree(staged, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))
