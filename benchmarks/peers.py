"""The top-N peers tastebud is compared with, behind tastebud's own ranking and evaluation.

A :class:`Peer` is a library's model as a benchmark needs it: the library's defaults, a search
space that mirrors its tastebud counterpart's (same ranges for the same ideas), and a fit that
returns a :class:`Carried` model: a tastebud recommender holding the peer's learned arrays. Every
side is then ranked (seen items excluded, ties, top-k) and scored by the same code
(:mod:`tastebud.core.ranking` through ``rank_rows``), so a difference in a table is a difference in
what was learned, never in how it was read.

Conventions: implicit's ALS weighs an observed cell by ``alpha * value``, tastebud's by
``1 + alpha * value`` (on binary data implicit ``alpha=5`` is tastebud ``alpha=4``), LensKit's
ImplicitMF by ``1 + weight`` (its ``weight`` is tastebud's ``alpha`` on clicks); implicit keeps
BPR's item bias as the last factor (users carry a constant 1 there), and cornac's BPR bias is
carried the same way; implicit and cornac score an item-item model as ``X W``, the training rows
times the item weights, as tastebud does. LensKit's item-kNN does not: for each target item it
sums the similarities of only the ``max_nbrs`` of the person's items most similar to it
(``lenskit_worker.knn_scores``), so it is carried as that rule. Items without events in the
training part are outside cornac's and LensKit's vocabularies: cornac's BPR and LensKit's models
give them no score (NaN: never ranked), as those libraries cannot score them; cornac's EASE and
VAECF carry 0 for them; tastebud's models and implicit's score them.

LensKit runs in an environment of its own (``.venv-lenskit``, ``make lenskit-env``: it pins
pandas 2, tastebud runs on pandas 3), through ``lenskit_worker.py`` as a subprocess that hands its
learned arrays back in an npz file and checks, before it does, that the carried rule gives its
own scorer's scores.

Strong generalisation (``bench_topn.py``) asks a peer for people it was not trained on; each
answers from their history ``h`` (a row over the training items) by its own rule, never by a
refit: ``h W`` for item-item models (implicit's item-kNN, cornac's EASE: what their own
``recommend`` does with a row of ``user_items``); implicit ALS's ``recalculate_user``, the exact
least-squares user step of its fit; LensKit's ImplicitMF, its own user solve against the final
item embeddings (which its scorer also uses for a training user: a query with a history ignores
the training user vectors); LensKit's item-kNN, its own top-``max_nbrs`` sum over the history;
cornac VAECF's encoder mean on the binarised history, decoded (its own ``score``). Models with no rule of their own for a new person (BPR: its user factors are
free parameters) are left out of that benchmark rather than given one we would have to invent.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import Recommender
from tastebud.core.errors import NotSupportedError
from tastebud.core.space import Categorical, Dist, Float, Int, LogFloat
from tastebud.data.interactions import Interactions

#: Threads every peer trains with (BLAS held to one thread, as implicit recommends).
THREADS = 2
BENCH = Path(__file__).resolve().parent
#: The interpreter of LensKit's own environment (``make lenskit-env``); ``TASTEBUD_LENSKIT_PYTHON`` overrides it.
LENSKIT_PYTHON = Path(os.environ.get("TASTEBUD_LENSKIT_PYTHON", BENCH.parent / ".venv-lenskit" / "bin" / "python"))


#: A peer's own rule for people it was not trained on: histories (n, n_items; csr, in the training
#: data's item order) -> user factors (n, f) for :meth:`Carried.of_factors`, scores (n, n_items)
#: for :meth:`Carried.of_encoder`.
FoldIn = Callable[[sp.csr_matrix], np.ndarray]


class Carried(Recommender):
    """A peer's fitted state behind tastebud's ranking: scores ``U V^T`` (factors), ``X W`` (item
    weights) or ``f(X)`` (an encoder).

    Built by :meth:`of_factors`, :meth:`of_item_weights` or :meth:`of_encoder` from a model another
    library fitted on ``train``; ``X`` is ``train``'s matrix, the rows the peer itself scores with.
    A history (fold-in) is scored as a row of ``X`` would be: ``h W``, ``f(h)``, or ``u V^T`` with
    ``u`` from the peer's own fold-in rule; a factor model without one cannot fold in.
    """

    supports_history = True

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
    def of_factors(
        cls, label: str, train: Interactions, users: Any, items: Any, fold_in: FoldIn | None = None
    ) -> Carried:
        """Scores are dot products of ``users`` (n_users, f) and ``items`` (n_items, f) rows;
        ``fold_in`` is the peer's rule for a new person's factors (none: no fold-in)."""
        model = cls._shell(label, train)
        model.user_factors_ = np.ascontiguousarray(_dense(users), np.float32)
        model.item_factors_ = np.ascontiguousarray(_dense(items), np.float32)
        model._fold_in = fold_in
        return model

    @classmethod
    def of_encoder(cls, label: str, train: Interactions, encode: FoldIn) -> Carried:
        """Scores are ``encode(X)``: the peer maps any history, a training user's row included, to scores."""
        model = cls._shell(label, train)
        model._encode = encode
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
            return self._of_rows(self.user_items_[user_idx], item_idx)
        if getattr(self, "_encode", None) is not None:
            return self._of_rows(self.user_items_[user_idx], item_idx)
        items = self.item_factors_ if item_idx is None else self.item_factors_[item_idx]
        return self.user_factors_[user_idx] @ items.T

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        row = sp.csr_matrix(
            (values.astype(np.float32), (np.zeros(len(item_idx), np.int64), item_idx)), shape=(1, self.n_items)
        )
        if hasattr(self, "weights_") or getattr(self, "_encode", None) is not None:
            return self._of_rows(row, None)[0]
        if getattr(self, "_fold_in", None) is None:
            raise NotSupportedError(f"{self.label} has no rule of its own to fold in a new person")
        return np.asarray(self._fold_in(row), np.float32).reshape(1, -1) @ self.item_factors_.T

    def _of_rows(self, rows: sp.csr_matrix, item_idx: np.ndarray | None) -> np.ndarray:
        """Scores of history rows (n, n_items) by item weights (``rows W``) or the encoder."""
        if hasattr(self, "weights_"):
            w = self.weights_ if item_idx is None else self.weights_[:, item_idx]
            block = rows @ w
            scores = np.asarray(block.toarray() if sp.issparse(block) else block, np.float32)
        else:
            scores = np.asarray(self._encode(sp.csr_matrix(rows)), np.float32)
            scores = scores if item_idx is None else scores[:, item_idx]
        return scores


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
    python: Path | None = None  # the interpreter it runs in when not this one (an environment of its own)

    def available(self) -> bool:
        import importlib.util

        if self.python is not None:
            return self.python.is_file()
        return importlib.util.find_spec(self.module.split(".")[0]) is not None

    def missing(self) -> str:
        """Why :meth:`available` is False, and what to do."""
        if self.python is not None:
            return f"{self.module}'s environment {self.python} is not there (make lenskit-env)"
        return f"{self.module} is not installed"


