"""What the service serves: one loaded version (models, indexes, popularity) and its hybrid policy.

The policy decides per request which path serves a person:

* **popular**: no history at all: popularity, by segment when the request gives context
  (``{"country": "FR"}``) that matches a categorical user feature;
* **history**: a short history (fewer than ``short_history`` events): a model that scores a
  person from their items without refitting (item neighbours, content, two-tower, ...);
* **collaborative**: an established person: the blend of the collaborative models (weighted
  score fusion or reciprocal rank fusion, :class:`tastebud.models.hybrid.Hybrid`). Events
  recorded since the version was trained are folded in when the blend can fold in; otherwise
  they are at least excluded from the results.

A model whose scores are inner products (checked, see :mod:`tastebud.index.vectors`) is served
from a vector index when the catalogue is large (``ann_min_items``); the rest are scored exactly.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from tastebud.core import ranking
from tastebud.core.base import RatingModel, Recommender
from tastebud.core.errors import ConfigError, ModelFormatError, NotSupportedError, UnknownIdError
from tastebud.core.results import Explanation
from tastebud.data.idmap import IdMap
from tastebud.index.base import VectorIndex, load_index, make_index
from tastebud.index.vectors import FactorView, factor_view
from tastebud.serve.events import EventStore, id_key, key_id
from tastebud.serve.popularity import Popularity
from tastebud.serve.registry import SERVING as SERVING_JSON
from tastebud.serve.registry import ModelRegistry, is_model_folder

log = logging.getLogger("tastebud.serve")


@dataclass
class PolicyConfig:
    """The hybrid policy; lives in ``serving.json`` under ``"policy"``."""

    collaborative: list[str] | None = None
    weights: list[float] | None = None
    fusion: Literal["rrf", "score"] = "rrf"
    history_model: str | None = None
    short_history: int = 5
    ann_min_items: int = 50_000
    index_spec: str = "HNSW32"

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> PolicyConfig:
        raw = dict(raw or {})
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"policy: unknown key(s) {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}")
        cfg = cls(**raw)
        if cfg.fusion not in ("rrf", "score"):
            raise ConfigError(f"policy: fusion must be 'rrf' or 'score', got {cfg.fusion!r}")
        if not isinstance(cfg.short_history, int) or cfg.short_history < 0:
            raise ConfigError(f"policy: short_history must be an integer >= 0, got {cfg.short_history!r}")
        if not isinstance(cfg.ann_min_items, int) or cfg.ann_min_items < 1:
            raise ConfigError(f"policy: ann_min_items must be a positive integer, got {cfg.ann_min_items!r}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Result:
    """One person's list and how it was made."""

    items: list[Any]
    scores: list[float]
    explanations: list[str]
    path: str
    model: str
    warnings: list[str] = field(default_factory=list)
    history_length: int = 0
    new_events: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "model": self.model,
            "items": [
                {"item": i, "score": s, "rank": r, "explanation": e}
                for r, (i, s, e) in enumerate(zip(self.items, self.scores, self.explanations, strict=False), start=1)
            ],
            "warnings": self.warnings,
            "history_length": self.history_length,
            "new_events": self.new_events,
        }


