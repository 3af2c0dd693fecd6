"""The top-N peers tastebud is compared with, behind tastebud's own ranking and evaluation.

A :class:`Peer` is a library's model as a benchmark needs it: the library's defaults, a search
space that mirrors its tastebud counterpart's (same ranges for the same ideas), and a fit that
returns a :class:`Carried` model: a tastebud recommender holding the peer's learned arrays. Every
side is then ranked (seen items excluded, ties, top-k) and scored by the same code
(:mod:`tastebud.core.ranking` through ``rank_rows``), so a difference in a table is a difference in
what was learned, never in how it was read.

Conventions: implicit's ALS weighs an observed cell by ``alpha * value``, tastebud's by
``1 + alpha * value`` (on binary data implicit ``alpha=5`` is tastebud ``alpha=4``); implicit keeps
BPR's item bias as the last factor (users carry a constant 1 there); implicit and cornac score an
item-item model as ``X W``, the training rows times the item weights, as tastebud does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import Recommender
from tastebud.core.errors import NotSupportedError
from tastebud.core.space import Categorical, Dist, Int, LogFloat
from tastebud.data.interactions import Interactions

#: Threads every peer trains with (BLAS held to one thread, as implicit recommends).
THREADS = 2


class Carried(Recommender):
    """A peer's fitted state behind tastebud's ranking: scores ``U V^T`` (factors) or ``X W`` (item weights).

    Built by :meth:`of_factors` or :meth:`of_item_weights` from a model another library fitted on
    ``train``; ``X`` is ``train``'s matrix, the rows the peer itself scores with.
    """

    def __init__(self, label: str = "peer") -> None:
        self.label = label

    def _fit(self, data: Interactions) -> None:
        raise NotSupportedError("Carried holds a peer's fitted state: build it with of_factors or of_item_weights")

    @classmethod
    def _shell(cls, label: str, train: Interactions) -> Carried:
        model = cls(label)
        model.record_fit(train.users, train.items, train.matrix, train.fingerprint(), None)
        return model

    @classmethod
    def of_factors(cls, label: str, train: Interactions, users: Any, items: Any) -> Carried:
        """Scores are dot products of ``users`` (n_users, f) and ``items`` (n_items, f) rows."""
        model = cls._shell(label, train)
        model.user_factors_ = np.ascontiguousarray(_dense(users), np.float32)
        model.item_factors_ = np.ascontiguousarray(_dense(items), np.float32)
        return model

    @classmethod
    def of_item_weights(cls, label: str, train: Interactions, weights: Any) -> Carried:
        """Scores are ``X W``: a user's training row times ``weights`` (n_items, n_items; sparse or dense)."""
        model = cls._shell(label, train)
        model.weights_ = (
            sp.csr_matrix(weights, dtype=np.float32) if sp.issparse(weights) else np.asarray(weights, np.float32)
        )
        return model

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        if hasattr(self, "weights_"):
            w = self.weights_ if item_idx is None else self.weights_[:, item_idx]
            block = self.user_items_[user_idx] @ w
            return np.asarray(block.toarray() if sp.issparse(block) else block, np.float32)
        items = self.item_factors_ if item_idx is None else self.item_factors_[item_idx]
        return self.user_factors_[user_idx] @ items.T


def _dense(a: Any) -> np.ndarray:
    return a.to_numpy() if hasattr(a, "to_numpy") else np.asarray(a)  # implicit's GPU arrays have to_numpy


@dataclass(frozen=True)
class Peer:
    """One peer model: how to fit it, its library's defaults, and what a search may try."""

    label: str  # as the tables show it: "implicit ALS"
    counterpart: str  # the tastebud model it mirrors; its carve is the peer's carve
    module: str  # the import that must succeed for the peer to run
    fit: Callable[[Interactions, dict[str, Any], int], Carried]  # (train, params, seed) -> carried model
    space: dict[str, Dist]
    defaults: dict[str, Any] = field(default_factory=dict)  # the library's own defaults, stated
    stochastic: bool = True

    def available(self) -> bool:
        import importlib.util

        return importlib.util.find_spec(self.module.split(".")[0]) is not None


