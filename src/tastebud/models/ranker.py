"""Ranker: two-stage recommendation, candidates from several models ordered by a learned LightGBM ranker.

The shape of production recommenders (Covington, Adams & Sargin 2016, "Deep neural networks for
YouTube recommendations"): cheap *retrieval* of a few hundred candidates from several sources,
then a *ranking* model that looks at many signals of each candidate at once.

* **Stage 1**: every retriever (any registered model) proposes its top ``candidates`` items per
  person through its public ``recommend`` / ``recommend_for_history``; the lists are merged, each
  item once, and the person's own items are left out.
* **Stage 2**: each (person, candidate) pair gets one feature vector from :data:`FEATURE_GROUPS`
  (retrieval scores and ranks, popularity, freshness, the person's activity, content and
  co-occurrence similarity, side features) and LightGBM orders them with LambdaRank (Burges 2010,
  "From RankNet to LambdaRank to LambdaMART") or XE-NDCG (Bruch 2019, ``rank_xendcg``).

Learning without leakage: the retrievers are fitted on a *carve* of the training data (a per-user
holdout, or each user's latest events when there are timestamps); the carved-out events are the
labels the ranker learns from, statistics are counted on the carve alone, and boosting stops
early on a further group of users; then the retrievers are refitted on all the training data.
``carves`` such carves (each with its own fit of the retrievers) give the booster more examples.
See docs/ranker.md, which also says how to add a feature.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tastebud.core.base import Recommender, non_negative, positive
from tastebud.core.errors import (
    ConfigError,
    DataError,
    ModelFormatError,
    NotSupportedError,
    TrainingError,
    UnknownModelError,
)
from tastebud.core.members import load_members, member_files
from tastebud.core.progress import progress_bar
from tastebud.core.registry import get_model, register
from tastebud.core.results import Explanation
from tastebud.core.space import Categorical, Dist, Int, LogFloat
from tastebud.data import splits
from tastebud.data.features import ItemFeatureEncoder, infer_kind
from tastebud.data.interactions import Interactions
from tastebud.kernels import trees

#: EASE joins the default retrievers up to this many items (its dense item x item matrix).
EASE_MAX_ITEMS = 20_000
#: "Recent" popularity and activity count the events of the last tenth of the data's time span.
RECENT_SHARE = 0.1
#: A categorical side column becomes a feature when it has at most this many values.
MAX_CATEGORIES = 100
#: People per block when candidates and features are built (bounds the memory of dense blocks).
_BLOCK = 256
#: A content block with more than this share of cells set is held dense (a text embedding).
DENSE_BLOCK = 0.5
#: What a fitted ranker caches between requests (derived from its fitted state, never saved).
_CACHES = ("_cached_stats", "_cached_columns", "_cached_content", "_cached_forest", "_last_scored")


# ---------------------------------------------------------------------------- what features read
@dataclass
class Stats:
    """Event statistics the features read: counted on the carve while the ranker learns (so no
    label leaks into a feature), on all training data afterwards."""

    matrix: sp.csr_matrix  # users x items: each known user's items
    last: sp.csr_matrix  # users x items: each known user's last few items (1 each)
    item_log_count: np.ndarray  # log(1 + interactions) per item
    item_recent: np.ndarray | None  # log(1 + interactions in the recent window) per item
    item_age_days: np.ndarray | None  # days from an item's first event to the data's last (NaN: never seen)
    user_recent: np.ndarray | None  # log(1 + events in the recent window) per user

    @classmethod
    def count(cls, data: Interactions, last_items: int) -> Stats:
        m = sp.csr_matrix(data.matrix, dtype=np.float32)
        counts = np.bincount(m.indices, minlength=data.n_items).astype(np.float64)
        recent = age = user_recent = None
        if data.timestamps is not None and len(data):
            ts = data.timestamps
            end, start = int(ts.max()), int(ts.min())
            window = ts >= end - RECENT_SHARE * (end - start)
            recent = np.log1p(np.bincount(data.item_idx[window], minlength=data.n_items)).astype(np.float32)
            user_recent = np.log1p(np.bincount(data.user_idx[window], minlength=data.n_users)).astype(np.float32)
            first = np.full(data.n_items, np.iinfo(np.int64).max, np.int64)
            np.minimum.at(first, data.item_idx, ts)
            age = np.where(first <= end, (end - first) / 86400.0, np.nan).astype(np.float32)
        return cls(m, last_events(data, last_items), np.log1p(counts).astype(np.float32), recent, age, user_recent)


def last_events(data: Interactions, n: int) -> sp.csr_matrix:
    """users x items, 1 on each user's last ``n`` events (by time, then input order)."""
    times = data.timestamps if data.timestamps is not None else np.zeros(len(data), np.int64)
    order = np.lexsort((np.arange(len(data)), times, data.user_idx))
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    starts = np.cumsum(counts) - counts
    users = data.user_idx[order]
    from_end = counts[users] - 1 - (np.arange(len(order)) - starts[users])
    keep = order[from_end < n]
    out = sp.csr_matrix(
        (np.ones(len(keep), np.float32), (data.user_idx[keep], data.item_idx[keep])), shape=(data.n_users, data.n_items)
    )
    out.data[:] = 1.0  # a repeated item counts once
    return out


