"""Search-space distributions: what a hyper-parameter search may try for each parameter.

Every model declares ``search_space`` beside its parameters (a ClassVar mapping parameter names to
these objects). They are plain, typed descriptions with no dependency: :mod:`tastebud.tune` turns
them into Optuna suggestions, and ``sample`` draws a point with a NumPy generator (the contract
tests use it to check that every point builds a valid model).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tastebud.core.errors import ConfigError

#: values a categorical choice may take: they must survive JSON and Optuna's storage as they are.
Choice = None | bool | int | float | str


class Dist:
    """Base of the distributions below."""

    def suggest(self, trial: Any, name: str) -> Any:
        """The value an Optuna ``trial`` suggests for ``name``."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> Any:
        """A value drawn with ``rng`` (no Optuna needed)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Dist):
    """An integer in [low, high]; ``log=True`` draws uniformly in log space (sizes, counts)."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.high or (self.log and self.low < 1):
            raise ConfigError(f"Int({self.low}, {self.high}, log={self.log}) is not a valid range")

    def suggest(self, trial: Any, name: str) -> int:
        return int(trial.suggest_int(name, self.low, self.high, log=self.log))

    def sample(self, rng: np.random.Generator) -> int:
        if self.log:
            return int(
                min(self.high, max(self.low, round(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))))
            )
        return int(rng.integers(self.low, self.high + 1))


@dataclass(frozen=True)
class Float(Dist):
    """A float in [low, high], drawn uniformly (rates, shares, dropout)."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.high or (self.log and self.low <= 0):
            raise ConfigError(f"{type(self).__name__}({self.low}, {self.high}) is not a valid range")

    def suggest(self, trial: Any, name: str) -> float:
        return float(trial.suggest_float(name, self.low, self.high, log=self.log))

    def sample(self, rng: np.random.Generator) -> float:
        if self.log:
            return float(min(self.high, max(self.low, math.exp(rng.uniform(math.log(self.low), math.log(self.high))))))
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class LogFloat(Float):
    """A positive float in [low, high], uniform in log space (regularisation, learning rates)."""

    log: bool = True


@dataclass(frozen=True)
class Categorical(Dist):
    """One of a few fixed choices (None, bool, int, float or str)."""

    choices: tuple[Choice, ...]

    def __init__(self, choices: Sequence[Choice]) -> None:
        choices = tuple(choices)
        if not choices or not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise ConfigError(f"Categorical needs a non-empty list of None/bool/int/float/str, got {choices!r}")
        object.__setattr__(self, "choices", choices)

    def suggest(self, trial: Any, name: str) -> Choice:
        return trial.suggest_categorical(name, list(self.choices))

    def sample(self, rng: np.random.Generator) -> Choice:
        return self.choices[int(rng.integers(len(self.choices)))]


def sample_space(space: Mapping[str, Dist], rng: np.random.Generator) -> dict[str, Any]:
    """One point of ``space`` drawn with ``rng``."""
    return {name: dist.sample(rng) for name, dist in space.items()}


__all__ = ["Categorical", "Dist", "Float", "Int", "LogFloat", "sample_space"]