def _implicit_als(train: Interactions, params: dict[str, Any], seed: int) -> Carried:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        peer = AlternatingLeastSquares(**params, num_threads=THREADS, random_state=seed)
        peer.fit(train.matrix.tocsr(), show_progress=False)

    def fold_in(rows: sp.csr_matrix) -> np.ndarray:  # implicit's own least-squares user step
        with threadpool_limits(1, "blas"):
            return np.asarray(peer.recalculate_user(np.arange(rows.shape[0]), rows))

    return Carried.of_factors("implicit ALS", train, peer.user_factors, peer.item_factors, fold_in)


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


def _cornac_data(train: Interactions, seed: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """``train`` as a cornac Dataset, and the item positions that match: ours[j] is theirs[j].

    cornac numbers items by first appearance and never sees items without training events.
    """
    from cornac.data import Dataset

    m = train.matrix.tocoo()
    triples = list(zip(m.row.astype(str), m.col.astype(str), m.data.astype(float), strict=True))
    data = Dataset.from_uir(triples, seed=seed)
    ours = np.array([int(raw) for raw in data.iid_map], np.int64)
    theirs = np.array(list(data.iid_map.values()), np.int64)
    return data, ours, theirs


def _cornac_bpr(train: Interactions, params: dict[str, Any], seed: int) -> Carried:
    """cornac's BPR (Rendle et al. 2009); its item bias carried as implicit's is: the items' last
    factor, a constant 1 on the users' side, so ``u . v + b`` is one dot product, cornac's own
    ``score``. A seed makes cornac train on one thread."""
    from cornac.models import BPR

    data, ours, theirs = _cornac_data(train, seed)
    peer = BPR(**params, verbose=False, seed=seed).fit(data)
    users = np.zeros((train.n_users, peer.k + 1), np.float32)
    mine = np.array([int(raw) for raw in data.uid_map], np.int64)
    users[mine] = np.hstack([peer.u_factors, np.ones((len(mine), 1))])[np.array(list(data.uid_map.values()))]
    items = np.full((train.n_items, peer.k + 1), np.nan, np.float32)  # items cornac never saw: no score
    items[ours] = np.hstack([peer.i_factors, peer.i_biases.reshape(-1, 1)])[theirs]
    return Carried.of_factors("cornac BPR", train, users, items)


def _cornac_ease(train: Interactions, params: dict[str, Any], seed: int) -> Carried:
    from cornac.models import EASE

    data, ours, theirs = _cornac_data(train, seed)
    peer = EASE(**params, verbose=False, seed=seed).fit(data)
    weights = np.zeros((train.n_items, train.n_items), np.float32)
    weights[np.ix_(ours, ours)] = peer.B[np.ix_(theirs, theirs)]
    return Carried.of_item_weights("cornac EASE", train, weights)


def _cornac_vaecf(train: Interactions, params: dict[str, Any], seed: int) -> Carried:
    """cornac's Mult-VAE (``VAECF``, one hidden layer of ``hidden`` units); a history is scored as
    cornac's own ``score`` scores a training row: binarised, encoded to its mean, decoded."""
    import torch
    from cornac.models import VAECF

    params = dict(params)
    hidden = int(params.pop("hidden"))
    data, ours, theirs = _cornac_data(train, seed)
    peer = VAECF(**params, autoencoder_structure=[hidden], verbose=False, seed=seed).fit(data)
    peer.vae.eval()

    def encode(rows: sp.csr_matrix) -> np.ndarray:
        x = np.zeros((rows.shape[0], data.num_items), np.float32)
        x[:, theirs] = rows[:, ours].toarray() != 0
        with torch.no_grad():
            z, _ = peer.vae.encode(torch.from_numpy(x))
            decoded = peer.vae.decode(z).numpy()
        scores = np.zeros((rows.shape[0], train.n_items), np.float32)  # items cornac never saw: 0, last
        scores[:, ours] = decoded[:, theirs]
        return scores

    return Carried.of_encoder("cornac VAECF", train, encode)


def _lenskit(model: str, train: Interactions, params: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """Fit LensKit's ``model`` (``als`` or ``knn``) in its own environment; its arrays, checked there."""
    m = train.matrix.tocoo()
    keep = m.data != 0
    with tempfile.TemporaryDirectory(prefix="tastebud-lenskit-") as tmp:
        work = Path(tmp)
        np.savez(work / "train.npz", user=m.row[keep].astype(np.int64), item=m.col[keep].astype(np.int64),
                 shape=np.array(m.shape, np.int64))  # fmt: skip
        spec = {"model": model, "params": params, "seed": seed, "threads": THREADS}
        (work / "params.json").write_text(json.dumps(spec))
        proc = subprocess.run([str(LENSKIT_PYTHON), str(BENCH / "lenskit_worker.py"), str(work)],
                              capture_output=True, text=True)  # fmt: skip
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"LensKit {model} worker failed (exit {proc.returncode}): {tail}")
        with np.load(work / "out.npz", allow_pickle=False) as out:
            return {k: out[k] for k in out.files}


def _lenskit_als(train: Interactions, params: dict[str, Any], seed: int) -> Carried:
    """LensKit's ImplicitMF; every person, a training user included, scored from their history by
    LensKit's own user solve (what its scorer does with a query that carries one)."""
    from lenskit_worker import als_fold_in

    got = _lenskit("als", train, params, seed)
    items, otor, weight = got["item_factors"], got["otor"], float(got["weight"])

    def fold_in(rows: sp.csr_matrix) -> np.ndarray:
        return als_fold_in(items, otor, weight, rows)

    return Carried.of_factors("LensKit ALS", train, fold_in(train.matrix.tocsr()), items, fold_in)


def _lenskit_knn(train: Interactions, params: dict[str, Any], seed: int) -> Carried:
    """LensKit's ItemKNN on implicit feedback, scored by its own rule: per target item, the sum of
    the ``max_nbrs`` largest similarities to the person's items (``lenskit_worker.knn_scores``)."""
    from lenskit_worker import knn_scores

    params = {"feedback": "implicit", **params}
    got = _lenskit("knn", train, params, seed)
    sims = sp.csr_matrix((got["data"], got["indices"], got["indptr"]), shape=(train.n_items, train.n_items))
    k, min_nbrs = int(params.get("max_nbrs", 20)), int(params.get("min_nbrs", 1))
    return Carried.of_encoder("LensKit item-kNN", train, lambda rows: knn_scores(sims, rows, k, min_nbrs))


def lenskit_version() -> str:
    """The LensKit release in its own environment."""
    proc = subprocess.run([str(LENSKIT_PYTHON), str(BENCH / "lenskit_worker.py"), "--version"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return proc.stdout.strip()


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
CORNAC_BPR = Peer(
    "cornac BPR", "bpr", "cornac", _cornac_bpr,
    space={
        "k": Int(8, 256, log=True), "learning_rate": LogFloat(1e-3, 0.2), "lambda_reg": LogFloat(1e-5, 0.1),
        "max_iter": Int(10, 200, log=True),
    },
    defaults={"k": 10, "max_iter": 100, "learning_rate": 0.001, "lambda_reg": 0.01, "use_bias": True},
)  # fmt: skip
# LensKit's ImplicitMF: plain L2 (tastebud's reg_exponent 0), so ials's reg_exponent has no counterpart
LENSKIT_ALS = Peer(
    "LensKit ALS", "ials", "lenskit", _lenskit_als,
    space={
        "embedding_size": Int(8, 256, log=True), "regularization": LogFloat(1e-2, 100.0),
        "weight": LogFloat(0.5, 50.0), "epochs": Int(5, 30),
    },
    defaults={"embedding_size": 50, "regularization": 0.1, "weight": 40.0, "epochs": 10},
    python=LENSKIT_PYTHON,
)  # fmt: skip
# LensKit's ItemKNN has one similarity (cosine) and no shrinkage; its default feedback="explicit"
# mean-centres ratings, which on clicks leaves nothing (LensKit warns), so it runs with implicit
# feedback, the mode LensKit documents for clicks (a stated setting, not searched)
LENSKIT_KNN = Peer(
    "LensKit item-kNN", "itemknn", "lenskit", _lenskit_knn,
    space={"max_nbrs": Int(5, 200, log=True)},
    defaults={"max_nbrs": 20, "min_nbrs": 1, "feedback": "implicit"},
    stochastic=False,
    python=LENSKIT_PYTHON,
)  # fmt: skip
CORNAC_EASE = Peer(
    "cornac EASE", "ease", "cornac", _cornac_ease,
    space={"lamb": LogFloat(1.0, 5000.0), "posB": Categorical([True, False])},
    defaults={"lamb": 500, "posB": True},
    stochastic=False,
)  # fmt: skip

CORNAC_VAECF = Peer(
    "cornac VAECF", "mult_vae", "cornac", _cornac_vaecf,
    space={
        "k": Int(32, 400, log=True), "hidden": Int(100, 1000, log=True), "beta": Float(0.0, 1.0),
        "learning_rate": LogFloat(1e-4, 1e-2),
    },
    defaults={"k": 10, "hidden": 20, "act_fn": "tanh", "likelihood": "mult", "n_epochs": 100, "batch_size": 100,
              "learning_rate": 0.001, "beta": 1.0},
)  # fmt: skip

#: Every peer, by the name ``--models`` selects it with.
PEERS: dict[str, Peer] = {
    "implicit-als": IMPLICIT_ALS,
    "implicit-bpr": IMPLICIT_BPR,
    "implicit-knn": IMPLICIT_KNN,
    "cornac-ease": CORNAC_EASE,
    "cornac-bpr": CORNAC_BPR,
    "lenskit-als": LENSKIT_ALS,
    "lenskit-knn": LENSKIT_KNN,
}
#: The peers with a rule of their own for a person they were not trained on (strong
#: generalisation, ``bench_topn.py``): the item-item models, the ALS models, and cornac's Mult-VAE.
FOLD_IN_PEERS: dict[str, Peer] = {
    "implicit-als": IMPLICIT_ALS,
    "lenskit-als": LENSKIT_ALS,
    "implicit-knn": IMPLICIT_KNN,
    "lenskit-knn": LENSKIT_KNN,
    "cornac-ease": CORNAC_EASE,
    "cornac-vaecf": CORNAC_VAECF,
}
