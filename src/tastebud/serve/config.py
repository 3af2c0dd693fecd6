"""The service's settings: :class:`ServeConfig`, read from the environment or given in code."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tastebud.serve.registry import is_model_folder


@dataclass
class ServeConfig:
    """Service settings. ``token`` guards writes and admin (generated and logged when None);
    ``read_token``, when set, guards reads too (either token then works for reads)."""

    token: str | None = None
    read_token: str | None = None
    events: str | None = None
    max_body_bytes: int = 1_048_576
    max_events: int = 1000
    max_history: int = 10_000
    omp_threads: int = 1
    control: str | None = None  # fleet control file when several workers serve (serve/fleet.py)

    @classmethod
    def from_env(cls, **overrides: Any) -> ServeConfig:
        cfg = cls(
            token=os.environ.get("TASTEBUD_TOKEN") or None,
            read_token=os.environ.get("TASTEBUD_READ_TOKEN") or None,
            events=os.environ.get("TASTEBUD_EVENTS") or None,
            control=os.environ.get("TASTEBUD_SERVE_CONTROL") or None,
        )
        if os.environ.get("TASTEBUD_MAX_BODY"):
            cfg.max_body_bytes = int(os.environ["TASTEBUD_MAX_BODY"])
        for key, value in overrides.items():
            if value is not None:
                setattr(cfg, key, value)
        return cfg


def default_events_url(source: Path) -> str:
    """The event store beside what is served when ``events`` is not set: a SQLite file next to a
    single model folder, or inside a registry folder."""
    if is_model_folder(source):
        return str(source.parent / f"{source.name}.events.db")
    return str(source / "events.db")


__all__ = ["ServeConfig", "default_events_url"]
