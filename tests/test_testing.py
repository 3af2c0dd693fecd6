"""``tastebud.testing``: a model written outside tastebud runs the contract, and a broken one fails
the check that names what it broke."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import tastebud as tb
from tastebud import testing
from tastebud.core import registry
from tastebud.core.space import Dist, Float


class ItemMean(tb.Recommender):
    """What a user writes in one file: every item scored by its shrunk mean value, the same for
    everyone (so a history scores the same way)."""

    supports_history = True
    fast_params: ClassVar[dict[str, Any]] = {"shrink": 2.0}
    search_space: ClassVar[dict[str, Dist]] = {"shrink": Float(0.0, 20.0)}

    def __init__(self, shrink: float = 5.0) -> None:
        self.shrink = shrink

    def _validate_params(self) -> None:
        if self.shrink < 0:
            raise tb.ConfigError(f"ItemMean: shrink must be >= 0, got {self.shrink!r}")

    def _fit(self, data: tb.Interactions) -> None:
        X = self.user_items_.tocsc()
        sums, counts = np.asarray(X.sum(axis=0)).ravel(), np.diff(X.indptr)
        self.item_means_ = (sums / (counts + self.shrink)).astype(np.float32)

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        means = self.item_means_ if item_idx is None else self.item_means_[item_idx]
        return np.tile(means, (len(user_idx), 1))

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        return self.item_means_.copy()


class ShowsSeen(ItemMean):
    """Broken: its recommend lists what people have already seen."""

    def recommend(self, users: Any, k: int = 10, exclude_seen: bool = True, **kwargs: Any) -> tb.Recommendations:
        return super().recommend(users, k, exclude_seen=False, **kwargs)


class Forgetful(ItemMean):
    """Broken: its learned state lacks the trailing underscore, so saving leaves it behind."""

    def _fit(self, data: tb.Interactions) -> None:
        super()._fit(data)
        self.means = self.__dict__.pop("item_means_")

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        self.item_means_ = getattr(self, "means", np.zeros(self.n_items, np.float32))
        return super()._score(user_idx, item_idx)


class Unseeded(ItemMean):
    """Broken: draws noise without a random_state, so two fits disagree."""

    def _fit(self, data: tb.Interactions) -> None:
        super()._fit(data)
        self.item_means_ += np.random.default_rng().normal(0, 1, self.n_items).astype(np.float32)


class Bare(tb.Recommender):
    """Broken: no search_space of its own (Recommender's default does not count)."""

    def _fit(self, data: tb.Interactions) -> None:
        self.scores_ = np.zeros(self.n_items, np.float32)

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        return np.zeros((len(user_idx), self.n_items if item_idx is None else len(item_idx)), np.float32)


@pytest.fixture
def sandbox(monkeypatch):
    """Models registered in a test leave tastebud's registry as it was."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


def test_a_user_model_passes_the_contract(sandbox, synth):
    tb.register("test_item_mean")(ItemMean)
    fitted = testing.check_model(ItemMean, synth)
    assert isinstance(fitted, ItemMean) and fitted.users_ is not None
    assert testing.check_model("test_item_mean").get_params() == {"shrink": 2.0}  # by name, on the built-in data


def test_the_registry_is_left_as_it_was():
    assert "test_item_mean" not in tb.list_models()


@pytest.mark.parametrize(
    ("cls", "check", "message"),
    [
        (ShowsSeen, "check_exclusions_and_candidates", "is recommended items they have seen"),
        (Forgetful, "check_save_load_identical", "the loaded model recommends"),
        (Unseeded, "check_deterministic_under_seed", "refitted"),
    ],
    ids=["seen-items", "save-loses-state", "unseeded"],
)
def test_a_broken_model_fails_the_check_that_names_it(sandbox, synth, cls, check, message):
    tb.register(f"test_{cls.__name__.lower()}")(cls)
    with pytest.raises(AssertionError, match=rf"^{check} failed for test_{cls.__name__.lower()}: .*{message}"):
        testing.check_model(cls, synth)
    fitted = cls(**cls.fast_params).fit(synth)
    with pytest.raises(testing.ContractError, match=f"^{check} failed"):  # the check alone says the same
        getattr(testing, check)(fitted, synth)


def test_class_checks_fail_with_their_names(sandbox):
    with pytest.raises(AssertionError, match="^check_registered failed for Bare: .*@tastebud.register"):
        testing.check_registered(Bare)
    tb.register("test_bare")(Bare)
    testing.check_registered(Bare)
    with pytest.raises(AssertionError, match="^check_search_space failed for test_bare: test_bare declares no"):
        testing.check_search_space(Bare)
    testing.check_search_space(ShowsSeen)  # a subclass of a model that declares one is covered by it


def test_an_error_inside_a_check_names_the_check(sandbox, synth):
    tb.register("test_item_mean")(ItemMean)
    fitted = testing.check_fit_returns_self(ItemMean, synth)
    del fitted.item_means_
    with pytest.raises(
        AssertionError, match="^check_batch_equals_loop failed for test_item_mean: raised AttributeError"
    ):
        testing.check_batch_equals_loop(fitted, synth)


def test_the_package_does_not_need_pytest():
    """pytest is a test extra: importing tastebud.testing must not import it."""
    code = "import sys, tastebud.testing; sys.exit('pytest' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_architecture_page_example_passes_the_contract(sandbox):
    """docs/architecture.md's one-file model, run as written: it registers and passes check_model."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = page.split("## Adding a model in one file", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "check_model(CoOccurrence)" in code
    exec(compile(code, "docs/architecture.md", "exec"), {"__name__": "architecture_example"})
    assert tb.get_model("cooccur").supports_similar
