"""Engines by name, for the one release that still takes ``engine="ray"`` as a hyper-parameter.

New code hands ``fit`` an engine object (``model.fit(data, engine=tastebud.scale.RayEngine(workers=4))``);
only the deprecated ``engine`` / ``workers`` / ``address`` hyper-parameters name one
(:meth:`tastebud.Recommender.legacy_engine`). The table below is an allowlist of ``"module:class"``
strings, imported on demand, so the core never imports the scale layer.
"""

from __future__ import annotations

import importlib
from typing import Any

from tastebud.core.errors import ConfigError

#: Scale-out engines by the name the deprecated ``engine`` hyper-parameter gives them: name -> "module:class".
ENGINES: dict[str, str] = {"ray": "tastebud.scale.engine:RayEngine"}


def legacy_engine(owner: str, given: dict[str, Any]) -> Any:
    """The engine the deprecated ``engine`` / ``workers`` / ``address`` hyper-parameters in ``given``
    ask for (None: train here), checked: a ConfigError naming ``owner`` and the parameter."""
    if not given:
        return None
    return engine_named(
        owner, given.get("engine", "local"), workers=given.get("workers", 2), address=given.get("address")
    )


def engine_named(owner: str, name: Any, **options: Any) -> Any:
    """The engine ``engine=name`` meant, built with ``options`` (None for ``"local"``, whose options are
    still checked)."""
    if name == "local":
        workers, address = options.get("workers", 2), options.get("address")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"{owner}: workers must be a positive integer, got {workers!r}")
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ConfigError(
                f"{owner}: address must be a Ray address such as 'ray://host:10001' or 'auto', got {address!r}"
            )
        return None
    if not isinstance(name, str) or name not in ENGINES:
        raise ConfigError(f"{owner}: engine must be 'local' or {' or '.join(map(repr, ENGINES))}, got {name!r}")
    module, _, attr = ENGINES[name].partition(":")
    try:
        return getattr(importlib.import_module(module), attr)(**options)
    except ConfigError as exc:
        raise ConfigError(f"{owner}: {exc}") from None


__all__ = ["ENGINES", "engine_named", "legacy_engine"]
