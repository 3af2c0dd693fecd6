"""Error types a caller can catch. Messages say what was wrong and what to do."""

from __future__ import annotations


class TastebudError(Exception):
    """Base class of every error tastebud raises on purpose."""


class DataError(TastebudError, ValueError):
    """Input data is malformed: missing columns, bad values, bad lines."""


class ConfigError(TastebudError, ValueError):
    """A hyper-parameter or option has a value the model cannot use."""


class UnknownIdError(TastebudError, KeyError):
    """A user or item id is not in the model's vocabulary."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownModelError(TastebudError, KeyError):
    """No model is registered under that name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotFittedError(TastebudError, RuntimeError):
    """The model was used before `fit` (or `load`)."""


class NotSupportedError(TastebudError, NotImplementedError):
    """The model cannot do this (for example `predict` on a ranking-only model)."""


class ModelFormatError(TastebudError, ValueError):
    """A saved model folder is corrupt, truncated, tampered with, or from a newer format."""


class TrainingError(TastebudError, RuntimeError):
    """Training diverged (NaN or inf loss); the message names the hyper-parameter to lower."""


class FallbackWarning(UserWarning):
    """A documented fallback answered instead of the model: a rating for an unknown user or item
    predicted from the biases the model has (the global mean at worst)."""
