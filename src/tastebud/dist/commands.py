"""CLI glue: the ``--engine`` / ``--address`` / ``--workers`` options of ``tastebud train``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tastebud.core.errors import ConfigError
from tastebud.dist.session import check_engine_params

#: Models whose ``_fit`` runs on Ray when ``engine="ray"``.
RAY_MODELS = ("ials", "two_tower", "ncf", "gmf", "mlp", "neumf", "sasrec")


def engine_params(engine: str = "local", address: str | None = None, workers: int | None = None) -> dict[str, Any]:
    """Hyper-parameters selecting the training engine, to merge into a model's parameters.

    ``engine="local"`` adds nothing (the saved parameters stay those of a plain local fit unless
    the user asks otherwise); ``"ray"`` adds ``engine``, ``workers`` (default 2) and ``address``
    (None starts a local Ray instance). ``--address`` or ``--workers`` without ``--engine ray``
    is an error rather than silently ignored.
    """
    if engine == "local":
        if address is not None or workers is not None:
            raise ConfigError("--address and --workers need --engine ray")
        return {}
    workers = 2 if workers is None else workers
    check_engine_params("train", engine, workers, address)
    return {"engine": engine, "workers": int(workers), "address": address}


def check_supported(model_name: str, params: dict[str, Any]) -> None:
    """A clear error when ``--engine ray`` is asked of a model that has no Ray path."""
    if params.get("engine") == "ray" and model_name not in RAY_MODELS:
        raise ConfigError(f"model '{model_name}' has no Ray engine; --engine ray works with: {', '.join(RAY_MODELS)}")


#: Models that train from a Parquet directory with each Ray worker reading its own share.
PARQUET_MODELS = ("ials", "gmf", "mlp", "neumf", "two_tower", "sasrec")


def sharded_source(model_name: str, params: dict[str, Any], data: Path | None, **columns: Any) -> Any:
    """A :class:`~tastebud.dist.sharded.ParquetSource` when ``--data`` is a directory and ``--engine ray``, else None.

    Then ``tastebud train`` fits with :func:`tastebud.dist.sharded.fit_parquet` (no process holds
    all events) instead of loading the data into the CLI's process. ``columns``: user, item,
    rating, time column names.
    """
    if params.get("engine") != "ray" or data is None or not Path(data).is_dir():
        return None
    if model_name not in PARQUET_MODELS:
        raise ConfigError(
            f"model '{model_name}' cannot train from a Parquet directory on Ray; use one of: {', '.join(PARQUET_MODELS)}"
        )
    from tastebud.dist.sharded import ParquetSource

    return ParquetSource(str(data), **{k: v for k, v in columns.items() if v is not None})


__all__ = ["PARQUET_MODELS", "RAY_MODELS", "check_supported", "engine_params", "sharded_source"]