@dataclass
class Batch:
    """A block of people, their merged candidates and what the retrievers said about them."""

    stats: Stats
    users: np.ndarray  # (n,) user index, -1 for a person given by a history
    history: sp.csr_matrix  # (n, n_items): each person's items, with their values
    last: sp.csr_matrix  # (n, n_items): each person's last few items
    cand: np.ndarray  # (n, C) candidate item indices, -1 pads a short row
    retrieved: dict[str, tuple[np.ndarray, np.ndarray]]  # retriever -> (score, rank), NaN where not proposed

    @property
    def items(self) -> np.ndarray:
        """``cand`` with the padding clipped to 0 (its features are dropped later)."""
        return np.maximum(self.cand, 0)

    def per_person(self, values: np.ndarray) -> np.ndarray:
        """A per-person value repeated for each of the person's candidates: (n, C)."""
        return np.repeat(np.asarray(values, np.float32)[:, None], self.cand.shape[1], axis=1)


# ---------------------------------------------------------------------------- the feature groups
# One function per group: (ranker, batch) -> {feature name: (n, C) array}. NaN means "missing"
# (LightGBM learns where missing values go). To add a feature, write a function and add it to
# FEATURE_GROUPS; a saved model lists the names it was trained with and refuses a different set.


def retrieval_features(model: Ranker, b: Batch) -> dict[str, np.ndarray]:
    """Each retriever's score, its score standardised over the person's list (scales differ from person
    to person), and its rank (all missing when it did not propose the item), and how many proposed it."""
    out: dict[str, np.ndarray] = {}
    proposing = np.zeros(b.cand.shape, np.float32)
    for name, (score, rank) in b.retrieved.items():
        out[f"{name}_score"] = score
        # the mean and spread over the proposed items (a retriever may propose none: mean 0, z missing)
        finite = np.isfinite(score)
        count = np.maximum(finite.sum(axis=1, keepdims=True), 1)
        mean = np.where(finite, score, 0.0).sum(axis=1, keepdims=True) / count
        std = np.sqrt((np.where(finite, score - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count)
        out[f"{name}_score_z"] = ((score - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
        out[f"{name}_rank"] = rank
        proposing += np.isfinite(rank)
    out["retrievers_proposing"] = proposing
    return out


def popularity_features(model: Ranker, b: Batch) -> dict[str, np.ndarray]:
    """How popular the item is overall and, with timestamps, lately."""
    out = {"item_popularity": b.stats.item_log_count[b.items]}
    if b.stats.item_recent is not None:
        out["item_popularity_recent"] = b.stats.item_recent[b.items]
    return out


def freshness_features(model: Ranker, b: Batch) -> dict[str, np.ndarray]:
    """Item age: days since the item's first interaction (needs timestamps)."""
    if b.stats.item_age_days is None:
        return {}
    return {"item_age_days": b.stats.item_age_days[b.items]}


def activity_features(model: Ranker, b: Batch) -> dict[str, np.ndarray]:
    """The person's history length, how mainstream it is, and (known users, timestamps) recent activity."""
    length = np.diff(b.history.indptr).astype(np.float32)
    seen = b.history.copy()
    seen.data[:] = 1.0
    mean_pop = np.asarray(seen @ b.stats.item_log_count.astype(np.float64)).ravel() / np.maximum(length, 1.0)
    out = {"history_length": b.per_person(length), "history_mean_popularity": b.per_person(mean_pop)}
    if b.stats.user_recent is not None:
        known = b.users >= 0
        recent = np.where(known, b.stats.user_recent[np.maximum(b.users, 0)], np.nan)
        out["user_recent_activity"] = b.per_person(recent)
    return out


def content_features(model: Ranker, b: Batch) -> dict[str, np.ndarray]:
    """Per feature block (genres, text, ...): cosine between the candidate and the person's history profile."""
    blocks = model._content_blocks()
    if not blocks:
        return {}
    seen = b.history.copy()
    seen.data[:] = 1.0
    out = {}
    for name, (Vk, VkT) in blocks.items():
        P = seen @ Vk  # the profile: the sum of the person's items' vectors
        if VkT is None:  # a dense block (text embeddings): dense products
            P = np.asarray(P, np.float32)
            norm = np.sqrt(np.einsum("ij,ij->i", P, P))
            sims = P @ Vk.T
        else:
            P = sp.csr_matrix(P)
            norm = np.sqrt(np.asarray(P.multiply(P).sum(axis=1)).ravel())
            sims = (P @ VkT).toarray()
        sims = np.asarray(sims, np.float32) / np.where(norm > 0, norm, 1.0).astype(np.float32)[:, None]
        out[f"content_{name}"] = np.take_along_axis(sims, b.items, axis=1)
    return out


def last_items_features(model: Ranker, b: Batch) -> dict[str, np.ndarray]:
    """Mean cosine between the candidate and the person's last few items, the items being their
    columns of the interaction matrix (who else had them)."""
    cols, cols_t = model._item_columns(b.stats)
    n_last = np.diff(b.last.indptr).astype(np.float32)
    sims = np.asarray(((b.last @ cols) @ cols_t).todense(), np.float32) / np.maximum(n_last, 1.0)[:, None]
    out = np.take_along_axis(sims, b.items, axis=1)
    out[n_last == 0] = np.nan
    return {"last_items_similarity": out}


def side_features(model: Ranker, b: Batch) -> dict[str, np.ndarray]:
    """The numeric and categorical columns of the data's item and user feature tables."""
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(model.item_side_names_):
        out[f"item_{name}"] = model.item_side_[b.items, j]
    known = b.users >= 0
    for j, name in enumerate(model.user_side_names_):
        out[f"user_{name}"] = b.per_person(np.where(known, model.user_side_[np.maximum(b.users, 0), j], np.nan))
    return out


FeatureGroup = Callable[["Ranker", Batch], dict[str, np.ndarray]]
#: A retriever's candidates from elsewhere (see :meth:`Ranker.set_candidate_source`):
#: (user indices, k, allowed item indices or None) -> (item indices, scores), each (n, k).
CandidateFn = Callable[[np.ndarray, int, "np.ndarray | None"], tuple[np.ndarray, np.ndarray]]
#: (history item indices, values, k=...) -> (item indices, scores), each (k,).
HistoryCandidateFn = Callable[..., tuple[np.ndarray, np.ndarray]]
FEATURE_GROUPS: list[FeatureGroup] = [
    retrieval_features,
    popularity_features,
    freshness_features,
    activity_features,
    content_features,
    last_items_features,
    side_features,
]


# ---------------------------------------------------------------------------- the model
@register("ranker")
class Ranker(Recommender):
    """Candidates from several models, ordered by LightGBM LambdaRank over many signals (see the module docstring)."""

    supports_history = True  # an instance sets it from its retrievers: True when any folds a person in
    heavy = True  # fits several retrievers twice, then the booster
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("lightgbm", "boost"),)
    fast_params: ClassVar[dict[str, Any]] = {
        "retrievers": {"itemknn": {"neighbors": 10}, "ease": {"reg": 50.0}, "popular": {}},
        "candidates": 30,
        "trees": 30,
        "leaves": 7,
        "min_leaf": 5,
        "patience": 10,
        "carves": 2,
    }
    # which retrievers to use is the user's design (tune them on their own); the ranker's trade-offs are searched
    search_space: ClassVar[dict[str, Dist]] = {
        "leaves": Int(7, 127, log=True),
        "min_leaf": Int(5, 200, log=True),
        "learning_rate": LogFloat(0.01, 0.3),
        "candidates": Int(50, 400, log=True),
        "objective": Categorical(["lambdarank", "rank_xendcg"]),
        "carves": Int(1, 5),
    }

    def __init__(
        self,
        retrievers: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
        candidates: int = 200,
        objective: Literal["lambdarank", "rank_xendcg"] = "lambdarank",
        trees: int = 500,
        leaves: int = 15,
        min_leaf: int = 50,
        learning_rate: float = 0.05,
        carve: float = 0.2,
        carve_by: Literal["auto", "time", "random"] = "auto",
        carves: int = 5,
        validation: float = 0.2,
        patience: int = 50,
        last_items: int = 5,
        threads: int = 1,
        random_state: int = 0,
    ) -> None:
        self.retrievers = retrievers
        self.candidates = candidates
        self.objective = objective
        self.trees = trees
        self.leaves = leaves
        self.min_leaf = min_leaf
        self.learning_rate = learning_rate
        self.carve = carve
        self.carve_by = carve_by
        self.carves = carves
        self.validation = validation
        self.patience = patience
        self.last_items = last_items
        self.threads = threads
        self.random_state = random_state

    # ------------------------------------------------------------------ params
    def _validate_params(self) -> None:
        positive(
            "Ranker", candidates=self.candidates, trees=self.trees, min_leaf=self.min_leaf,
            learning_rate=self.learning_rate, patience=self.patience, last_items=self.last_items, carves=self.carves,
        )  # fmt: skip
        non_negative("Ranker", threads=self.threads, random_state=self.random_state)
        if self.leaves < 2:
            raise ConfigError(f"Ranker: leaves must be >= 2, got {self.leaves!r}")
        if not 0.0 < self.carve < 1.0:
            raise ConfigError(f"Ranker: carve must be between 0 and 1 (exclusive), got {self.carve!r}")
        if not 0.0 <= self.validation < 1.0:
            raise ConfigError(f"Ranker: validation must be in [0, 1), got {self.validation!r}")
        if self.retrievers is not None:
            self._specs_from(self.retrievers)

    @staticmethod
    def _specs_from(retrievers: Any) -> dict[str, dict[str, Any]]:
        if isinstance(retrievers, Mapping):
            specs = dict(retrievers)
        elif isinstance(retrievers, (list, tuple)):
            if len(set(retrievers)) != len(retrievers):
                raise ConfigError(f"Ranker: retrievers has duplicate names: {list(retrievers)}")
            specs = {name: {} for name in retrievers}
        else:
            raise ConfigError(
                f"Ranker: retrievers must be a list of model names or {{name: params}}, got {retrievers!r}"
            )
        if not specs:
            raise ConfigError("Ranker: retrievers is empty; name at least one model")
        for name, params in specs.items():
            if not isinstance(name, str) or not isinstance(params, Mapping):
                raise ConfigError(f"Ranker: retrievers: '{name}' must be a model name with a dict of its parameters")
            if name == Ranker.name:
                raise ConfigError(f"Ranker: retrievers cannot contain '{Ranker.name}' itself")
        return {name: dict(params) for name, params in specs.items()}

    def retriever_specs(self, data: Interactions) -> dict[str, dict[str, Any]]:
        """The retrievers to fit on ``data`` ({name: params}): the ``retrievers`` parameter, or the
        default set: ease (catalogues up to :data:`EASE_MAX_ITEMS`), ials, itemknn, rp3beta,
        sasrec where there are timestamps, two_tower where there are item features (both when
        torch is installed), and popular. Each gets the ranker's ``random_state`` unless given one."""
        if self.retrievers is not None:
            specs = self._specs_from(self.retrievers)
        else:
            names = ["ease"] if data.n_items <= EASE_MAX_ITEMS else []
            names += ["ials", "itemknn", "rp3beta"]
            if data.timestamps is not None and _installed("sasrec"):
                names.append("sasrec")
            if data.item_features is not None and _installed("two_tower"):
                names.append("two_tower")
            specs = {name: {} for name in [*names, "popular"]}
        out = {}
        for name, params in specs.items():
            try:
                cls = get_model(name)
                cls(**params)
            except UnknownModelError as exc:
                raise ConfigError(f"Ranker: retrievers: {exc}") from None
            except (TypeError, ConfigError) as exc:
                raise ConfigError(f"Ranker: retrievers: parameters of '{name}': {exc}") from None
            if "random_state" in cls._param_names():
                params = {"random_state": int(self.random_state), **params}
            out[name] = params
        return out

    # ------------------------------------------------------------------ fit
    def _fit(self, data: Interactions) -> None:
        for key in ("feature_names_", "_sources", *_CACHES):  # a refit starts afresh
            self.__dict__.pop(key, None)
        specs = self.retriever_specs(data)
        self._static_features(data)
        carves = self._carve_labels(data)
        with progress_bar((len(carves) + 1) * len(specs) + 1, "ranker", "step") as bar:
            folds = []
            for split in carves:
                carved = []
                for name, params in specs.items():
                    carved.append(get_model(name)(**params).fit(split.train))
                    bar.update(1)
                labels = sp.csr_matrix(split.test.matrix)
                labels.data[:] = 1.0
                folds.append((carved, Stats.count(split.train, self.last_items), labels))
            self._train_booster(folds, bar)
            members = []
            for name, params in specs.items():  # refitted on all the training data
                members.append(get_model(name)(**params).fit(data))
                bar.update(1)
        self.retriever_names_ = list(specs)
        self._attach(members)
        full = Stats.count(data, self.last_items)
        self.last_items_ = full.last
        self.item_recent_, self.item_age_days_, self.user_recent_ = (
            full.item_recent,
            full.item_age_days,
            full.user_recent,
        )

    def _carve_labels(self, data: Interactions) -> list[splits.Split]:
        """The events the ranker learns from, ``carves`` times over: each user's latest ``carve``
        share (``carve_by="time"``, the default with timestamps), then the same share just before it,
        and so on (each carve's retrievers see only what came before its labels); or random shares
        (``"random"``, the default without), a different draw each carve."""
        by = self.carve_by if self.carve_by != "auto" else ("time" if data.timestamps is not None else "random")
        out: list[splits.Split] = []
        if by == "time":
            if data.timestamps is None:
                raise DataError(f"{data.summary.source}: ranker: carve_by='time' needs timestamps; use 'random'")
            counts = np.bincount(data.user_idx, minlength=data.n_users)
            n = max(1, int(round(self.carve * float(np.median(counts[counts > 0])))))
            rest = data
            for _ in range(int(self.carves)):
                split = splits.leave_last_out(rest, n=n, min_interactions=max(2, n + 2))
                assert isinstance(split, splits.Split)
                if len(split.test) == 0:
                    break
                out.append(split)
                rest = split.train
        else:
            for c in range(int(self.carves)):
                split = splits.holdout(data, fraction=self.carve, random_state=int(self.random_state) + c)
                assert isinstance(split, splits.Split)
                if len(split.test):
                    out.append(split)
        if not out:
            raise DataError(
                f"{data.summary.source}: ranker: too few interactions per user to carve out events to learn "
                f"ranking from (carve_by={by!r} carved out none)"
            )
        return out

    def _train_booster(self, folds: list[tuple[list[Recommender], Stats, sp.csr_matrix]], bar: Any) -> None:
        """LambdaRank on every carve's examples (carved retrievers, their statistics, the labels);
        a person's examples of every carve go to the same side of the early-stopping split."""
        lgb = _lightgbm()
        users = np.unique(np.concatenate([np.nonzero(np.diff(labels.indptr) > 0)[0] for _, _, labels in folds]))
        rng = np.random.default_rng(int(self.random_state))
        users = rng.permutation(users)
        n_val = int(round(self.validation * len(users))) if len(users) >= 4 else 0
        groups = {"valid": np.sort(users[:n_val]), "train": np.sort(users[n_val:])}
        sets: dict[str, Any] = {}
        cats: list[str] = []
        for part, uidx in groups.items():
            found = [self._examples(carved, stats, uidx, labels) for carved, stats, labels in folds]
            X, y, sizes = (np.concatenate([f[i] for f in found]) for i in range(3))
            if not len(sizes):
                continue
            names = self.feature_names_
            cats = [n for n in names if n in self.categorical_]
            sets[part] = lgb.Dataset(
                X, label=y, group=sizes, feature_name=names, categorical_feature=cats or "auto",
                params={"verbosity": -1}, free_raw_data=True,
            )  # fmt: skip
        if "train" not in sets:
            raise TrainingError(
                "ranker: no candidate of any retriever was among the carved-out events, so there is nothing to "
                f"learn from; raise candidates (now {self.candidates}) or use stronger retrievers"
            )
        valid = [sets["valid"].set_reference(sets["train"])] if "valid" in sets else []
        evals: dict[str, Any] = {}
        callbacks = [lgb.record_evaluation(evals)]
        if valid:
            callbacks.append(lgb.early_stopping(int(self.patience), first_metric_only=True, verbose=False))
        booster = lgb.train(
            self._lgb_params(), sets["train"], num_boost_round=int(self.trees), valid_sets=valid,
            valid_names=["valid"] if valid else None, callbacks=callbacks,
        )  # fmt: skip
        best = booster.best_iteration if valid and booster.best_iteration > 0 else booster.current_iteration()
        self._booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        self.trees_ = int(best)
        curve = evals.get("valid", {}).get("ndcg@10", [])
        self.validation_ndcg_ = float(curve[best - 1]) if curve else None
        self.feature_gain_ = self._booster.feature_importance(importance_type="gain").astype(np.float64)
        bar.update(1)

    def _threads(self) -> int:
        """``threads``, 0 meaning every core."""
        return int(self.threads) or (os.cpu_count() or 1)

    def _lgb_params(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "metric": "ndcg",
            "eval_at": [10],
            "learning_rate": float(self.learning_rate),
            "num_leaves": int(self.leaves),
            "min_data_in_leaf": int(self.min_leaf),
            "seed": int(self.random_state),
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self._threads(),
            "verbosity": -1,
        }

    def _examples(
        self, retrievers: list[Recommender], stats: Stats, uidx: np.ndarray, labels: sp.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feature rows, 0/1 labels and group sizes for ``uidx``, dropping people with no positive candidate."""
        Xs, ys, sizes = [], [], []
        for s in range(0, len(uidx), _BLOCK):
            block = uidx[s : s + _BLOCK]
            b = self._batch(retrievers, stats, users=block)
            X = self._matrix(b)
            lab = labels[block]
            y = np.zeros(b.cand.shape, np.float32)
            for r in range(len(block)):
                y[r] = np.isin(b.cand[r], lab.indices[lab.indptr[r] : lab.indptr[r + 1]])
            mask = b.cand >= 0
            counts = mask.sum(axis=1)
            positives = (y * mask).sum(axis=1)
            keep_rows = np.repeat(positives > 0, counts)
            Xs.append(X[keep_rows])
            ys.append(y[mask][keep_rows])
            sizes.append(counts[positives > 0])
        n_feat = len(self.feature_names_)
        if not Xs:
            return np.empty((0, n_feat), np.float32), np.empty(0, np.float32), np.empty(0, np.int64)
        return np.vstack(Xs), np.concatenate(ys), np.concatenate(sizes)

    # ------------------------------------------------------------------ static (label-free) features
    def _static_features(self, data: Interactions) -> None:
        """Content blocks and side columns from the data's feature tables (they hold no events)."""
        self.item_content_ = None
        self.content_names_: list[str] = []
        self.content_block_ = np.empty(0, np.int64)
        self.categorical_: list[str] = []
        self.item_side_names_: list[str] = []
        self.item_side_ = np.empty((data.n_items, 0), np.float32)
        self.user_side_names_: list[str] = []
        self.user_side_ = np.empty((data.n_users, 0), np.float32)
        if data.item_features is not None:
            frame = _aligned(data.item_features, data.items)
            text = {}
            for col in frame.columns:
                kind = infer_kind(frame[col])
                if kind in ("multi", "text"):
                    text[str(col)] = {"kind": kind, "column": col}
            if text:
                enc = ItemFeatureEncoder(text).fit(frame.dropna(how="all"))
                self.item_content_ = sp.csr_matrix(enc.transform(frame), dtype=np.float32)
                self.content_names_ = [b["name"] for b in enc.spec_]
                self.content_block_ = enc.block_of_column().astype(np.int64)
            self.item_side_names_, self.item_side_ = self._side(frame, "item", skip=set(text))
        if data.user_features is not None:
            self.user_side_names_, self.user_side_ = self._side(_aligned(data.user_features, data.users), "user")

    def _side(self, frame: pd.DataFrame, prefix: str, skip: set[str] | None = None) -> tuple[list[str], np.ndarray]:
        """Numeric columns as they are, categorical ones (2 to MAX_CATEGORIES values) as codes."""
        names, cols = [], []
        skip = skip or set()
        for col in frame.columns:
            name, series = str(col), frame[col]
            if name in skip:
                continue
            if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
                values = pd.to_numeric(series, errors="coerce").to_numpy(np.float64, na_value=np.nan)
            else:
                if series.map(lambda v: isinstance(v, (list, tuple, set, np.ndarray))).any():
                    continue
                codes, uniques = pd.factorize(series.astype("string"), sort=True)
                if len(uniques) > MAX_CATEGORIES or len(uniques) < 2:
                    continue
                values = np.where(codes >= 0, codes, np.nan)
                self.categorical_.append(f"{prefix}_{name}")
            names.append(name)
            cols.append(values.astype(np.float32))
        return names, (np.column_stack(cols) if cols else np.empty((len(frame), 0), np.float32))

    # ------------------------------------------------------------------ candidates and features
    def _attach(self, members: list[Recommender]) -> None:
        self._retrievers = members
        self.supports_history = any(m.supports_history for m in members)

    @property
    def retrievers_fitted(self) -> list[Recommender]:
        """The fitted retrievers (on all the training data), in the order of ``retriever_names_``."""
        self._check_fitted()
        return list(self._retrievers)

    def set_candidate_source(
        self,
        retriever: str,
        users: CandidateFn | None,
        history: HistoryCandidateFn | None = None,
    ) -> None:
        """Find ``retriever``'s candidates through ``users`` (and ``history`` for a person given by
        a history) instead of its exact ``rank_rows`` / ``rank_history_idx``; ``users=None`` goes back
        to exact lists. The extension point a layer above uses to put a vector index behind the
        retrievers whose scores are inner products (the service does, for large catalogues). A source
        must return what the exact method would: item indices and scores, best first, the person's
        own items excluded, -1 / NaN padded. Not saved; a refit drops it."""
        self._check_fitted()
        if retriever not in self.retriever_names_:
            raise ConfigError(f"Ranker: no retriever named {retriever!r}; it has {', '.join(self.retriever_names_)}")
        sources = dict(self.__dict__.get("_sources", {}))
        if users is None:
            sources.pop(retriever, None)
        else:
            sources[retriever] = (users, history)
        self._sources = sources

    def candidate_source(self, retriever: str) -> tuple[CandidateFn, HistoryCandidateFn | None] | None:
        """The source :meth:`set_candidate_source` installed for ``retriever``, or None (exact lists)."""
        return self.__dict__.get("_sources", {}).get(retriever)

    def _stats(self) -> Stats:
        cached = self.__dict__.get("_cached_stats")
        if cached is None or cached.matrix is not self.user_items_:
            counts = np.bincount(self.user_items_.indices, minlength=self.n_items).astype(np.float64)
            cached = self._cached_stats = Stats(
                self.user_items_, self.last_items_, np.log1p(counts).astype(np.float32),
                self.item_recent_, self.item_age_days_, self.user_recent_,
            )  # fmt: skip
        return cached

    def _item_columns(self, stats: Stats) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """items x users, each item's column of the interaction matrix at unit length, and its
        transpose (both cached per matrix: a request would otherwise transpose it again)."""
        cached = self.__dict__.get("_cached_columns")
        if cached is None or cached[0] is not stats.matrix:
            cols = sp.csr_matrix(stats.matrix.T, dtype=np.float32)
            cols.data[:] = 1.0
            norms = np.sqrt(np.diff(cols.indptr)).astype(np.float32)
            cols = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1.0)) @ cols, dtype=np.float32)
            cached = self._cached_columns = (stats.matrix, cols, sp.csr_matrix(cols.T))
        return cached[1], cached[2]

    def _content_blocks(self) -> dict[str, tuple[Any, sp.csr_matrix | None]]:
        """Each content block's item vectors, cached: (dense array, None) for a dense block (most
        cells set, like a text embedding), else (csr, its csr transpose)."""
        V = self.item_content_
        cached = self.__dict__.get("_cached_content")
        if V is None:
            return {}
        if cached is None or cached[0] is not V:
            blocks: dict[str, tuple[Any, sp.csr_matrix | None]] = {}
            for k, name in enumerate(self.content_names_):
                Vk = sp.csr_matrix(V[:, np.nonzero(self.content_block_ == k)[0]], dtype=np.float32)
                if Vk.nnz > DENSE_BLOCK * Vk.shape[0] * Vk.shape[1]:
                    blocks[name] = (np.ascontiguousarray(Vk.toarray()), None)
                else:
                    blocks[name] = (Vk, sp.csr_matrix(Vk.T))
            cached = self._cached_content = (V, blocks)
        return cached[1]

    def _batch(
        self,
        retrievers: list[Recommender],
        stats: Stats,
        users: np.ndarray | None = None,
        history: tuple[np.ndarray, np.ndarray] | None = None,
        items: np.ndarray | None = None,
    ) -> Batch:
        """Merged candidates of known ``users`` (indices) or of one ``history`` (item indices, values),
        restricted to ``items`` when given, through the retrievers' public index-level methods (every
        retriever is fitted on the ranker's data or a split of it: the same vocabularies)."""
        k = int(self.candidates)
        # sources installed from above serve the fitted retrievers only, never the carved ones
        sources = self.__dict__.get("_sources", {}) if retrievers is self.__dict__.get("_retrievers") else {}
        picked = [sources.get(name, (None, None)) for name in self._names(retrievers)]
        if users is not None:
            hist, last = stats.matrix[users], stats.last[users]
            lists: list[tuple[np.ndarray, np.ndarray] | None] = [
                by_users(users, k, items) if by_users else r.rank_rows(users, k=k, allowed=items)
                for r, (by_users, _) in zip(retrievers, picked, strict=True)
            ]
            person = np.asarray(users, np.int64)
        else:
            assert history is not None
            iidx, vals = history
            n_items = len(self.items_)
            hist = sp.csr_matrix((vals, (np.zeros(len(iidx), int), iidx)), shape=(1, n_items), dtype=np.float32)
            hist.sum_duplicates()
            tail = np.unique(iidx[-int(self.last_items) :])
            last = sp.csr_matrix((np.ones(len(tail), np.float32), (np.zeros(len(tail), int), tail)), shape=(1, n_items))
            lists = [
                None
                if not r.supports_history
                else tuple(a[None, :] for a in (by_history or r.rank_history_idx)(iidx, vals, k=k))
                for r, (_, by_history) in zip(retrievers, picked, strict=True)
            ]
            person = np.array([-1], np.int64)
        n = len(person)
        found: list[list[tuple[np.ndarray, np.ndarray]] | None] = []
        for got in lists:
            if got is None:
                found.append(None)
                continue
            idx, val = got
            found.append([(idx[j][idx[j] >= 0], val[j][idx[j] >= 0]) for j in range(n)])
        rows = []
        for j in range(n):
            parts = [f[j][0] for f in found if f is not None]
            merged = np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)
            seen = hist.indices[hist.indptr[j] : hist.indptr[j + 1]]
            rows.append(merged[(merged >= 0) & ~np.isin(merged, seen)])
        width = max(1, max((len(r) for r in rows), default=0))
        cand = np.full((n, width), -1, np.int64)
        for j, r in enumerate(rows):
            cand[j, : len(r)] = r
        retrieved = {}
        for name, f in zip(self._names(retrievers), found, strict=True):
            score = np.full((n, width), np.nan, np.float32)
            rank = np.full((n, width), np.nan, np.float32)
            if f is not None:
                for j in range(n):
                    idx, val = f[j]
                    pos = np.searchsorted(rows[j], idx)
                    ok = (pos < len(rows[j])) & (rows[j][np.minimum(pos, max(len(rows[j]) - 1, 0))] == idx)
                    score[j, pos[ok]] = val[ok]
                    rank[j, pos[ok]] = np.arange(1, len(idx) + 1, dtype=np.float32)[ok]
            retrieved[name] = (score, rank)
        return Batch(stats, person, sp.csr_matrix(hist), sp.csr_matrix(last), cand, retrieved)

    def _names(self, retrievers: list[Recommender]) -> list[str]:
        return list(getattr(self, "retriever_names_", None) or [r.name for r in retrievers])

    def _matrix(self, b: Batch) -> np.ndarray:
        """(pairs, features) float32, the real candidates of each person in row order; names checked."""
        columns: dict[str, np.ndarray] = {}
        for group in FEATURE_GROUPS:
            columns.update(group(self, b))
        names = list(columns)
        expected = self.__dict__.get("feature_names_")
        if expected is None:
            self.feature_names_ = names
        elif names != list(expected):
            raise ModelFormatError(
                f"ranker: the features built now ({', '.join(names)}) differ from those the model was trained with "
                f"({', '.join(expected)}); was a feature group added or removed since it was saved?"
            )
        mask = b.cand >= 0
        return np.column_stack([np.asarray(columns[n], np.float32)[mask] for n in names]).astype(np.float32)

    def _predict(self, b: Batch, X: np.ndarray | None = None) -> np.ndarray:
        """(n, C) raw LightGBM scores, NaN on padding; ``X`` is ``_matrix(b)`` when already built."""
        mask = b.cand >= 0
        out = np.full(b.cand.shape, np.nan, np.float32)
        if mask.any():
            out[mask] = self._run_trees(self._matrix(b) if X is None else X)
        return out

    def _run_trees(self, X: np.ndarray, contributions: bool = False) -> np.ndarray:
        """Raw scores (n,), or TreeSHAP values and base (n, features + 1), of feature rows: through
        the compiled forest, or LightGBM itself for a booster the kernels cannot reproduce."""
        forest, threads = self._forest(), self._threads()
        if forest is None:
            kind = {"pred_contrib": True} if contributions else {"raw_score": True}
            return np.asarray(self._booster.predict(X, num_threads=threads, **kind), np.float64)
        return (trees.contributions if contributions else trees.predict_raw)(forest, X, threads=threads)

    def _forest(self) -> trees.Forest | None:
        """The booster compiled for :mod:`tastebud.kernels.trees` (the same scores and TreeSHAP
        values as LightGBM's, several times faster on a served list), built once per booster;
        None for a booster it cannot reproduce, which LightGBM then runs itself."""
        cached = self.__dict__.get("_cached_forest")
        if cached is None or cached[0] is not self._booster:
            try:
                forest = trees.compile_booster(self._booster)
            except NotImplementedError:
                forest = None
            cached = self._cached_forest = (self._booster, forest)
        return cached[1]

    @staticmethod
    def _floored(cand: np.ndarray, scores: np.ndarray, width: int, pos: np.ndarray | None) -> np.ndarray:
        """Dense rows: candidates' scores, everything else a floor 1 below the row's lowest candidate,
        so the base class's one top-k, exclusions and filters still apply."""
        n = len(cand)
        lowest = np.nanmin(np.where(cand >= 0, scores, np.inf), axis=1) if cand.shape[1] else np.zeros(n)
        floor = np.where(np.isfinite(lowest), lowest - 1.0, 0.0).astype(np.float32)
        out = np.repeat(floor[:, None], width, axis=1)
        rows, cols = np.nonzero(cand >= 0)
        target = cand[rows, cols] if pos is None else pos[cand[rows, cols]]
        ok = target >= 0
        out[rows[ok], target[ok]] = scores[rows[ok], cols[ok]]
        return out

    # ------------------------------------------------------------------ scoring hooks
    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        width = self.n_items if item_idx is None else len(item_idx)
        pos = None
        if item_idx is not None:
            pos = np.full(self.n_items, -1, np.int64)
            pos[item_idx] = np.arange(len(item_idx))
        stats = self._stats()
        out = np.empty((len(user_idx), width), np.float32)
        for s in range(0, len(user_idx), _BLOCK):
            b = self._batch(self._retrievers, stats, users=np.asarray(user_idx[s : s + _BLOCK]), items=item_idx)
            X = self._matrix(b)
            out[s : s + _BLOCK] = self._floored(b.cand, self._predict(b, X), width, pos)
            if len(user_idx) == 1 and item_idx is None:
                # the service explains the list it just scored: keep this person's candidates and
                # features for _explain (one tuple, replaced whole: safe across request threads)
                self._last_scored = (int(user_idx[0]), stats.matrix, b, X)
        return out

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        if not self.supports_history:
            raise NotSupportedError(
                f"none of the ranker's retrievers ({', '.join(self.retriever_names_)}) recommends from a history"
            )
        stats = self._stats()
        b = self._batch(self._retrievers, stats, history=(np.asarray(item_idx, np.int64), np.asarray(values)))
        X = self._matrix(b)
        self._last_scored = (-1, stats.matrix, b, X)  # the service explains this list next (see _score)
        return self._floored(b.cand, self._predict(b, X), self.n_items, None)[0]

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        """Each feature's contribution to the item's score (LightGBM's ``pred_contrib``; they add up to it)."""
        stats, last = self._stats(), self.__dict__.get("_last_scored")
        X = None
        if user_idx < 0:
            history = sp.csr_matrix(history, dtype=np.float32)
            history.sum_duplicates()
        if last is not None and last[0] == user_idx and last[1] is stats.matrix and (
            user_idx >= 0
            or (np.array_equal(last[2].history.indices, history.indices) and np.array_equal(last[2].history.data, history.data))
        ):
            b, X = last[2], last[3]  # the person just scored: the same candidates and features
        elif user_idx >= 0:
            b = self._batch(self._retrievers, stats, users=np.array([user_idx]))
        else:
            b = self._batch(self._retrievers, stats, history=(history.indices.astype(np.int64), history.data))
        row = b.cand[0]
        real = row[row >= 0]
        where = {int(i): j for j, i in enumerate(real)}
        # TreeSHAP costs far more than a prediction: only the rows of the items asked about (a
        # served list asks about 10 of several hundred candidates), each row's contributions alone
        rows = sorted({where[int(i)] for i in item_idx if int(i) in where})
        X = self._matrix(b) if X is None else X
        contrib = self._run_trees(X[rows], contributions=True) if rows else np.empty((0, len(self.feature_names_) + 1))
        at = {j: r for r, j in enumerate(rows)}
        out = []
        for i in item_idx:
            j = where.get(int(i))
            if j is None:
                out.append(Explanation("not proposed by any retriever: ranked below every candidate"))
                continue
            parts = contrib[at[j]]
            order = np.argsort(-np.abs(parts[:-1]), kind="stable")
            pairs = [(self.feature_names_[k], float(parts[k])) for k in order] + [("(base)", float(parts[-1]))]
            top = ", ".join(f"{name} {value:+.3f}" for name, value in pairs[:3])
            out.append(Explanation(f"ranked {parts.sum():.3f} by the ranker: {top}", pairs))
        return out

    def feature_importance(self, kind: Literal["gain", "split"] = "gain") -> dict[str, float]:
        """Each feature's total gain (or number of splits) in the trees, largest first."""
        self._check_fitted()
        values = self._booster.feature_importance(importance_type=kind)
        pairs = sorted(zip(self.feature_names_, map(float, values), strict=True), key=lambda p: -p[1])
        return dict(pairs)

    # ------------------------------------------------------------------ persistence
    def _extra_files(self) -> dict[str, bytes]:
        files = {"ranker.lightgbm.txt": self._booster.model_to_string().encode("utf-8")}
        files.update(member_files(self._retrievers, prefix="retriever"))
        return files

    def _load_extra(self, files: dict[str, bytes]) -> None:
        lgb = _lightgbm()
        try:
            self._booster = lgb.Booster(model_str=files["ranker.lightgbm.txt"].decode("utf-8"))
        except KeyError:
            raise ModelFormatError("ranker model folder lacks ranker.lightgbm.txt") from None
        except lgb.basic.LightGBMError as exc:
            raise ModelFormatError(f"ranker.lightgbm.txt cannot be read: {exc}") from None
        self._attach(load_members(self, list(self.retriever_names_), files, prefix="retriever"))
        self._forest()  # compiled now, not on the first request


# ---------------------------------------------------------------------------- helpers
def _aligned(frame: pd.DataFrame, vocab: Any) -> pd.DataFrame:
    """A feature table re-indexed to the vocabulary's order (rows of unknown ids dropped, missing ones NaN)."""
    pos = vocab.lookup(frame.index.tolist())
    out = frame.iloc[np.nonzero(pos >= 0)[0]].copy()
    out.index = pos[pos >= 0]
    return out.reindex(np.arange(len(vocab)))


def _installed(name: str) -> bool:
    try:
        get_model(name)
    except UnknownModelError:
        return False
    return True


def _lightgbm() -> Any:
    """LightGBM, imported when a ranker trains or loads (the ``boost`` extra)."""
    try:
        import lightgbm
    except ImportError:
        raise ConfigError("Ranker: needs LightGBM: pip install 'tastebud[boost]'") from None
    return lightgbm


__all__ = ["FEATURE_GROUPS", "Batch", "Ranker", "Stats"]