def _implicit_als(train: Interactions, params: dict[str, Any], seed: int) -> Carried:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        peer = AlternatingLeastSquares(**params, num_threads=THREADS, random_state=seed)
        peer.fit(train.matrix.tocsr(), show_progress=False)
    return Carried.of_factors("implicit ALS", train, peer.user_factors, peer.item_factors)


def _implicit_bpr(train: Interactions, params: dict[str, Any], seed: int) -> Carried:
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        peer = BayesianPersonalizedRanking(**params, num_threads=THREADS, random_state=seed)
        peer.fit(train.matrix.tocsr(), show_progress=False)
    return Carried.of_factors("implicit BPR", train, peer.user_factors, peer.item_factors)  # bias: last factor


def _implicit_knn(train: Interactions, params: dict[str, Any], seed: int) -> Carried:
    from implicit import nearest_neighbours as nn

    params = dict(params)
    cls = {"cosine": nn.CosineRecommender, "bm25": nn.BM25Recommender, "tfidf": nn.TFIDFRecommender}[
        params.pop("similarity")
    ]
    peer = cls(**params, num_threads=THREADS)
    peer.fit(train.matrix.tocsr(), show_progress=False)
    return Carried.of_item_weights("implicit item-kNN", train, peer.similarity)


def _cornac_ease(train: Interactions, params: dict[str, Any], seed: int) -> Carried:
    from cornac.data import Dataset
    from cornac.models import EASE

    m = train.matrix.tocoo()
    triples = list(zip(m.row.astype(str), m.col.astype(str), m.data.astype(float), strict=True))
    data = Dataset.from_uir(triples, seed=seed)
    peer = EASE(**params, verbose=False, seed=seed).fit(data)
    # cornac numbers items by first appearance and never sees items without training events
    ours = np.array([int(raw) for raw in data.iid_map], np.int64)
    theirs = np.array(list(data.iid_map.values()), np.int64)
    weights = np.zeros((train.n_items, train.n_items), np.float32)
    weights[np.ix_(ours, ours)] = peer.B[np.ix_(theirs, theirs)]
    return Carried.of_item_weights("cornac EASE", train, weights)


IMPLICIT_ALS = Peer(
    "implicit ALS", "ials", "implicit", _implicit_als,
    space={
        "factors": Int(8, 256, log=True), "regularization": LogFloat(1e-2, 100.0), "alpha": LogFloat(0.5, 50.0),
        "iterations": Int(5, 30),
    },
    defaults={"factors": 100, "regularization": 0.01, "alpha": 1.0, "iterations": 15},
)  # fmt: skip
IMPLICIT_BPR = Peer(
    "implicit BPR", "bpr", "implicit", _implicit_bpr,
    space={
        "factors": Int(8, 256, log=True), "learning_rate": LogFloat(1e-3, 0.2), "regularization": LogFloat(1e-5, 0.1),
        "iterations": Int(10, 200, log=True),
    },
    defaults={"factors": 100, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100},
)  # fmt: skip
IMPLICIT_KNN = Peer(
    "implicit item-kNN", "itemknn", "implicit", _implicit_knn,
    space={"K": Int(5, 200, log=True), "similarity": Categorical(["cosine", "bm25", "tfidf"])},
    defaults={"K": 20, "similarity": "cosine"},
    stochastic=False,
)  # fmt: skip
CORNAC_EASE = Peer(
    "cornac EASE", "ease", "cornac", _cornac_ease,
    space={"lamb": LogFloat(1.0, 5000.0), "posB": Categorical([True, False])},
    defaults={"lamb": 500, "posB": True},
    stochastic=False,
)  # fmt: skip

#: Every peer, by the name ``--models`` selects it with.
PEERS: dict[str, Peer] = {
    "implicit-als": IMPLICIT_ALS,
    "implicit-bpr": IMPLICIT_BPR,
    "implicit-knn": IMPLICIT_KNN,
    "cornac-ease": CORNAC_EASE,
}
