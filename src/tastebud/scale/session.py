"""Connecting to Ray: an existing cluster by address, or a local instance started for the job."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tastebud.core.errors import ConfigError


def require_ray() -> Any:
    """The ``ray`` module, or a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is installed in the test environment
        raise ConfigError("engine='ray' needs Ray: pip install 'tastebud[scale]'") from None
    return ray


def check_engine_params(owner: str, engine: Any, workers: Any, address: Any) -> None:
    """Validate the shared ``engine`` / ``workers`` / ``address`` hyper-parameters."""
    if engine not in ("local", "ray"):
        raise ConfigError(f"{owner}: engine must be 'local' or 'ray', got {engine!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"{owner}: workers must be a positive integer, got {workers!r}")
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ConfigError(
            f"{owner}: address must be a Ray address such as 'ray://host:10001' or 'auto', got {address!r}"
        )


@contextmanager
def ray_session(address: str | None = None, workers: int = 2) -> Iterator[Any]:
    """Use the running Ray instance, connect to ``address``, or start a local one with ``workers`` CPUs.

    A local instance started here is shut down on exit; a connection to an existing cluster is
    left running (it is not ours to stop).
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    if address is None:
        ray.init(num_cpus=int(workers), include_dashboard=False, log_to_driver=False, configure_logging=False)
    else:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()
