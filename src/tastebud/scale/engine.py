"""Choosing where a model trains: ``model.fit(data, engine=RayEngine(workers=4))``.

The engine is an argument of the fit call (and of ``tastebud train --engine ray``), not a
hyper-parameter: where a model was trained does not change what it computes, so it is not saved
with it. A model says what it supports in its ``scale_out`` capability; the torch models train
data-parallel through the injection points of their training loop
(:class:`tastebud.models._torch.TrainHooks`, filled in by :mod:`tastebud.scale.ray_train`), iALS
solves row blocks as Ray tasks (:mod:`tastebud.scale.ray_ials`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tastebud.core.base import Recommender
from tastebud.core.errors import ConfigError, NotSupportedError
from tastebud.data.interactions import Interactions


@dataclass(frozen=True)
class RayEngine:
    """Train on Ray (https://docs.ray.io): ``workers`` processes, on the cluster at ``address``
    (None: a local Ray instance started for the fit). ``use_gpu`` None: one GPU per worker when the
    cluster has enough, else CPU (torch models only)."""

    workers: int = 2
    address: str | None = None
    use_gpu: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be a positive integer, got {self.workers!r}")
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise ConfigError(
                f"address must be a Ray address such as 'ray://host:10001' or 'auto', got {self.address!r}"
            )

    def train(self, model: Recommender, data: Interactions) -> None:
        """The body of ``model.fit(data, engine=self)`` once the base class has checked and recorded the data."""
        check_scale_out(model, "ray")
        from tastebud.models._torch import TorchModel

        if isinstance(model, TorchModel):
            from tastebud.scale.ray_train import fit_torch_ray

            fit_torch_ray(model, data, self.workers, self.address, self.use_gpu)
        else:
            from tastebud.scale.ray_ials import fit_ials_ray

            fit_ials_ray(model, data, self.workers, self.address)  # type: ignore[arg-type]

    def fit_parquet(self, model: Recommender, source: Any) -> Recommender:
        """Fit ``model`` from Parquet files, each worker reading only its share (:mod:`tastebud.scale.sharded`)."""
        from tastebud.scale.sharded import fit_parquet

        return fit_parquet(model, source, self.workers, self.address)


def check_scale_out(model: Recommender | type[Recommender], how: str) -> None:
    """A NotSupportedError naming the model when its ``scale_out`` lacks ``how`` ("ray" or "parquet")."""
    cls = model if isinstance(model, type) else type(model)
    if how not in cls.scale_out:
        what = {"ray": "train on Ray", "parquet": "train from sharded Parquet files on Ray"}[how]
        raise NotSupportedError(
            f"model '{cls.name or cls.__name__}' cannot {what}; use one of: {', '.join(supporting(how))} "
            "(see docs/scaling.md)"
        )


def supporting(how: str) -> list[str]:
    """Names of the installed models whose ``scale_out`` includes ``how`` (for error messages)."""
    from tastebud.core.errors import TastebudError
    from tastebud.core.registry import get_model, list_models

    names = []
    for name in list_models():
        try:
            if how in get_model(name).scale_out:
                names.append(name)
        except TastebudError:  # an optional extra is missing
            continue
    return names


def fit_distributed(model: Recommender, data: Interactions | str | Path | Any, engine: RayEngine) -> Recommender:
    """``model`` fitted with ``engine``: in-memory ``Interactions`` on its workers, or a Parquet
    directory / :class:`~tastebud.data.parquet.ParquetSource` read in shares. What ``tastebud train
    --engine ray`` calls."""
    if isinstance(data, Interactions):
        return model.fit(data, engine=engine)
    return engine.fit_parquet(model, data)


__all__ = ["RayEngine", "check_scale_out", "fit_distributed"]
