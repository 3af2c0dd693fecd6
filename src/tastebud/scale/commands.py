"""CLI glue: the ``--engine`` / ``--address`` / ``--workers`` options of ``tastebud train``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tastebud.core.errors import ConfigError, NotSupportedError
from tastebud.scale.session import check_engine_params


def engine_params(engine: str = "local", address: str | None = None, workers: int | None = None) -> dict[str, Any]:
    """The engine options of ``tastebud train``, checked: ``{}`` for ``--engine local``, else
    ``engine``, ``workers`` (default 2) and ``address`` (None starts a local Ray instance).

    They choose where the fit runs (:func:`engine_for`), not what the model is: they are not
    hyper-parameters and the saved model does not record them. ``--address`` or ``--workers``
    without ``--engine ray`` is an error rather than silently ignored.
    """
    if engine == "local":
        if address is not None or workers is not None:
            raise ConfigError("--address and --workers need --engine ray")
        return {}
    workers = 2 if workers is None else workers
    check_engine_params("train", engine, workers, address)
    return {"engine": engine, "workers": int(workers), "address": address}


def engine_for(options: dict[str, Any]) -> Any:
    """The :class:`~tastebud.scale.engine.RayEngine` that :func:`engine_params` describes (None: train here)."""
    if options.get("engine") != "ray":
        return None
    from tastebud.scale.engine import RayEngine

    return RayEngine(workers=int(options["workers"]), address=options.get("address"))


def check_supported(model_name: str, options: dict[str, Any]) -> None:
    """A clear error when ``--engine ray`` is asked of a model without ``"ray"`` in its ``scale_out``."""
    if options.get("engine") != "ray":
        return
    from tastebud.core.registry import get_model
    from tastebud.scale.engine import check_scale_out, supporting

    try:
        check_scale_out(get_model(model_name), "ray")
    except NotSupportedError:
        raise ConfigError(
            f"model '{model_name}' has no Ray engine; --engine ray works with: {', '.join(supporting('ray'))}"
        ) from None


def sharded_source(model_name: str, options: dict[str, Any], data: Path | None, **columns: Any) -> Any:
    """A :class:`~tastebud.data.parquet.ParquetSource` when ``--data`` is a directory and ``--engine ray``, else None.

    Then ``tastebud train`` fits with :func:`tastebud.scale.sharded.fit_parquet` (no process holds
    all events) instead of loading the data into the CLI's process. ``columns``: user, item,
    rating, time column names.
    """
    if options.get("engine") != "ray" or data is None or not Path(data).is_dir():
        return None
    from tastebud.core.registry import get_model
    from tastebud.scale.engine import supporting

    if "parquet" not in get_model(model_name).scale_out:
        raise ConfigError(
            f"model '{model_name}' cannot train from a Parquet directory on Ray; use one of: "
            f"{', '.join(supporting('parquet'))}"
        )
    from tastebud.data.parquet import ParquetSource

    return ParquetSource(str(data), **{k: v for k, v in columns.items() if v is not None})


__all__ = ["check_supported", "engine_for", "engine_params", "sharded_source"]
