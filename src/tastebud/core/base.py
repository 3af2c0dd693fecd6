"""The model contract. A model only *scores*; this base class does the rest.

A new algorithm is one file: subclass :class:`Recommender` (or :class:`RatingModel`), decorate it
with ``@register("name")``, take keyword hyper-parameters in ``__init__`` (stored as-is, as in
scikit-learn), and implement

* ``_fit(data)``: learn; store learned state in attributes whose names end in ``_``;
* ``_score(user_idx, item_idx)``: a dense (n_users, n_items or len(item_idx)) score block;

and where they make sense

* ``_score_history(item_idx, values)``: scores for a person the model has not seen (fold-in);
* ``_similar(item_idx)``: (n, n_items) item-to-item scores;
* ``_predict_pairs(user_idx, item_idx)``: ratings (``RatingModel``; -1 marks an unknown id);
* ``_explain(user_idx, item_idx)``: why each item was recommended.

Ids, candidates, exclusions, top-k (through :mod:`tastebud.core.ranking`), batching, fold-in
plumbing, persistence and parameter handling live here, once.

Two public faces call those hooks. The external-id methods (``recommend``, ``score``,
``recommend_for_history``, ``similar_items``, ``predict``) are the library's API. The
index-level methods (``score_rows``, ``score_history_idx``, ``rank_rows``, ``rank_history_idx``,
``similar_rows``, ``explain_idx``, ``predict_idx``) are the API for layers that already hold
indices: serve, eval, lab, index and the scale layer call these, never the underscore hooks.
The external-id methods are built on them, so both give the same lists.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import time
import typing
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from tastebud import __version__
from tastebud.core import engines, persist, ranking
from tastebud.core.errors import (
    ConfigError,
    DataError,
    FallbackWarning,
    NotFittedError,
    NotSupportedError,
)
from tastebud.core.results import Explanation, Recommendations, as_list
from tastebud.core.space import Dist
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions

# Score blocks are materialised in chunks of at most this many floats (64 MB of float32).
SCORE_BLOCK = 16_000_000


#: The engine hyper-parameters that models with ``scale_out`` had until 0.1 (``deprecated_params``):
#: the engine is now an argument of ``fit``, not something the model is.
ENGINE_PARAMS: dict[str, str] = {
    name: "choose the engine when fitting: model.fit(data, engine=tastebud.scale.RayEngine(workers=..., address=...)) "
    "or tastebud train --engine ray"
    for name in ("engine", "workers", "address")
}


@typing.runtime_checkable
class FitEngine(typing.Protocol):
    """Something that trains a model beyond this process (``tastebud.scale.RayEngine``).

    ``Recommender.fit(data, engine=...)`` checks the data and parameters and records the
    vocabularies, then calls ``engine.train(model, data)`` instead of the model's own ``_fit``.
    """

    def train(self, model: Recommender, data: Interactions) -> None: ...


class Recommender:
    """Base of every model: scikit-learn-shaped, external ids at every public boundary."""

    name: ClassVar[str] = ""
    #: True for models that predict ratings (``predict`` works).
    predicts_ratings: ClassVar[bool] = False
    #: True when the model can score a person from a list of items without refitting.
    supports_history: ClassVar[bool] = False
    #: Hyper-parameters for a quick fit on a tiny data set (contract tests, smoke runs).
    fast_params: ClassVar[dict[str, Any]] = {}
    #: The page of ``docs/`` that explains the algorithm; empty means the name of the model's module.
    docs_page: ClassVar[str] = ""

    @classmethod
    def docs_path(cls) -> str:
        """``docs/<page>.md``: where the model's math, hyper-parameters and paper are explained."""
        return f"docs/{cls.docs_page or cls.__module__.rsplit('.', 1)[-1]}.md"

    #: Old hyper-parameter names still accepted for one release, with a DeprecationWarning: old -> new
    #: (a tuple when one old knob became several). Saved models with old names load silently.
    renamed_params: ClassVar[dict[str, str | tuple[str, ...]]] = {}
    #: Old names of learned attributes, so that models saved before a rename still load: old -> new.
    renamed_attrs: ClassVar[dict[str, str]] = {}
    #: What ``tastebud.tune`` may try for each hyper-parameter (empty: nothing worth tuning).
    search_space: ClassVar[dict[str, Dist]] = {}
    #: True for next-item models: their validation holds out each user's last item, not random ones.
    sequential: ClassVar[bool] = False
    #: Optional packages the model needs to fit, as ``(import name, extra)``: without one of them
    #: ``get_model`` raises UnknownModelError naming the extra to install.
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()

    # Capabilities: what the demo, the service, the lab and the scale layer do with a model is read
    # from these, never from a list of model names, so a new model gets the right behaviour by
    # declaring them (``tests/test_architecture.py`` checks that they are consistent).
    #: Where the service ranks this model when it picks one to serve people by their history
    #: (lower first; needs ``supports_history``); None: never picked by itself (baselines).
    history_preference: ClassVar[int | None] = 100
    #: True for reference points rather than recommenders (random, popular): the service leaves
    #: them out of its default blend.
    baseline: ClassVar[bool] = False
    #: True when the default hyper-parameters train for tens of seconds or more on a CPU (torch
    #: networks, Gibbs sampling): the lab trains such models with ``fast_params`` and does not pick them.
    heavy: ClassVar[bool] = False
    #: True when the lab's explorer selects this model by default (quick to train, its own family).
    lab_default: ClassVar[bool] = False
    #: Hyper-parameters for ``tastebud demo`` (sized for a minute or two on 2 cores); None: not in the demo.
    demo_params: ClassVar[dict[str, Any] | None] = None
    #: How the model trains beyond one process (:mod:`tastebud.scale`): ``"ray"`` (``fit(data,
    #: engine=RayEngine(...))``, in-memory data on Ray workers) and ``"parquet"`` (each worker reads
    #: its own share of Parquet files, :func:`tastebud.scale.sharded.fit_parquet`).
    scale_out: ClassVar[frozenset[str]] = frozenset()
    #: True when ``fit`` reads ``data.item_features`` / ``data.user_features`` (the sharded fit then reads them too).
    uses_features: ClassVar[bool] = False
    #: Hyper-parameters removed from ``__init__`` but still accepted for one release with a
    #: DeprecationWarning: name -> what to do instead. Their values are kept aside (``deprecated_values``),
    #: never in ``get_params``; saved models that still name them load silently.
    deprecated_params: ClassVar[dict[str, str]] = {}

    # ------------------------------------------------------------------ params
    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every model's own ``__init__`` checks keyword names first (:meth:`resolve_params`), so an
        unknown name is a ConfigError naming the model and the valid names, not Python's TypeError."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and init not in _CHECKED_INITS:
            cls.__init__ = _checked_init(init)  # type: ignore[method-assign]

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    @classmethod
    def resolve_params(
        cls, params: dict[str, Any], *, valid: Sequence[str] | None = None, warn: bool = True, stacklevel: int = 3
    ) -> dict[str, Any]:
        """``params`` under today's names: old names mapped (with a DeprecationWarning unless ``warn``
        is False), unknown names refused with a ConfigError that lists the valid ones and the closest.
        ``valid``: the names to accept (default: every ``__init__`` name)."""
        owner = cls.name or cls.__name__
        names = cls._param_names() if valid is None else list(valid)
        out: dict[str, Any] = {}
        for key, value in params.items():
            if key in names:
                targets: tuple[str, ...] = (key,)
            elif key in cls.deprecated_params:
                if warn:
                    warnings.warn(
                        f"{owner}: hyper-parameter '{key}' is deprecated and goes in the next release; "
                        f"{cls.deprecated_params[key]}",
                        DeprecationWarning,
                        stacklevel=stacklevel,
                    )
                out[key] = value
                continue
            elif key in cls.renamed_params:
                new = cls.renamed_params[key]
                targets = (new,) if isinstance(new, str) else tuple(new)
            else:
                raise ConfigError(unknown_param_message(owner, key, names))
            for target in targets:
                if target in out or (target != key and target in params):
                    raise ConfigError(
                        f"{owner}: '{key}' and '{target}' name the same hyper-parameter; give '{target}' only"
                    )
                out[target] = value
            if warn and targets != (key,):
                warnings.warn(
                    f"{owner}: hyper-parameter '{key}' is now {' and '.join(map(repr, targets))}; "
                    "the old name goes in the next release",
                    DeprecationWarning,
                    stacklevel=stacklevel,
                )
        return out

    @classmethod
    def _from_saved_params(cls, params: dict[str, Any]) -> Recommender:
        """A model built from a manifest's hyper-parameters (old names map silently: the file is not the
        user's typo; deprecated ones are dropped: they never change what a fitted model computes)."""
        resolved = cls.resolve_params(params, warn=False)
        return cls(**{k: v for k, v in resolved.items() if k not in cls.deprecated_params})

    @property
    def deprecated_values(self) -> dict[str, Any]:
        """The deprecated hyper-parameters given to the constructor or ``set_params`` (see ``deprecated_params``)."""
        return dict(self.__dict__.get("_deprecated_values", {}))

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as given to ``__init__`` (today's names only)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Recommender:
        """Change hyper-parameters; names are checked and mapped as in the constructor."""
        for key, value in self.resolve_params(params).items():
            if key in self.deprecated_params:
                self.__dict__.setdefault("_deprecated_values", {})[key] = value
            else:
                setattr(self, key, value)
        return self

    def clone(self) -> Recommender:
        """An unfitted copy with the same hyper-parameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_params(self) -> None:
        """Type-check hyper-parameters against the ``__init__`` annotations."""
        hints = typing.get_type_hints(type(self).__init__)
        for name in self._param_names():
            if name in hints:
                _check_type(type(self).__name__, name, getattr(self, name), hints[name])
        self._validate_params()
        self.legacy_engine()  # the deprecated engine / workers / address, checked like the rest

    def _validate_params(self) -> None:
        """Range checks beyond types (override; raise ConfigError naming the parameter)."""

    def legacy_engine(self) -> FitEngine | None:
        """The engine named by the deprecated ``engine`` / ``workers`` / ``address`` hyper-parameters
        (checked; None when they ask for none): what ``fit`` uses when it is given no ``engine``."""
        return engines.legacy_engine(type(self).__name__, self.deprecated_values)

    # ------------------------------------------------------------------ fit
    def fit(self, data: Interactions, *, engine: FitEngine | None = None) -> Recommender:
        """Learn from ``data``; returns the model itself.

        ``engine`` trains beyond this process (``tastebud.scale.RayEngine(workers=4)``; the model's
        ``scale_out`` says which engines it supports); None trains here. Either way the result is
        the same kind of fitted model, saved and served alike.
        """
        if not isinstance(data, Interactions):
            raise DataError(f"fit expects tastebud.Interactions, got {type(data).__name__}")
        if len(data) == 0:
            raise DataError("fit: the training data has no interactions")
        if engine is not None and not isinstance(engine, FitEngine):
            raise ConfigError(
                f"fit: engine must be an engine object such as tastebud.scale.RayEngine(workers=4), got {engine!r}"
            )
        self._check_params()
        engine = engine if engine is not None else self.legacy_engine()
        start = time.perf_counter()
        self.record_fit(
            data.users,
            data.items,
            data.matrix,
            data.fingerprint(),
            tuple(data.rating_scale) if (data.rating_scale and data.explicit) else None,
        )
        if engine is None:
            self._fit(data)
        else:
            engine.train(self, data)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def record_fit(
        self,
        users: IdMap,
        items: IdMap,
        seen: sp.csr_matrix,
        fingerprint: str,
        rating_scale: tuple[float, float] | None,
        seconds: float | None = None,
    ) -> None:
        """What ``fit`` records besides the learned state: the vocabularies, the seen-item matrix
        (for exclusions and the popularity fallback), the data's fingerprint and rating scale, and
        (``seconds``) how long fitting took. The scale layer calls it when it fits from data no
        single process holds (:mod:`tastebud.scale.sharded`)."""
        self.users_ = users
        self.items_ = items
        self.user_items_ = seen.astype(np.float32)
        self.fingerprint_ = fingerprint
        self.rating_scale_ = rating_scale
        if seconds is not None:
            self.fit_seconds_ = seconds

    def _fit(self, data: Interactions) -> None:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "user_items_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted; call fit(data) or tastebud.load_model(dir) first"
            )

    @property
    def n_users(self) -> int:
        self._check_fitted()
        return len(self.users_)

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return len(self.items_)

    # ------------------------------------------------------------------ hooks a model implements
    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        raise NotSupportedError(f"{type(self).__name__} cannot recommend from a history without refitting")

    def _similar(self, item_idx: np.ndarray) -> np.ndarray:
        raise NotSupportedError(f"{type(self).__name__} has no item-to-item similarity")

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        """Default explanation: the model's score. ``history`` is the person's 1 x n_items row."""
        return [Explanation(f"{self.name} score") for _ in item_idx]

    @property
    def supports_similar(self) -> bool:
        """True when the model has an item-to-item similarity of its own (it implements ``_similar``)."""
        return type(self)._similar is not Recommender._similar

    # ------------------------------------------------------------------ index-level API
    # For the layers that already hold indices (serve, eval, lab, index, the scale layer): the same
    # scores, exclusions, tie rule and lists as the external-id methods below, which are built on
    # these. Indices are positions in ``users_`` / ``items_``; out-of-range ones raise DataError.
    def score_rows(self, user_idx: Any, item_idx: Any = None) -> np.ndarray:
        """Dense float32 scores (len(user_idx), n_items or len(item_idx)) of users by index.

        Computed in blocks of at most ``SCORE_BLOCK`` floats per call of the model; a fresh array.
        """
        self._check_fitted()
        uidx = _indices(user_idx, self.n_users, "user_idx")
        iidx = None if item_idx is None else _indices(item_idx, self.n_items, "item_idx")
        width = self.n_items if iidx is None else len(iidx)
        rows = max(1, SCORE_BLOCK // max(1, width))
        if 0 < len(uidx) <= rows:
            return np.array(self._score(uidx, iidx), dtype=np.float32)
        parts = [np.asarray(self._score(uidx[s : s + rows], iidx), dtype=np.float32) for s in range(0, len(uidx), rows)]
        return np.vstack(parts) if parts else np.empty((0, width), np.float32)

    def score_history_idx(self, item_idx: Any, values: Any = None) -> np.ndarray:
        """Scores (n_items,) of a person not in the model, from the item indices they had (in
        order) and their values (1 when omitted): fold-in, no refit."""
        self._check_fitted()
        iidx = _indices(item_idx, self.n_items, "item_idx")
        vals = _history_values(len(iidx), values)
        return np.array(self._score_history(iidx, vals), dtype=np.float32).reshape(-1)

    def rank_rows(
        self, user_idx: Any, k: int = 10, exclude_seen: bool = True, allowed: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores, each (len(user_idx), k), of users by index.

        ``exclude_seen`` drops each user's training items; ``allowed`` restricts to candidate
        items, which the model scores alone (ties go to the earlier in the list). Slots beyond the
        eligible items are -1 / NaN. Blocks of users are scored and ranked in one compiled pass
        each (:mod:`tastebud.core.ranking`).
        """
        self._check_fitted()
        k = _check_k(k)
        uidx = _indices(user_idx, self.n_users, "user_idx")
        cand = None if allowed is None else _indices(allowed, self.n_items, "allowed")
        width = self.n_items if cand is None else len(cand)
        rows = max(1, SCORE_BLOCK // max(1, width))
        out_idx = np.empty((len(uidx), k), np.int64)
        out_val = np.empty((len(uidx), k), np.float32)
        seen = None
        if exclude_seen:
            seen = self.user_items_ if self.user_items_.has_sorted_indices else self.user_items_.sorted_indices()
        for s in range(0, len(uidx), rows):
            block = uidx[s : s + rows]
            out_idx[s : s + rows], out_val[s : s + rows] = ranking.rank(
                self._score(block, cand), k, exclude=seen, exclude_rows=block, columns=cand
            )
        return out_idx, out_val

    def rank_history_idx(
        self, item_idx: Any, values: Any = None, k: int = 10, exclude_seen: bool = True, allowed: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores, each (k,), for a person not in the model, from
        their history (:meth:`score_history_idx`); ``exclude_seen`` drops the history's items,
        ``allowed`` restricts to candidate items (ties go to the earlier in the list)."""
        k = _check_k(k)
        scores = self.score_history_idx(item_idx, values)
        cand = None if allowed is None else _indices(allowed, self.n_items, "allowed")
        exclude = np.asarray(item_idx, np.int64) if exclude_seen else None
        return ranking.rank(scores if cand is None else scores[cand], k, exclude=exclude, columns=cand)

    def similar_rows(self, item_idx: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most similar to each item (by index), the item itself excluded:
        indices and scores, each (len(item_idx), k)."""
        self._check_fitted()
        k = _check_k(k)
        iidx = _indices(item_idx, self.n_items, "item_idx")
        itself = sp.csr_matrix(
            (np.ones(len(iidx), np.float32), iidx, np.arange(len(iidx) + 1)), shape=(len(iidx), self.n_items)
        )
        return ranking.rank(self._similar(iidx), k, exclude=itself)

    def explain_idx(self, user_idx: int, item_idx: Any, history: sp.csr_matrix | None = None) -> list[Explanation]:
        """Why each of ``item_idx`` (-1 slots skipped) was recommended to user ``user_idx``.

        ``history``: the person's 1 x n_items row of item values; a known user's training row
        when omitted, required for a person not in the model (``user_idx`` -1).
        """
        self._check_fitted()
        iidx = np.asarray(item_idx, np.int64).ravel()
        iidx = iidx[iidx >= 0]
        if history is None:
            if user_idx < 0:
                raise DataError("explain_idx: a person not in the model (user_idx -1) needs their history row")
            history = self.user_items_[int(user_idx)]
        return self._explain(int(user_idx), iidx, history)

    # ------------------------------------------------------------------ external ids
    def score(self, users: Any, items: Any = None) -> np.ndarray:
        """Dense scores, shape (len(users), len(items)) (all items when ``items`` is None)."""
        self._check_fitted()
        uidx = self.users_.index(as_list(users), "user")
        iidx = None if items is None else self.items_.index(as_list(items), "item")
        return self.score_rows(uidx, iidx)

    def recommend(
        self,
        users: Any,
        k: int = 10,
        exclude_seen: bool = True,
        items: Sequence[Any] | None = None,
        explain: bool = False,
        unknown: Literal["raise", "popular"] = "raise",
    ) -> Recommendations:
        """Top-``k`` items for each user (external ids in and out), batch-first.

        ``items`` restricts the candidates; ``exclude_seen`` drops the user's training items.
        Unknown users raise :class:`UnknownIdError` (use ``recommend_for_history`` for them), or
        with ``unknown="popular"`` get the popularity fallback (:meth:`popular_items`), named in
        ``warnings``: what the CLI and the service do.
        """
        self._check_fitted()
        k = _check_k(k)
        if unknown not in ("raise", "popular"):
            raise ConfigError(f"unknown must be 'raise' or 'popular', got {unknown!r}")
        users = as_list(users)
        uidx = self.users_.index(users, "user") if unknown == "raise" else self.users_.lookup(users)
        cand = None if items is None else self.items_.index(as_list(items), "item")
        known = uidx >= 0
        notes: list[str] = []
        if known.all():
            idx, scores = self.rank_rows(uidx, k, exclude_seen, cand)
        else:
            idx = np.full((len(users), k), -1, np.int64)
            scores = np.full((len(users), k), np.nan, np.float32)
            if known.any():
                idx[known], scores[known] = self.rank_rows(uidx[known], k, exclude_seen, cand)
            idx[~known], scores[~known] = self._popular_idx(k, cand)
            notes.append(f"{_some(users, ~known, 'unknown user')}: {POPULAR_FALLBACK}")
        explanations = None
        if explain:
            explanations = [
                self.explain_idx(int(u), row) if u >= 0 else self._popular_explanations(row[row >= 0])
                for u, row in zip(uidx, idx, strict=True)
            ]
        queries = [_plain_id(self.users_.ids[u]) if u >= 0 else user for u, user in zip(uidx, users, strict=True)]
        return Recommendations.from_topk(queries, self.items_, idx, scores, explanations, notes)

    def item_counts(self) -> np.ndarray:
        """Interactions per item in the training data (``user_items_``), aligned with ``items_``.

        The scores of the popularity fallback; computed once per fitted state, read-only.
        """
        self._check_fitted()
        cached = self.__dict__.get("_item_counts")
        if cached is None or cached[0] is not self.user_items_:
            counts = np.bincount(self.user_items_.indices, minlength=self.n_items).astype(np.float64)
            counts.flags.writeable = False
            cached = self._item_counts = (self.user_items_, counts)
        return cached[1]

    def popular_items(
        self, k: int = 10, candidates: Sequence[Any] | None = None, exclude: Sequence[Any] | None = None
    ) -> Recommendations:
        """The fallback for a person the model cannot score (an unknown user, a history with no
        known item): the ``k`` items with the most interactions in the training data, scored by
        their counts (ties: vocabulary order). ``candidates`` restricts them, ``exclude`` drops some.
        The library, the CLI and the service all answer such people with this one rule.
        """
        self._check_fitted()
        k = _check_k(k)
        cand = None if candidates is None else self.items_.index(as_list(candidates), "item")
        drop = None if exclude is None else self.items_.index(as_list(exclude), "item")
        idx, scores = self._popular_idx(k, cand, drop)
        return Recommendations.from_topk([None], self.items_, idx, scores, [self._popular_explanations(idx[0])])

    def _popular_idx(
        self, k: int, cand: np.ndarray | None = None, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(1, k) top-k item indices and counts of the popularity fallback (-1 / NaN pad)."""
        counts = self.item_counts().reshape(1, -1)
        drop = exclude if exclude is not None and len(exclude) else None
        return ranking.rank(counts if cand is None else counts[:, cand], k, exclude=drop, columns=cand)

    def _popular_explanations(self, item_idx: np.ndarray) -> list[Explanation]:
        counts = self.item_counts()
        return [
            Explanation(f"popular: {counts[i]:.0f} interactions", [("interactions", float(counts[i]))])
            for i in item_idx
            if i >= 0
        ]

    def recommend_for_history(
        self,
        items: Sequence[Any],
        values: Sequence[float] | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        candidates: Sequence[Any] | None = None,
        explain: bool = False,
    ) -> Recommendations:
        """Top-``k`` for a person not in the model, from the items they had (in order).

        Unknown items are ignored and listed in ``warnings``; a history with no known item gets
        the popularity fallback (:meth:`popular_items`), said in ``warnings`` too. ``values`` are
        ratings or weights (1 when omitted).
        """
        self._check_fitted()
        k = _check_k(k)
        items = as_list(items)
        vals = _history_values(len(items), values)
        iidx = self.items_.lookup(items)
        known = iidx >= 0
        notes = []
        if (~known).any():
            unknown = [items[i] for i in np.nonzero(~known)[0]]
            notes.append(f"ignored {len(unknown)} unknown item(s): {', '.join(map(repr, unknown[:10]))}")
        iidx, vals = iidx[known], vals[known]
        cand = None if candidates is None else self.items_.index(as_list(candidates), "item")
        if not len(iidx):
            notes.append(f"empty history (no known item): {POPULAR_FALLBACK}")
            i, v = self._popular_idx(k, cand)
            explanations = [self._popular_explanations(i[0])] if explain else None
            return Recommendations.from_topk([None], self.items_, i, v, explanations, notes)
        i, v = self.rank_history_idx(iidx, vals, k, exclude_seen, cand)
        explanations = None
        if explain:
            history = sp.csr_matrix((vals, (np.zeros(len(iidx), int), iidx)), shape=(1, self.n_items))
            explanations = [self.explain_idx(-1, i, history)]
        return Recommendations.from_topk([None], self.items_, i[None], v[None], explanations, notes)

    def similar_items(self, items: Any, k: int = 10) -> Recommendations:
        """The ``k`` items most similar to each given item (the item itself excluded)."""
        self._check_fitted()
        k = _check_k(k)
        iidx = self.items_.index(as_list(items), "item")
        i, v = self.similar_rows(iidx, k)
        queries = [_plain_id(self.items_.ids[j]) for j in iidx]
        return Recommendations.from_topk(queries, self.items_, i, v, query="query_item")

    def predict(self, users: Any, items: Any) -> np.ndarray:
        """Predicted ratings for (user, item) pairs: ``predict(["u1","u2"], ["i9","i3"])``."""
        raise NotSupportedError(f"{type(self).__name__} ranks items; it does not predict ratings")

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Learned state: arrays (numpy and sparse attributes ending in ``_``) and JSON attributes."""
        arrays: dict[str, np.ndarray] = {}
        attrs: dict[str, Any] = {}
        for key, value in vars(self).items():
            if not key.endswith("_") or key.startswith("_") or key in ("users_", "items_"):
                continue
            if isinstance(value, np.ndarray):
                arrays[key] = value
            elif sp.issparse(value):
                csr = sp.csr_matrix(value)
                arrays[f"{key}.csr.data"] = csr.data
                arrays[f"{key}.csr.indices"] = csr.indices
                arrays[f"{key}.csr.indptr"] = csr.indptr
                arrays[f"{key}.csr.shape"] = np.asarray(csr.shape, dtype=np.int64)
            elif value is None or isinstance(value, (bool, int, float, str, list, tuple, dict)):
                attrs[key] = value
            elif isinstance(value, np.generic):
                attrs[key] = value.item()
        return arrays, attrs

    def _set_state(self, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
        if self.renamed_attrs:  # a model saved before a learned attribute was renamed
            arrays = {_renamed(k, self.renamed_attrs): v for k, v in arrays.items()}
            attrs = {_renamed(k, self.renamed_attrs): v for k, v in attrs.items()}
        sparse_keys = {k.split(".csr.")[0] for k in arrays if ".csr." in k}
        for key in sparse_keys:
            shape = tuple(int(x) for x in arrays[f"{key}.csr.shape"])
            setattr(
                self,
                key,
                sp.csr_matrix(
                    (arrays[f"{key}.csr.data"], arrays[f"{key}.csr.indices"], arrays[f"{key}.csr.indptr"]), shape=shape
                ),
            )
        for key, value in arrays.items():
            if ".csr." not in key:
                setattr(self, key, value)
        for key, value in attrs.items():
            setattr(self, key, tuple(value) if key == "rating_scale_" and value is not None else value)

    def _extra_files(self) -> dict[str, bytes]:
        """Extra payload files (for example safetensors weights); override with ``_load_extra``."""
        return {}

    def _load_extra(self, files: dict[str, bytes]) -> None:
        pass

    def save(self, directory: str | Path) -> Path:
        """Write the model to ``directory`` atomically (npz + JSON manifest; never pickle)."""
        self._check_fitted()
        arrays, attrs = self._state()
        arrays["__users__"] = self.users_.to_array()
        arrays["__items__"] = self.items_.to_array()
        manifest = {
            "tastebud_version": __version__,
            "model": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": _jsonable_params(self.get_params()),
            "attrs": attrs,
            "data_fingerprint": getattr(self, "fingerprint_", None),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return persist.write_bundle(directory, manifest, arrays, self._extra_files())

    @classmethod
    def load(cls, directory: str | Path, *, verify: bool = True) -> Recommender:
        """Load a saved model of this class (or a subclass): :func:`tastebud.core.persist.load_model`,
        which looks the class up in the registry (an allowlist), never in code from the file.

        ``verify=False`` skips the files' SHA-256 check (see :func:`persist.read_bundle`)."""
        return persist.load_model(directory, verify=verify, expected=cls)


class RatingModel(Recommender):
    """A model that predicts ratings. ``predict`` clips to the training rating scale."""

    predicts_ratings = True
    #: True when a prediction depends on when the rating is made: ``predict(users, items, times)``
    #: passes the unix times on to ``_predict_pairs_at`` (timesvdpp, and a blend holding it).
    uses_time: ClassVar[bool] = False

    def _predict_pairs(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Ratings for pairs; an index of -1 marks an id the model has not seen."""
        raise NotImplementedError

    def _predict_pairs_at(self, user_idx: np.ndarray, item_idx: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Ratings for pairs at unix ``times`` (seconds); models whose ratings do not drift ignore the times."""
        return self._predict_pairs(user_idx, item_idx)

    def predict(self, users: Any, items: Any, times: Any = None) -> np.ndarray:
        """Ratings for (user, item) pairs, clipped to the rating scale. ``times`` (unix seconds, one
        per pair) matter to models with ``uses_time``. An unknown user or item is predicted from the
        biases the model has (the global mean at worst), with a :class:`~tastebud.FallbackWarning`
        that says so."""
        pred, notes = self.predict_with_warnings(users, items, times)
        for note in notes:
            warnings.warn(note, FallbackWarning, stacklevel=2)
        return pred

    def predict_with_warnings(self, users: Any, items: Any, times: Any = None) -> tuple[np.ndarray, list[str]]:
        """``predict``, with the fallbacks it took returned as sentences instead of warned
        (the service puts them in its answer's ``warnings``)."""
        self._check_fitted()
        users, items = as_list(users), as_list(items)
        if len(users) != len(items):
            raise DataError(f"predict takes pairs: got {len(users)} users and {len(items)} items")
        uidx = self.users_.lookup(users)
        iidx = self.items_.lookup(items)
        pred = self.predict_idx(uidx, iidx, None if times is None else as_list(times))
        notes = [
            f"{_some(ids, idx < 0, f'unknown {what}')}: {RATING_FALLBACK}"
            for what, ids, idx in (("user", users, uidx), ("item", items, iidx))
            if (idx < 0).any()
        ]
        return pred, notes

    def predict_idx(self, user_idx: Any, item_idx: Any, times: Any = None) -> np.ndarray:
        """Ratings for pairs of indices, clipped to the rating scale: the index-level ``predict``
        (evaluation calls it, with the test ratings' times). An index of -1 marks an id the model
        has not seen (no warning here)."""
        self._check_fitted()
        uidx, iidx = np.asarray(user_idx, np.int64).ravel(), np.asarray(item_idx, np.int64).ravel()
        if len(uidx) != len(iidx):
            raise DataError(f"predict_idx takes pairs: got {len(uidx)} users and {len(iidx)} items")
        if times is None:
            pred = self._predict_pairs(uidx, iidx)
        else:
            try:
                t = np.asarray(times, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise DataError("predict: times must be unix seconds (numbers), one per pair") from None
            if len(t) != len(uidx) or not np.isfinite(t).all():
                raise DataError(f"predict: times must be {len(uidx)} finite unix seconds, one per pair; got {len(t)}")
            pred = self._predict_pairs_at(uidx, iidx, t.astype(np.int64))
        pred = np.asarray(pred, dtype=np.float64)
        if self.rating_scale_ is not None:
            pred = np.clip(pred, *self.rating_scale_)
        return pred


def unknown_param_message(owner: str, key: str, valid: Sequence[str]) -> str:
    """``itemknn has no hyper-parameter 'neighbours' (did you mean 'neighbors'?); valid: ...``"""
    close = difflib.get_close_matches(key, list(valid), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{owner} has no hyper-parameter '{key}'{hint}; valid: {', '.join(sorted(valid)) or '(none)'}"


def _checked_init(init: Any) -> Any:
    """Wrap a model's ``__init__`` so keyword names are checked (and old ones mapped) before it runs."""
    sig = inspect.signature(init)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    names = [
        p.name for p in sig.parameters.values() if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]

    @functools.wraps(init)
    def __init__(self: Recommender, *args: Any, **params: Any) -> None:
        if params and not takes_any:
            # this __init__'s own names: a subclass calling super().__init__ passes its parent's
            params = type(self).resolve_params(params, valid=names)
            old = {k: params.pop(k) for k in list(params) if k in type(self).deprecated_params and k not in names}
            if old:
                self.__dict__.setdefault("_deprecated_values", {}).update(old)
        init(self, *args, **params)

    _CHECKED_INITS.add(__init__)
    return __init__


#: The ``__init__`` wrappers made by :func:`_checked_init`, so a class that reuses one is not wrapped twice.
_CHECKED_INITS: weakref.WeakSet[Any] = weakref.WeakSet()


def _renamed(key: str, renames: dict[str, str]) -> str:
    base, dot, rest = key.partition(".")  # sparse arrays are stored as "<name>.csr.<part>"
    return renames.get(base, base) + dot + rest


POPULAR_FALLBACK = "recommended the most popular items of the training data"
RATING_FALLBACK = "predicted from the biases the model has (the global mean at worst)"


def _some(ids: Sequence[Any], mask: np.ndarray, what: str) -> str:
    """'unknown user(s) 'x', 'y'' for the ids where ``mask`` is set (at most ten named)."""
    named = [ids[i] for i in np.nonzero(mask)[0]]
    more = f" and {len(named) - 10} more" if len(named) > 10 else ""
    return f"{len(named)} {what}(s) {', '.join(map(repr, named[:10]))}{more}"


def _plain_id(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _indices(values: Any, n: int, what: str) -> np.ndarray:
    """``values`` as a 1-D int64 array of indices into a vocabulary of ``n``; DataError when out of range."""
    idx = np.asarray(values)
    if idx.dtype.kind not in "iu" and idx.size:
        raise DataError(f"{what} must hold integer indices, got {idx.dtype}")
    idx = np.ascontiguousarray(idx.reshape(-1), dtype=np.int64)  # models may hand it to torch as is
    if len(idx) and (idx.min() < 0 or idx.max() >= n):
        raise DataError(f"{what} holds indices outside 0..{n - 1}")
    return idx


def _history_values(n: int, values: Any) -> np.ndarray:
    """A history's values as float32 (1 when omitted), checked against its ``n`` items."""
    vals = np.ones(n, np.float32) if values is None else np.asarray(values, np.float32).reshape(-1)
    if len(vals) != n:
        raise DataError(f"values has {len(vals)} entries but items has {n}")
    if not np.isfinite(vals).all():
        raise DataError("values must be finite numbers")
    return vals


def _jsonable_params(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        try:
            json.dumps(value)
        except TypeError:
            raise ConfigError(f"hyper-parameter '{key}' = {value!r} cannot be saved as JSON") from None
        out[key] = value
    return out


def _check_type(owner: str, name: str, value: Any, hint: Any) -> None:
    """Check a hyper-parameter against simple annotations: int, float, bool, str, Literal, Optional."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{owner}: {name} must be one of {', '.join(map(repr, args))}; got {value!r}")
        return
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        errors = []
        for arg in args:
            try:
                _check_type(owner, name, value, arg)
                return
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{owner}: {name} = {value!r} does not fit {hint}")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{owner}: {name} must be None")
        return
    if hint is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f"{owner}: {name} must be true or false, got {value!r}")
        return
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{owner}: {name} must be an integer, got {value!r}")
        return
    if hint is float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.integer, np.floating))
            or not np.isfinite(value)
        ):
            raise ConfigError(f"{owner}: {name} must be a finite number, got {value!r}")
        return
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{owner}: {name} must be a string, got {value!r}")
        return
    # containers and other annotations: trust the model's own validation


def positive(owner: str, **values: Any) -> None:
    """Raise ConfigError for any value that is not > 0 (use in ``_validate_params``)."""
    for name, value in values.items():
        if value is None or value <= 0:
            raise ConfigError(f"{owner}: {name} must be > 0, got {value!r}")


def non_negative(owner: str, **values: Any) -> None:
    for name, value in values.items():
        if value is None or value < 0:
            raise ConfigError(f"{owner}: {name} must be >= 0, got {value!r}")
