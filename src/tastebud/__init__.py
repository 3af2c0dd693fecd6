"""tastebud: predict what a person will want next, from sparse, partial data."""

from __future__ import annotations

__version__ = "0.1.0"

from tastebud.core import progress
from tastebud.core.base import RatingModel, Recommender
from tastebud.core.errors import (
    ConfigError,
    DataError,
    FallbackWarning,
    ModelFormatError,
    NotFittedError,
    NotSupportedError,
    TastebudError,
    TrainingError,
    UnknownIdError,
    UnknownModelError,
)
from tastebud.core.persist import load_model
from tastebud.core.registry import get_model, list_models, register
from tastebud.core.results import Explanation, Recommendations
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions


def evaluate(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Run models over a protocol; returns a tidy DataFrame. See :func:`tastebud.eval.evaluate`."""
    from tastebud.eval.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


__all__ = [
    "ConfigError",
    "DataError",
    "Explanation",
    "FallbackWarning",
    "IdMap",
    "Interactions",
    "ModelFormatError",
    "NotFittedError",
    "NotSupportedError",
    "RatingModel",
    "Recommendations",
    "Recommender",
    "TastebudError",
    "TrainingError",
    "UnknownIdError",
    "UnknownModelError",
    "__version__",
    "evaluate",
    "get_model",
    "list_models",
    "load_model",
    "progress",
    "register",
]