class Served:
    """One model as served: exact scoring, or a vector index for the factor models."""

    def __init__(self, model: Recommender, index: VectorIndex | None = None, view: FactorView | None = None) -> None:
        self.model = model
        self.index = index
        self.view = view
        self.name = model.name

    @property
    def supports_history(self) -> bool:
        return bool(self.model.supports_history)

    def for_user(
        self, uidx: int, k: int, exclude: np.ndarray, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        m = self.model
        if self.index is not None and self.view is not None:
            q = self.view.user_vectors[uidx : uidx + 1]
            idx, val = self.index.search(q, k, exclude=[exclude], allowed=allowed)
            hist = m.user_items_.indices[m.user_items_.indptr[uidx] : m.user_items_.indptr[uidx + 1]]
            return idx[0], val[0], self._vector_reasons(idx[0], hist)
        scores = m.score_rows(np.array([uidx], np.int64))[0]
        idx, val = ranking.rank(scores, k, exclude=exclude, allowed=allowed)
        return idx, val, _texts(m, uidx, idx)

    def for_history(
        self, hidx: np.ndarray, values: np.ndarray, k: int, exclude: np.ndarray, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        m = self.model
        if self.index is not None and self.view is not None and self.view.history_vector is not None:
            q = np.asarray(self.view.history_vector(hidx, values), np.float32).reshape(1, -1)
            idx, val = self.index.search(q, k, exclude=[exclude], allowed=allowed)
            return idx[0], val[0], self._vector_reasons(idx[0], hidx)
        scores = m.score_history_idx(hidx, values)
        idx, val = ranking.rank(scores, k, exclude=exclude, allowed=allowed)
        hist = sp.csr_matrix((values, (np.zeros(len(hidx), int), hidx)), shape=(1, m.n_items))
        hist.sum_duplicates()
        return idx, val, _texts(m, -1, idx, hist)

    def _vector_reasons(self, idx: np.ndarray, hist: np.ndarray) -> list[str]:
        """'close to <item you had>' by the nearest history item vector (cheap: k x history)."""
        valid = idx[idx >= 0]
        if not len(valid):
            return []
        if not len(hist):
            return [f"{self.name}: matches your taste vector"] * len(valid)
        hist = np.asarray(hist[-200:], np.int64)
        iv = self.view.item_vectors  # type: ignore[union-attr]
        sims = iv[valid] @ iv[hist].T
        best = hist[np.argmax(sims, axis=1)]
        ids = _ids(self.model.items_.ids[best])
        return [f"{self.name}: close to {i!r}, which you had" for i in ids]


def indexed_parts(name: str, model: Recommender) -> list[tuple[str, Recommender]]:
    """The models a served model's vector indexes may belong to, by index name: the model itself,
    and for a two-stage model (one with ``set_candidate_source``, the ranker) each of its fitted
    retrievers as ``<model>/<retriever>``, since those find its candidates. Publishing and loading
    apply one rule to each: an index when the catalogue is large or the version ships one."""
    parts: list[tuple[str, Recommender]] = [(name, model)]
    if hasattr(model, "set_candidate_source"):
        parts += [
            (f"{name}/{r_name}", r)
            for r_name, r in zip(model.retriever_names_, model.retrievers_fitted, strict=True)  # type: ignore[attr-defined]
        ]
    return parts


def _candidate_source(index: VectorIndex, view: FactorView, seen: sp.csr_matrix) -> tuple[Any, Any]:
    """Candidate functions for :meth:`Ranker.set_candidate_source` backed by ``index``: a known
    user by their vector, a history by the retriever's fold-in vector; the person's items excluded,
    as the retriever's exact lists exclude them."""

    def by_users(uidx: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        exclude = [seen.indices[seen.indptr[u] : seen.indptr[u + 1]] for u in uidx]
        return index.search(view.user_vectors[uidx], k, exclude=exclude, allowed=allowed)

    def by_history(hidx: np.ndarray, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(view.history_vector(hidx, values), np.float32).reshape(1, -1)  # type: ignore[misc]
        idx, val = index.search(q, k, exclude=[np.asarray(hidx, np.int64)])
        return idx[0], val[0]

    return by_users, (by_history if view.history_vector is not None else None)


class Engine:
    """A loaded version: models by name, the blend, popularity, and the policy that picks among them."""

    def __init__(
        self,
        models: dict[str, Recommender],
        policy: PolicyConfig,
        version: str,
        popularity: Popularity | None = None,
        indexes: dict[str, VectorIndex] | None = None,
        events_through_seq: int = 0,
        spec: dict[str, Any] | None = None,
        build_missing_indexes: bool = True,
    ) -> None:
        if not models:
            raise ConfigError("a served version needs at least one model")
        self.models = models
        self.policy = policy
        self.version = version
        self.events_through_seq = int(events_through_seq)
        self.spec = spec or {}
        first = next(iter(models.values()))
        self.items: IdMap = first.items_
        self.users: IdMap = first.users_
        for name, m in models.items():
            if m.items_ != self.items:
                raise ModelFormatError(
                    f"model '{name}' was fitted on other items than '{first.name}'; a version serves one catalogue"
                )
        self.fallback = first  # the library's popularity fallback: the same counts as every model's
        self.popularity = popularity or Popularity(first.item_counts())
        self.served: dict[str, Served] = {}
        indexes = indexes or {}
        for name, m in models.items():
            for key, part in indexed_parts(name, m):
                view = factor_view(part) if part.n_items >= policy.ann_min_items or key in indexes else None
                index = indexes.get(key)
                if view is not None and index is None and build_missing_indexes:
                    log.info("building %s index for '%s' (%d items)", policy.index_spec, key, part.n_items)
                    index = make_index(policy.index_spec).build(view.item_vectors)
                if key == name:
                    self.served[name] = Served(m, index if view is not None else None, view)
                else:  # a ranker's retriever: its candidates from the index, or its exact lists
                    source = (None,) if view is None or index is None else _candidate_source(index, view, part.user_items_)
                    m.set_candidate_source(key.split("/", 1)[1], *source)  # type: ignore[attr-defined]
        self.blend = self._make_blend()
        self.history = self._pick_history()
        self._warm()

    def _warm(self) -> None:
        """Pay one-off costs (id hash tables, compiled kernels, cached Gramians) at load time,
        before the swap, not in the first requests a new version answers."""
        if len(self.users):
            self.users.lookup(self.users.ids[:1].tolist())
        if len(self.items):
            self.items.lookup(self.items.ids[:1].tolist())
        ranking.warm()
        for served in self.served.values():
            if served.view is not None and served.view.history_vector is not None and len(self.items):
                try:
                    served.view.history_vector(np.zeros(1, np.int64), np.ones(1, np.float32))
                except Exception as exc:  # noqa: BLE001 - a failed warm-up only costs the first request
                    log.warning("warming '%s' failed: %s", served.name, exc)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, source: str | Path, version: str | None = None, *, verify: bool = True) -> Engine:
        """Load a registry folder (its current version) or a single saved model folder.

        ``verify=False`` skips the SHA-256 check of the files: for a version another worker of
        the same fleet has loaded and verified already."""
        source = Path(source)
        if is_model_folder(source):
            model = Recommender.load(source, verify=verify)
            return cls(
                {model.name: model}, PolicyConfig(), version=f"model:{source.name}", spec={"source": str(source)}
            )
        registry = ModelRegistry(source)
        path = registry.path(version)
        spec = registry.spec(path.name)
        policy = PolicyConfig.from_dict(spec.get("policy"))
        models: dict[str, Recommender] = {}
        for name in spec.get("models", []):
            models[name] = Recommender.load(_inside(path, "models", name), verify=verify)
        indexes = {}
        for name in spec.get("indexes", []):
            indexes[name] = load_index(index_path(path, name), verify=verify)
        pop = Popularity.load(path / "popularity") if (path / "popularity").is_dir() else None
        return cls(models, policy, path.name, pop, indexes, int(spec.get("events_through_seq", 0)), spec)

    def _make_blend(self) -> Served:
        # by default every model but the baselines (the ``baseline`` capability) is blended
        names = self.policy.collaborative or [n for n, m in self.models.items() if not m.baseline] or list(self.models)
        missing = [n for n in names if n not in self.models]
        if missing:
            raise ConfigError(
                f"policy.collaborative names models not in this version: {missing}; have {sorted(self.models)}"
            )
        if len(names) == 1:
            return self.served[names[0]]
        from tastebud.models.hybrid import Hybrid

        blend = Hybrid.from_fitted([self.models[n] for n in names], self.policy.weights, self.policy.fusion)
        return Served(blend)

    def _pick_history(self) -> Served | None:
        if self.policy.history_model is not None:
            if self.policy.history_model not in self.served:
                raise ConfigError(
                    f"policy.history_model '{self.policy.history_model}' is not in this version; have {sorted(self.models)}"
                )
            chosen = self.served[self.policy.history_model]
            if not chosen.supports_history:
                raise ConfigError(f"policy.history_model '{chosen.name}' cannot recommend from a history")
            return chosen
        # the models' own ``history_preference`` capability: lower first; None is never picked by itself
        capable = [s for s in self.served.values() if s.supports_history and s.model.history_preference is not None]
        capable.sort(key=lambda s: s.model.history_preference)
        if capable:
            return capable[0]
        return self.blend if self.blend.supports_history else None

    # ------------------------------------------------------------------ ids
    def user_key(self, raw: Any) -> str:
        return id_key(self.users.coerce_id(raw))

    def item_key(self, raw: Any) -> str:
        return id_key(self.items.coerce_id(raw))

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "models": {
                n: {"index": type(s.index).__name__ if s.index is not None else None, "history": s.supports_history}
                for n, s in self.served.items()
            },
            "collaborative": self.blend.name
            if not hasattr(self.blend.model, "models")
            else list(self.blend.model.models),
            "history_model": self.history.name if self.history else None,
            "policy": self.policy.to_dict(),
            "n_users": len(self.users),
            "n_items": len(self.items),
            "events_through_seq": self.events_through_seq,
        }

    # ------------------------------------------------------------------ serving
    def _model(self, name: str | None) -> Served | None:
        if name is None:
            return None
        if name not in self.served:
            raise UnknownIdError(f"unknown model {name!r}; this version serves: {', '.join(self.served)}")
        return self.served[name]

    def _history_from_events(self, events: list[tuple[str, float, int]]) -> tuple[np.ndarray, np.ndarray]:
        if not events:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        idx = self.items.lookup([key_id(e[0]) for e in events])
        vals = np.asarray([e[1] for e in events], np.float32)
        keep = idx >= 0
        return idx[keep], vals[keep]

    def recommend_user(
        self,
        user: Any,
        k: int = 10,
        model: str | None = None,
        exclude_seen: bool = True,
        context: dict[str, Any] | None = None,
        store: EventStore | None = None,
        candidates: list[Any] | None = None,
    ) -> Result:
        """A known or unknown person by id; their recorded events are folded in."""
        forced = self._model(model)
        allowed, warnings = self._allowed(candidates)
        ukey = self.user_key(user)
        new = store.user_events(ukey, self.events_through_seq) if store is not None else []
        new_idx, new_vals = self._history_from_events(new)
        uidx = self.users.position(key_id(ukey))
        if uidx < 0:
            res = self._for_history(new_idx, new_vals, k, exclude_seen, context, forced, allowed)
            res.new_events = len(new)
            res.warnings = warnings + res.warnings
            return res
        ui = self.blend.model.user_items_
        train_idx = ui.indices[ui.indptr[uidx] : ui.indptr[uidx + 1]].astype(np.int64)
        train_vals = ui.data[ui.indptr[uidx] : ui.indptr[uidx + 1]].astype(np.float32)
        n_hist = len(train_idx) + len(new_idx)
        exclude = np.unique(np.concatenate([train_idx, new_idx])) if exclude_seen else np.empty(0, np.int64)
        served = forced or self.blend
        path = "collaborative"
        if forced is None and n_hist < self.policy.short_history and self.history is not None and n_hist > 0:
            served, path = self.history, "history"
        if path == "history" or (len(new_idx) and served.supports_history):
            hidx = np.concatenate([train_idx, new_idx])
            hvals = np.concatenate([train_vals, new_vals])
            idx, val, why = served.for_history(hidx, hvals, k, exclude, allowed)
        else:
            idx, val, why = served.for_user(uidx, k, exclude, allowed)
        res = self._result(idx, val, why, path, served.name, warnings)
        res.history_length, res.new_events = n_hist, len(new)
        return res

    def recommend_history(
        self,
        items: list[Any],
        values: list[float] | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        context: dict[str, Any] | None = None,
        model: str | None = None,
        candidates: list[Any] | None = None,
    ) -> Result:
        """A person not in the model, from the items they had (oldest first)."""
        forced = self._model(model)
        allowed, warnings = self._allowed(candidates)
        idx = self.items.lookup(items) if items else np.empty(0, np.int64)
        vals = np.ones(len(items), np.float32) if values is None else np.asarray(values, np.float32)
        unknown = [items[i] for i in np.nonzero(idx < 0)[0]]
        if unknown:
            warnings.append(f"ignored {len(unknown)} unknown item(s): {', '.join(map(repr, unknown[:10]))}")
        keep = idx >= 0
        res = self._for_history(idx[keep], vals[keep], k, exclude_seen, context, forced, allowed)
        res.warnings = warnings + res.warnings
        return res

    def _for_history(
        self,
        hidx: np.ndarray,
        hvals: np.ndarray,
        k: int,
        exclude_seen: bool,
        context: dict[str, Any] | None,
        forced: Served | None,
        allowed: np.ndarray | None,
    ) -> Result:
        exclude = np.unique(hidx) if exclude_seen else np.empty(0, np.int64)
        n = len(hidx)
        warnings: list[str] = []
        if forced is not None and n and forced.supports_history:
            idx, val, why = forced.for_history(hidx, hvals, k, exclude, allowed)
            res = self._result(idx, val, why, "history", forced.name, warnings)
        elif n == 0 or (self.history is None and not self.blend.supports_history):
            if forced is not None and n and not forced.supports_history:
                warnings.append(f"model '{forced.name}' cannot recommend from a history; served by popularity")
            res = self._popular(k, context, exclude, allowed, warnings)
        elif n >= self.policy.short_history and self.blend.supports_history:
            idx, val, why = self.blend.for_history(hidx, hvals, k, exclude, allowed)
            res = self._result(idx, val, why, "collaborative", self.blend.name, warnings)
        else:
            served = self.history or self.blend
            idx, val, why = served.for_history(hidx, hvals, k, exclude, allowed)
            res = self._result(idx, val, why, "history", served.name, warnings)
        res.history_length = n
        return res

    def _popular(
        self,
        k: int,
        context: dict[str, Any] | None,
        exclude: np.ndarray,
        allowed: np.ndarray | None,
        warnings: list[str],
    ) -> Result:
        """No history to go on: the library's fallback (the most popular items of the training
        data), or, when ``context`` matches segments, popularity within them (a service extension)."""
        scores, matched = self.popularity.scores(context)
        if context and not matched:
            warnings.append(f"no popularity segment matches context {sorted(context)}; served overall popularity")
        if not matched:
            recs = self.fallback.popular_items(
                k,
                candidates=None if allowed is None else self.items.ids[allowed],
                exclude=self.items.ids[exclude] if len(exclude) else None,
            )
            counts = recs.scores_of(0)
            texts = [f"popular overall ({c:.0f} interactions overall)" for c in counts]
            return Result(recs.items_of(0), counts, texts, "popular", "popularity", list(warnings))
        idx, val = ranking.rank(scores, k, exclude=exclude, allowed=allowed)
        counts = self.popularity.counts
        why = f"popular with {', '.join(matched)}"
        texts = [f"{why} ({counts[i]:.0f} interactions overall)" for i in idx[idx >= 0]]
        return self._result(idx, val, texts, "popular", "popularity", warnings)

    def _allowed(self, candidates: list[Any] | None) -> tuple[np.ndarray | None, list[str]]:
        if candidates is None:
            return None, []
        idx = self.items.lookup(candidates)
        warnings = []
        if (idx < 0).any():
            unknown = [candidates[i] for i in np.nonzero(idx < 0)[0]]
            warnings.append(f"ignored {len(unknown)} unknown candidate item(s): {', '.join(map(repr, unknown[:10]))}")
        return np.unique(idx[idx >= 0]), warnings

    def _result(
        self, idx: np.ndarray, val: np.ndarray, why: list[str], path: str, model: str, warnings: list[str]
    ) -> Result:
        valid = idx >= 0
        ids = _ids(self.items.ids[idx[valid]])
        scores = val[valid].astype(np.float64).tolist()
        texts = list(why) + [f"{model} score"] * max(0, len(ids) - len(why))
        return Result(ids, scores, texts[: len(ids)], path, model, list(warnings))

    def similar(self, item: Any, k: int = 10, model: str | None = None) -> Result:
        served = self._model(model) or self.blend
        iidx = int(self.items.lookup([item])[0])
        if iidx < 0:
            raise UnknownIdError(f"unknown item id {item!r}")
        m = served.model
        if not m.supports_similar and served.index is not None and served.view is not None:
            # no similarity of its own: nearest item vectors by inner product
            q = served.view.item_vectors[iidx : iidx + 1]
            idx, val = served.index.search(q, k, exclude=[np.array([iidx])])
            idx, val = idx[0], val[0]
        else:
            if not m.supports_similar:
                fallback = next((s for s in self.served.values() if s.model.supports_similar), None)
                if fallback is None:
                    raise NotSupportedError(
                        f"no model in this version has item-to-item similarity ({', '.join(self.served)})"
                    )
                served, m = fallback, fallback.model
            top_idx, top_val = m.similar_rows(np.array([iidx]), k)
            idx, val = top_idx[0], top_val[0]
        texts = [f"{served.name}: similar to {_py(self.items.ids[iidx])!r}"] * int((idx >= 0).sum())
        return self._result(idx, val, texts, "similar", served.name, [])

    def predict(
        self, users: list[Any], items: list[Any], model: str | None = None
    ) -> tuple[np.ndarray, str, list[str]]:
        """Ratings for pairs (clipped to the rating scale), the model's name, and the fallbacks taken
        for unknown ids (the library's :meth:`RatingModel.predict_with_warnings`)."""
        served = self._model(model)
        if served is None:
            served = next((s for s in self.served.values() if s.model.predicts_ratings), None)
            if served is None:
                raise NotSupportedError(
                    f"no model in this version predicts ratings ({', '.join(self.served)} rank items)"
                )
        if not isinstance(served.model, RatingModel) or not served.model.predicts_ratings:
            raise NotSupportedError(f"model '{served.name}' ranks items; it does not predict ratings")
        pred, notes = served.model.predict_with_warnings(users, items)
        return pred, served.name, notes


_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def index_path(version: Path, name: Any) -> Path:
    """Where a version keeps the index called ``name``: ``index/<model>``, or
    ``index/<ranker>/<retriever>`` for a ranker's retriever (see :func:`indexed_parts`)."""
    if not isinstance(name, str) or name.count("/") > 1:
        raise ModelFormatError(f"{version / SERVING_JSON}: invalid index name {name!r}; refused")
    model, slash, retriever = name.partition("/")
    path = _inside(version, "index", model)
    return _inside(path.parent, model, retriever) if slash else path


def _inside(version: Path, kind: str, name: Any) -> Path:
    """``version/kind/name`` for a plain name that stays inside the version folder (no traversal)."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise ModelFormatError(f"{version / SERVING_JSON}: invalid {kind} name {name!r}; refused")
    path = version / kind / name
    if not path.resolve().is_relative_to(version.resolve()):
        raise ModelFormatError(f"{version / SERVING_JSON}: {kind} {name!r} resolves outside the version; refused")
    return path


def _texts(model: Recommender, uidx: int, idx: np.ndarray, history: sp.csr_matrix | None = None) -> list[str]:
    """The model's explanations as texts (a known user's history is their training row)."""
    valid = idx[idx >= 0]
    try:
        exps: list[Explanation] = model.explain_idx(uidx, valid, history)
        return [e.text or f"{model.name} score" for e in exps]
    except Exception:  # noqa: BLE001 - an explanation must never fail a request
        log.exception("explanation failed for model %s", model.name)
        return [f"{model.name} score"] * len(valid)


def _ids(arr: np.ndarray) -> list[Any]:
    """Plain Python ids (int or str) from an id array."""
    return arr.tolist() if arr.dtype != object else [_py(x) for x in arr]


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=_py)
