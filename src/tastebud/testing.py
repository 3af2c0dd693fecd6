"""The model contract as plain functions, so a model written outside tastebud runs the same checks.

Every registered model honours one contract (``docs/architecture.md``): ``fit`` returns the model,
a batch equals a loop, seen items and candidate lists are honoured, unknown ids raise, a saved
model recommends exactly what it did, a seed fixes the result, a history folds in, the index-level
API equals the external-id API, and the search space and parameters are sound. tastebud's own
``tests/test_contract.py`` is a parametrisation over the registry of these same functions.

For your own model class (registered with ``@tastebud.register("name")`` so that saved folders
load)::

    import tastebud.testing

    tastebud.testing.check_model(MyModel)  # every check, on a small synthetic data set

Each ``check_*`` function can also be called alone; a failure is an ``AssertionError`` whose
message starts with the check's name and the model's. No pytest needed (it is a test extra).
"""

from __future__ import annotations

import contextlib
import functools
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from tastebud import load_model
from tastebud.core.base import RatingModel, Recommender
from tastebud.core.errors import (
    ConfigError,
    DataError,
    FallbackWarning,
    NotFittedError,
    NotSupportedError,
    UnknownIdError,
)
from tastebud.core.registry import get_model
from tastebud.core.space import Dist, sample_space
from tastebud.data.interactions import Interactions
from tastebud.data.synthetic import generate

F = TypeVar("F", bound=Callable[..., Any])

#: An id no vocabulary holds (the unknown-id checks ask for it).
UNKNOWN_USER = "no-such-user"
UNKNOWN_ITEM = "no-such-item"


def tiny_data(explicit: bool = True) -> Interactions:
    """The contract's data: 80 users, 60 items, 2,400 interactions with ratings (or implicit
    events), timestamps and features; built in a few milliseconds, the same on every call."""
    return generate(n_users=80, n_items=60, n_interactions=2400, explicit=explicit, random_state=0)


def _label(model: Any) -> str:
    cls = model if isinstance(model, type) else type(model)
    return getattr(cls, "name", "") or cls.__name__


