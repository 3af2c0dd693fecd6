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

Ids, candidates, exclusions, top-k, batching, fold-in plumbing, persistence and parameter
handling live here, once.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import time
import typing
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from tastebud import __version__
from tastebud.core import persist
from tastebud.core.errors import (
    ConfigError,
    DataError,
    ModelFormatError,
    NotFittedError,
    NotSupportedError,
)
from tastebud.core.results import Explanation, Recommendations, as_list
from tastebud.core.space import Dist
from tastebud.core.topk import topk
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions

# Score blocks are materialised in chunks of at most this many floats (64 MB of float32).
SCORE_BLOCK = 16_000_000


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

    # ------------------------------------------------------------------ params
    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every model's own ``__init__`` checks keyword names first (:meth:`resolve_params`), so an
        unknown name is a ConfigError naming the model and the valid names, not Python's TypeError."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not hasattr(init, "__tastebud_names__"):
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
        """A model built from a manifest's hyper-parameters (old names map silently: the file is not the user's typo)."""
        return cls(**cls.resolve_params(params, warn=False))

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as given to ``__init__`` (today's names only)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Recommender:
        """Change hyper-parameters; names are checked and mapped as in the constructor."""
        for key, value in self.resolve_params(params).items():
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

    def _validate_params(self) -> None:
        """Range checks beyond types (override; raise ConfigError naming the parameter)."""

    # ------------------------------------------------------------------ fit
    def fit(self, data: Interactions) -> Recommender:
        """Learn from ``data``; returns the model itself."""
        if not isinstance(data, Interactions):
            raise DataError(f"fit expects tastebud.Interactions, got {type(data).__name__}")
        if len(data) == 0:
            raise DataError("fit: the training data has no interactions")
        self._check_params()
        start = time.perf_counter()
        self.users_ = data.users
        self.items_ = data.items
        self.user_items_ = data.matrix.astype(np.float32)
        self.fingerprint_ = data.fingerprint()
        self.rating_scale_ = tuple(data.rating_scale) if (data.rating_scale and data.explicit) else None
        self._fit(data)
        self.fit_seconds_ = time.perf_counter() - start
        return self

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

    # ------------------------------------------------------------------ scoring hooks
    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        raise NotSupportedError(f"{type(self).__name__} cannot recommend from a history without refitting")

    def _similar(self, item_idx: np.ndarray) -> np.ndarray:
        raise NotSupportedError(f"{type(self).__name__} has no item-to-item similarity")

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        """Default explanation: the model's score. ``history`` is the person's 1 x n_items row."""
        return [Explanation(f"{self.name} score") for _ in item_idx]

    # ------------------------------------------------------------------ public scoring
    def score(self, users: Any, items: Any = None) -> np.ndarray:
        """Dense scores, shape (len(users), len(items)) (all items when ``items`` is None)."""
        self._check_fitted()
        uidx = self.users_.index(as_list(users), "user")
        iidx = None if items is None else self.items_.index(as_list(items), "item")
        return self._score_chunked(uidx, iidx)

    def _score_chunked(self, uidx: np.ndarray, iidx: np.ndarray | None) -> np.ndarray:
        width = self.n_items if iidx is None else len(iidx)
        rows = max(1, SCORE_BLOCK // max(1, width))
        parts = [np.asarray(self._score(uidx[s : s + rows], iidx), dtype=np.float32) for s in range(0, len(uidx), rows)]
        return np.vstack(parts) if parts else np.empty((0, width), np.float32)

    def recommend(
        self,
        users: Any,
        k: int = 10,
        exclude_seen: bool = True,
        items: Sequence[Any] | None = None,
        explain: bool = False,
    ) -> Recommendations:
        """Top-``k`` items for each user (external ids in and out), batch-first.

        ``items`` restricts the candidates; ``exclude_seen`` drops the user's training items.
        Unknown users raise :class:`UnknownIdError` (use ``recommend_for_history`` for them).
        """
        self._check_fitted()
        k = _check_k(k)
        users = as_list(users)
        uidx = self.users_.index(users, "user")
        cand = None if items is None else self.items_.index(as_list(items), "item")
        idx, scores = self._recommend_idx(uidx, k, exclude_seen, cand)
        explanations = None
        if explain:
            explanations = [
                self._explain(int(u), row[row >= 0], self.user_items_[int(u)])
                + [Explanation("")] * int((row < 0).sum())
                for u, row in zip(uidx, idx, strict=True)
            ]
        return Recommendations(list(users), self.items_.to_ids(idx), scores, explanations)

    def _recommend_idx(
        self, uidx: np.ndarray, k: int, exclude_seen: bool = True, cand: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Index-level batch top-k (the evaluation loop calls this directly).

        Over the whole catalogue the seen-item mask and the selection run fused in one compiled
        pass per score block (``kernels.topk``); a candidate list takes the plain NumPy path.
        """
        from tastebud.kernels.topk import topk_masked, topk_masked_serial  # numba: on first use, not with tastebud

        uidx = np.asarray(uidx, np.int64)
        width = self.n_items if cand is None else len(cand)
        rows = max(1, SCORE_BLOCK // max(1, width))
        out_idx = np.empty((len(uidx), k), np.int64)
        out_val = np.empty((len(uidx), k), np.float32)
        seen = self.user_items_
        if cand is None and not seen.has_sorted_indices:
            seen = seen.sorted_indices()
        for s in range(0, len(uidx), rows):
            block = uidx[s : s + rows]
            if cand is None:
                scores = np.ascontiguousarray(self._score(block, None), dtype=np.float32)
                which = block if exclude_seen else np.full(len(block), -1, np.int64)
                (topk_masked if len(block) > 4 else topk_masked_serial)(
                    scores,
                    which,
                    seen.indptr,  # int32 or int64 as scipy chose: no copy per call
                    seen.indices,
                    k,
                    out_idx[s : s + rows],
                    out_val[s : s + rows],
                )
                continue
            scores = np.array(self._score(block, cand), dtype=np.float32, copy=True)
            if exclude_seen:
                _mask_seen(scores, seen[block], cand)
            i, v = topk(scores, k)
            out_idx[s : s + rows] = np.where(i >= 0, cand[np.clip(i, 0, None)], -1)
            out_val[s : s + rows] = v
        return out_idx, out_val

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

        Unknown items are ignored and listed in ``warnings``. ``values`` are ratings or weights
        (1 when omitted).
        """
        self._check_fitted()
        k = _check_k(k)
        items = as_list(items)
        vals = np.ones(len(items), np.float32) if values is None else np.asarray(values, np.float32)
        if len(vals) != len(items):
            raise DataError(f"values has {len(vals)} entries but items has {len(items)}")
        if not np.isfinite(vals).all():
            raise DataError("values must be finite numbers")
        iidx = self.items_.lookup(items)
        known = iidx >= 0
        warnings = []
        if (~known).any():
            unknown = [items[i] for i in np.nonzero(~known)[0]]
            warnings.append(f"ignored {len(unknown)} unknown item(s): {', '.join(map(repr, unknown[:10]))}")
        iidx, vals = iidx[known], vals[known]
        scores = np.array(self._score_history(iidx, vals), dtype=np.float32, copy=True).reshape(1, -1)
        history = sp.csr_matrix(
            (np.ones(len(iidx), np.float32) if len(iidx) else [], (np.zeros(len(iidx), int), iidx)),
            shape=(1, self.n_items),
        )
        history.sum_duplicates()
        cand = None if candidates is None else self.items_.index(as_list(candidates), "item")
        if cand is not None:
            scores = scores[:, cand]
        if exclude_seen:
            _mask_seen(scores, history, cand)
        i, v = topk(scores, k)
        if cand is not None:
            i = np.where(i >= 0, cand[np.clip(i, 0, None)], -1)
        explanations = None
        if explain:
            hist_vals = sp.csr_matrix((vals, (np.zeros(len(iidx), int), iidx)), shape=(1, self.n_items))
            row = i[0]
            explanations = [self._explain(-1, row[row >= 0], hist_vals) + [Explanation("")] * int((row < 0).sum())]
        return Recommendations([None], self.items_.to_ids(i), v, explanations, warnings)

    def similar_items(self, items: Any, k: int = 10) -> Recommendations:
        """The ``k`` items most similar to each given item (the item itself excluded)."""
        self._check_fitted()
        k = _check_k(k)
        items = as_list(items)
        iidx = self.items_.index(items, "item")
        scores = np.array(self._similar(iidx), dtype=np.float32, copy=True)
        scores[np.arange(len(iidx)), iidx] = -np.inf
        i, v = topk(scores, k)
        return Recommendations(list(items), self.items_.to_ids(i), v)

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
        """Load a saved model; the class comes from the registry (an allowlist), never from code in the file.

        ``verify=False`` skips the files' SHA-256 check (see :func:`persist.read_bundle`)."""
        from tastebud.core.registry import get_model

        manifest, arrays, extra = persist.read_bundle(directory, verify=verify)
        name = manifest.get("model")
        if not isinstance(name, str):
            raise ModelFormatError(f"{directory}: manifest names no model")
        try:
            model_cls = get_model(name)
        except KeyError as exc:
            raise ModelFormatError(f"{directory}: {exc}") from None
        if cls is not Recommender and not issubclass(model_cls, cls):
            raise ModelFormatError(f"{directory}: holds a '{name}' model, not {cls.__name__}")
        params = manifest.get("params", {})
        if not isinstance(params, dict):
            raise ModelFormatError(f"{directory}: manifest 'params' must be a JSON object")
        try:
            model = model_cls._from_saved_params(params)
        except (TypeError, ConfigError) as exc:
            raise ModelFormatError(f"{directory}: hyper-parameters do not match '{name}': {exc}") from None
        try:
            model.users_ = IdMap(arrays.pop("__users__"), "user")
            model.items_ = IdMap(arrays.pop("__items__"), "item")
            model._set_state(arrays, manifest.get("attrs", {}))
            model._load_extra(extra)
        except KeyError as exc:
            raise ModelFormatError(f"{directory}: missing array {exc}") from None
        if not hasattr(model, "user_items_"):
            raise ModelFormatError(f"{directory}: model state is incomplete")
        return model


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
        """Ratings for pairs; ``times`` (unix seconds, one per pair) matter to models with ``uses_time``."""
        self._check_fitted()
        users, items = as_list(users), as_list(items)
        if len(users) != len(items):
            raise DataError(f"predict takes pairs: got {len(users)} users and {len(items)} items")
        uidx = self.users_.lookup(users)
        iidx = self.items_.lookup(items)
        return self._predict_idx(uidx, iidx, None if times is None else as_list(times))

    def _predict_idx(self, uidx: np.ndarray, iidx: np.ndarray, times: Any = None) -> np.ndarray:
        uidx, iidx = np.asarray(uidx, np.int64), np.asarray(iidx, np.int64)
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
        init(self, *args, **params)

    __init__.__tastebud_names__ = names  # type: ignore[attr-defined]
    return __init__


def _renamed(key: str, renames: dict[str, str]) -> str:
    base, dot, rest = key.partition(".")  # sparse arrays are stored as "<name>.csr.<part>"
    return renames.get(base, base) + dot + rest


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _mask_seen(scores: np.ndarray, seen: sp.csr_matrix, cand: np.ndarray | None) -> None:
    """Set the scores of already-seen items to -inf, in place."""
    seen = sp.csr_matrix(seen)
    rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    cols = seen.indices
    if cand is None:
        scores[rows, cols] = -np.inf
        return
    pos = np.full(seen.shape[1], -1, np.int64)
    pos[cand] = np.arange(len(cand))
    mapped = pos[cols]
    keep = mapped >= 0
    scores[rows[keep], mapped[keep]] = -np.inf


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


def iter_batches(n: int, size: int) -> Iterable[slice]:
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))
