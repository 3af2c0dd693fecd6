"""The contract every registered model honours; a new model is picked up automatically.

The checks themselves ship in the package (:mod:`tastebud.testing`) so that a model written
outside tastebud runs the same ones; this file runs them over the registry. Each model's
``fast_params`` keep these fits to a fraction of a second.
"""

from __future__ import annotations

import pytest

import tastebud as tb
from tastebud import testing


def _available() -> list[str]:
    names = []
    for name in tb.list_models():
        try:
            tb.get_model(name)
        except tb.UnknownModelError:
            continue  # optional extra not installed
        names.append(name)
    return names


MODELS = _available()


@pytest.fixture(scope="module", params=MODELS)
def fitted(request, synth):
    return testing.check_fit_returns_self(tb.get_model(request.param), synth)


def test_registry_names_resolve():
    assert {"random", "popular", "bias"} <= set(MODELS)
    for name in MODELS:
        assert tb.get_model(name).name == name


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("check", testing.CLASS_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_class_checks(check, name):
    """Registered under its name, parameters round-trip, a valid search space, NotFittedError before fit."""
    check(tb.get_model(name))


@pytest.mark.parametrize("check", testing.FITTED_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_fitted_checks(check, fitted, synth):
    """Batch equals loop, exclusions and candidates, unknown ids and bad k, save/load, a seed, history
    fold-in, ratings in scale, explanations, the index-level API equals the external-id API."""
    if check is testing.check_history_fold_in and not fitted.supports_history:
        pytest.skip(f"{fitted.name} does not recommend from a history")
    check(fitted, synth)