def _check(fn: F) -> F:
    """A check's failure (an assertion or any error the model raised) names the check and the model."""

    @functools.wraps(fn)
    def wrapper(model: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(model, *args, **kwargs)
        except ContractError:
            raise
        except AssertionError as exc:
            raise ContractError(f"{fn.__name__} failed for {_label(model)}: {exc}") from exc
        except Exception as exc:
            raise ContractError(
                f"{fn.__name__} failed for {_label(model)}: raised {type(exc).__name__}: {exc}"
            ) from exc

    return wrapper  # type: ignore[return-value]


class ContractError(AssertionError):
    """A model broke the contract; the message names the check that caught it."""


@contextlib.contextmanager
def _raises(kind: type[BaseException], match: str | None = None) -> Iterator[None]:
    """What ``pytest.raises`` does, without pytest (a dependency of the tests only)."""
    try:
        yield
    except kind as exc:
        if match is not None and not re.search(match, str(exc)):
            raise AssertionError(f"{kind.__name__} raised, but {str(exc)!r} does not match {match!r}") from exc
        return
    raise AssertionError(f"did not raise {kind.__name__}")


def _close(a: Any, b: Any, what: str, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


def _resolve(model: type[Recommender] | str) -> type[Recommender]:
    return get_model(model) if isinstance(model, str) else model


def make(model: type[Recommender] | str, **params: Any) -> Recommender:
    """An unfitted model with its ``fast_params`` (the quick fit the contract runs), updated by ``params``."""
    cls = _resolve(model)
    return cls(**{**cls.fast_params, **params})


def users_of(data: Interactions, n: int = 7) -> list[Any]:
    """Up to ``n`` user ids spread over the data (the users the checks ask about)."""
    return [data.users.ids[i].item() for i in range(0, data.n_users, max(1, data.n_users // n))][:n]


def _listed(model: Recommender, idx_row: np.ndarray, val_row: np.ndarray) -> tuple[list[Any], list[float]]:
    keep = idx_row >= 0
    return model.items_.to_ids(idx_row[keep]).tolist(), val_row[keep].tolist()


# ---------------------------------------------------------------------------- checks on the class
@_check
def check_registered(cls: type[Recommender]) -> None:
    """The class is in the registry under its name (``tastebud.load_model`` finds it by that name)."""
    assert cls.name, "the class has no registry name: decorate it with @tastebud.register('name')"
    assert get_model(cls.name) is cls, f"get_model({cls.name!r}) is not this class"


@_check
def check_params_round_trip(cls: type[Recommender], params: dict[str, Any] | None = None) -> None:
    """``clone`` copies the hyper-parameters exactly and none of the learned state."""
    model = make(cls, **(params or {}))
    clone = model.clone()
    assert clone.get_params() == model.get_params(), "clone().get_params() differs from get_params()"
    assert not hasattr(clone, "user_items_"), "an unfitted clone holds fitted state"


@_check
def check_search_space(cls: type[Recommender], random_state: int = 0, samples: int = 8) -> None:
    """The class declares what tune may try (an explicit, possibly empty, ClassVar) over real
    ``__init__`` parameters, and any sampled point builds a model that passes its own checks."""
    rng = np.random.default_rng(random_state)
    declared = [c for c in cls.__mro__ if "search_space" in vars(c) and c not in (Recommender, RatingModel)]
    assert declared, f"{cls.name} declares no search_space (use {{}} with a comment when nothing is worth tuning)"
    space = cls.search_space
    assert set(space) <= set(cls().get_params()), f"{cls.name}: search_space names unknown parameters"
    assert all(isinstance(d, Dist) for d in space.values()), "search_space values must be tastebud.core.space.Dist"
    for _ in range(samples):
        point = sample_space(space, rng)
        cls(**point)._check_params()
        cls(**{**cls.fast_params, **point})._check_params()


@_check
def check_not_fitted(cls: type[Recommender], params: dict[str, Any] | None = None) -> None:
    """An unfitted model says so (NotFittedError), never a confusing AttributeError."""
    with _raises(NotFittedError):
        make(cls, **(params or {})).recommend([1], k=3)


@_check
def check_fit_returns_self(
    cls: type[Recommender], data: Interactions, params: dict[str, Any] | None = None
) -> Recommender:
    """``fit`` returns the model itself (so ``Model().fit(data).recommend(...)`` chains); the fitted model."""
    model = make(cls, **(params or {}))
    assert model.fit(data) is model, "fit(data) did not return the model itself"
    return model


# ---------------------------------------------------------------------------- checks on a fitted model
@_check
def check_batch_equals_loop(model: Recommender, data: Interactions) -> None:
    """Recommending for many users at once gives each the list they get alone."""
    users = users_of(data)
    batch = model.recommend(users, k=5)
    for row, user in enumerate(users):
        one = model.recommend([user], k=5)
        assert one.items_of(0) == batch.items_of(row), (
            f"user {user!r}: alone {one.items_of(0)}, in a batch {batch.items_of(row)}"
        )
        _close(one.scores_of(0), batch.scores_of(row), f"user {user!r}: scores alone and in a batch")


@_check
def check_exclusions_and_candidates(model: Recommender, data: Interactions) -> None:
    """Seen items are left out, lists hold no duplicates and are best first, candidate lists restrict,
    and without exclusions every item can be listed."""
    users = users_of(data)
    recs = model.recommend(users, k=10)
    for row, user in enumerate(users):
        seen = set(data.items.to_ids(data.matrix[data.users.index([user])[0]].indices).tolist())
        got = recs.items_of(row)
        assert not seen & set(got), f"user {user!r} is recommended items they have seen: {sorted(seen & set(got))}"
        assert len(got) == len(set(got)), f"user {user!r}: a list repeats items: {got}"
        scores = recs.scores_of(row)
        assert scores == sorted(scores, reverse=True), f"user {user!r}: scores are not best first: {scores}"
    allowed = [data.items.ids[i].item() for i in range(0, data.n_items, 3)]
    restricted = model.recommend(users, k=5, items=allowed)
    for row in range(len(users)):
        outside = set(restricted.items_of(row)) - set(allowed)
        assert not outside, f"items outside the candidate list: {sorted(outside)}"
    with_seen = model.recommend(users[:1], k=data.n_items, exclude_seen=False)
    assert len(with_seen.items_of(0)) == data.n_items, (
        f"exclude_seen=False listed {len(with_seen.items_of(0))} of {data.n_items} items"
    )


@_check
def check_unknown_ids_and_bad_k(model: Recommender, data: Interactions | None = None) -> None:
    """An unknown user is an UnknownIdError and a non-positive ``k`` a ConfigError (``data`` unused:
    every fitted check takes the model and its data)."""
    with _raises(UnknownIdError, match="unknown user"):
        model.recommend([UNKNOWN_USER], k=3)
    with _raises(ConfigError, match="k must be"):
        model.recommend([model.users_.ids[0].item()], k=0)


@_check
def check_save_load_identical(model: Recommender, data: Interactions, directory: str | Path | None = None) -> None:
    """A saved and loaded model is the same class and recommends (and predicts) exactly as before.

    ``directory``: where to save (a temporary folder, removed after, when None)."""
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="tastebud-contract-") as tmp:
            _save_load(model, data, Path(tmp) / "m")
    else:
        _save_load(model, data, Path(directory))


def _save_load(model: Recommender, data: Interactions, path: Path) -> None:
    users = users_of(data)
    model.save(path)
    loaded = load_model(str(path))
    assert type(loaded) is type(model), f"loaded a {type(loaded).__name__}, saved a {type(model).__name__}"
    a, b = model.recommend(users, k=8), loaded.recommend(users, k=8)
    for row, user in enumerate(users):
        assert a.items_of(row) == b.items_of(row), (
            f"user {user!r}: the loaded model recommends {b.items_of(row)}, the saved one {a.items_of(row)}"
        )
        _close(a.scores_of(row), b.scores_of(row), f"user {user!r}: scores before saving and after loading")
    if model.predicts_ratings:
        items = [data.items.ids[0].item()] * len(users)
        _close(model.predict(users, items), loaded.predict(users, items), "predictions after loading", atol=0)


@_check
def check_deterministic_under_seed(model: Recommender, data: Interactions) -> None:
    """Refitting a clone (same hyper-parameters, so the same ``random_state``) gives the same lists."""
    users = users_of(data)
    again = model.clone().fit(data)
    a, b = model.recommend(users, k=5), again.recommend(users, k=5)
    for row, user in enumerate(users):
        assert a.items_of(row) == b.items_of(row), f"user {user!r}: {a.items_of(row)}, refitted {b.items_of(row)}"


@_check
def check_history_fold_in(model: Recommender, data: Interactions) -> None:
    """A history recommends without refitting, ignoring unknown items and naming them in ``warnings``,
    and never lists the history's items. Nothing to check when ``supports_history`` is False."""
    if not model.supports_history:
        return
    history = [data.items.ids[i].item() for i in (0, 3, 5, 8, 13) if i < data.n_items]
    recs = model.recommend_for_history(history + [UNKNOWN_ITEM], k=5)
    assert recs.warnings and UNKNOWN_ITEM in recs.warnings[0], f"no warning names the unknown item: {recs.warnings}"
    got = recs.items_of(0)
    assert len(got) == 5, f"asked for 5 items from a history, got {got}"
    assert not set(got) & set(history), f"recommended items of the history: {sorted(set(got) & set(history))}"


@_check
def check_predict_in_scale(model: Recommender, data: Interactions) -> None:
    """A rating model predicts finite ratings inside the rating scale, unknown ids included (a
    fallback, never NaN); any other model refuses ``predict`` with NotSupportedError."""
    if not model.predicts_ratings:
        with _raises(NotSupportedError):
            model.predict([data.users.ids[0].item()], [data.items.ids[0].item()])
        return
    n = min(50, len(data))
    users = data.users.to_ids(data.user_idx[:n]).tolist()
    items = data.items.to_ids(data.item_idx[:n]).tolist()
    pred = model.predict(users, items)
    assert pred.shape == (n,), f"predict gave shape {pred.shape} for {n} pairs"
    assert np.isfinite(pred).all(), "predict gave NaN or infinite ratings"
    if data.rating_scale:
        lo, hi = data.rating_scale
        assert pred.min() >= lo and pred.max() <= hi, f"ratings {pred.min()}..{pred.max()} outside {lo}..{hi}"
    with warnings.catch_warnings():  # the FallbackWarning is the documented behaviour, not news here
        warnings.simplefilter("ignore", FallbackWarning)
        unknown = model.predict([UNKNOWN_USER], [items[0]])
    assert np.isfinite(unknown).all(), "an unknown user's prediction is not finite"


@_check
def check_explanations(model: Recommender, data: Interactions) -> None:
    """``explain=True`` gives one explanation with text per recommended item."""
    recs = model.recommend(users_of(data, 2), k=3, explain=True)
    assert recs.explanations is not None, "explain=True gave no explanations"
    for row in recs.explanations:
        assert len(row) == 3, f"{len(row)} explanations for 3 items"
        assert all(e.text for e in row), "an explanation has no text"


@_check
def check_index_api(model: Recommender, data: Interactions) -> None:
    """The index-level API (what serve, eval, lab, index and the scale layer call) gives exactly what
    the external-id methods give: the same scores, lists, explanations, similar items and ratings."""
    users = users_of(data)
    uidx = model.users_.index(users)
    items = [data.items.ids[i].item() for i in range(0, data.n_items, 4)]
    iidx = model.items_.index(items)
    np.testing.assert_array_equal(model.score_rows(uidx), model.score(users), err_msg="score_rows vs score")
    np.testing.assert_array_equal(
        model.score_rows(uidx, iidx), model.score(users, items), err_msg="score_rows vs score, with items"
    )
    for exclude_seen, allowed in ((True, None), (False, None), (True, iidx[::-1])):
        idx, val = model.rank_rows(uidx, 6, exclude_seen=exclude_seen, allowed=allowed)
        cand = None if allowed is None else model.items_.to_ids(allowed).tolist()
        recs = model.recommend(users, k=6, exclude_seen=exclude_seen, items=cand)
        for row in range(len(users)):
            assert _listed(model, idx[row], val[row]) == (recs.items_of(row), recs.scores_of(row)), (
                f"rank_rows differs from recommend (exclude_seen={exclude_seen}, candidates={cand is not None})"
            )
    texts = [[e.text for e in model.explain_idx(int(u), idx[row])] for row, u in enumerate(uidx)]
    explained = model.recommend(users, k=6, items=cand, explain=True).explanations
    assert texts == [[e.text for e in row] for row in explained], "explain_idx differs from recommend(explain=True)"
    if model.supports_history:
        history = model.items_.index(items[:4])
        i, v = model.rank_history_idx(history, k=5, allowed=iidx)
        recs = model.recommend_for_history(items[:4], k=5, candidates=items)
        assert _listed(model, i, v) == (recs.items_of(0), recs.scores_of(0)), (
            "rank_history_idx differs from recommend_for_history"
        )
        scores = model.score_history_idx(history)
        np.testing.assert_array_equal(
            v[i >= 0], scores[i[i >= 0]], err_msg="rank_history_idx scores vs score_history_idx"
        )
    similar = None
    if model.supports_similar:
        try:
            similar = model.similar_items(items[:3], k=5)
        except NotSupportedError:  # a blend whose members have no similarity
            pass
    if similar is not None:
        i, v = model.similar_rows(iidx[:3], k=5)
        for row in range(3):
            assert _listed(model, i[row], v[row]) == (similar.items_of(row), similar.scores_of(row)), (
                "similar_rows differs from similar_items"
            )
    if model.predicts_ratings:
        pair_items = model.items_.index([items[r % len(items)] for r in range(len(users))])
        np.testing.assert_array_equal(
            model.predict_idx(uidx, pair_items),
            model.predict(users, model.items_.to_ids(pair_items).tolist()),
            err_msg="predict_idx vs predict",
        )
    with _raises(DataError, match="user_idx holds indices outside"):
        model.rank_rows([model.n_users], 3)


#: The checks of a class, in the order :func:`check_model` runs them (each takes the class).
CLASS_CHECKS: tuple[Callable[..., Any], ...] = (
    check_registered,
    check_params_round_trip,
    check_search_space,
    check_not_fitted,
)
#: The checks of a fitted model, in the order :func:`check_model` runs them (each takes the model
#: and the data it was fitted on).
FITTED_CHECKS: tuple[Callable[..., Any], ...] = (
    check_batch_equals_loop,
    check_exclusions_and_candidates,
    check_unknown_ids_and_bad_k,
    check_save_load_identical,
    check_deterministic_under_seed,
    check_history_fold_in,
    check_predict_in_scale,
    check_explanations,
    check_index_api,
)


def check_model(
    model: type[Recommender] | str, data: Interactions | None = None, params: dict[str, Any] | None = None
) -> Recommender:
    """Run every check of the contract on a model class (or a registered name); the fitted model.

    ``data``: what to fit on (default :func:`tiny_data`; implicit-only models may want
    ``tiny_data(explicit=False)``); ``params``: hyper-parameters over the class's ``fast_params``.
    The first failing check raises an AssertionError whose message names it.
    """
    cls = _resolve(model)
    data = tiny_data() if data is None else data
    check_registered(cls)
    check_params_round_trip(cls, params)
    check_search_space(cls)
    check_not_fitted(cls, params)
    fitted = check_fit_returns_self(cls, data, params)
    for check in FITTED_CHECKS:
        check(fitted, data)
    return fitted


__all__ = [
    "CLASS_CHECKS",
    "FITTED_CHECKS",
    "ContractError",
    "check_batch_equals_loop",
    "check_deterministic_under_seed",
    "check_exclusions_and_candidates",
    "check_explanations",
    "check_fit_returns_self",
    "check_history_fold_in",
    "check_index_api",
    "check_model",
    "check_not_fitted",
    "check_params_round_trip",
    "check_predict_in_scale",
    "check_registered",
    "check_save_load_identical",
    "check_search_space",
    "check_unknown_ids_and_bad_k",
    "make",
    "tiny_data",
    "users_of",
]
