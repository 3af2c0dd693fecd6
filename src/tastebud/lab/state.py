"""What the lab keeps in memory: data sets, models trained on demand, evaluation results.

One :class:`LabState` per app (``app.state.tastebud_lab``). Models are fitted the first time a
page asks for them and cached; a lock per (data set, model) makes concurrent requests wait for
one fit instead of starting two.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import Recommender
from tastebud.core.errors import NotSupportedError, TastebudError, UnknownModelError
from tastebud.core.registry import BUILTIN, get_model, list_models
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions
from tastebud.data.splits import Split

#: Models whose default hyper-parameters train for tens of seconds or minutes on a CPU (torch
#: networks, Gibbs sampling): the lab trains them with their ``fast_params`` and does not select
#: them by default.
HEAVY_MODULES = {"tastebud.models.ncf", "tastebud.models.two_tower", "tastebud.models.sasrec"}
HEAVY_MODELS = {"bayesmf", "blend"}
#: Selected by default in the explorer when available (quick to train, different families).
DEFAULT_PICKS = ("popular", "itemknn", "ials", "ease", "content", "bpr", "svd", "userknn")
SYNTHETIC_SIZE = (600, 300, 20_000)
EVAL_KMAX = 20


class LabError(TastebudError, ValueError):
    """A request the lab cannot serve (unknown data set, model not offered here)."""


@dataclass
class Dataset:
    """A data set the explorer can show: full data (for user pages) and a split (for evaluation)."""

    name: str
    label: str
    data: Interactions
    make_split: Callable[[], Split] | None
    saved_models: dict[str, Recommender] = field(default_factory=dict)
    svd_vectors: np.ndarray | None = None
    _split: Split | None = None

    @property
    def split(self) -> Split:
        if self._split is None:
            if self.make_split is None:
                raise LabError(f"data set '{self.name}' has no evaluation split")
            self._split = self.make_split()
        return self._split

    # item metadata ---------------------------------------------------------
    def titles(self) -> list[str]:
        if not hasattr(self, "_titles"):
            feats = self.data.item_features
            ids = [str(x) for x in self.data.items.ids]
            if feats is not None and "title" in feats.columns:
                col = feats["title"].reindex(self.data.items.ids)
                self._titles = [
                    str(t) if isinstance(t, str) and t else i for t, i in zip(col.tolist(), ids, strict=True)
                ]
            else:
                self._titles = ids
        return self._titles

    def genres(self) -> list[list[str]]:
        if not hasattr(self, "_genres"):
            feats = self.data.item_features
            out: list[list[str]] = [[] for _ in range(self.data.n_items)]
            if feats is not None and "genres" in feats.columns:
                col = feats["genres"].reindex(self.data.items.ids)
                out = [[str(g) for g in v] if isinstance(v, (list, tuple, np.ndarray)) else [] for v in col.tolist()]
            self._genres = out
        return self._genres

    def popularity(self) -> np.ndarray:
        if not hasattr(self, "_pop"):
            self._pop = self.data.item_counts()
        return self._pop

    def item_record(self, idx: int) -> dict[str, Any]:
        return {
            "item": _py(self.data.items.ids[idx]),
            "title": self.titles()[idx],
            "genres": self.genres()[idx],
            "count": int(self.popularity()[idx]),
        }


class LabState:
    """Data sets and models of one lab; everything is built lazily and cached."""

    def __init__(
        self,
        models_dir: str | os.PathLike[str] | None = None,
        *,
        models: Sequence[str] | None = None,
        synthetic_size: tuple[int, int, int] = SYNTHETIC_SIZE,
        data_root: str | os.PathLike[str] | None = None,
        params: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.models_dir = None if models_dir is None else Path(models_dir)
        self.only_models = None if models is None else list(models)
        self.synthetic_size = synthetic_size
        root = data_root if data_root is not None else os.environ.get("TASTEBUD_DATA")
        self.data_root = None if root is None else Path(root)
        self.params = dict(params or {})
        self._datasets: dict[str, Dataset] = {}
        self._fits: dict[tuple[str, str, str], tuple[Recommender | None, str | None, float]] = {}
        self._evals: dict[tuple[str, str, int], dict[str, Any]] = {}
        self._locks: dict[Any, threading.Lock] = {}
        self._guard = threading.Lock()
        self._saved: dict[str, Recommender] | None = None

    # ------------------------------------------------------------------ locking
    def _lock(self, key: Any) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    # ------------------------------------------------------------------ data sets
    def dataset_names(self) -> list[str]:
        names = ["synthetic"]
        if self.data_root is not None and (self.data_root / "ml-100k" / "u.data").is_file():
            names.append("ml-100k")
        names += [f"saved:{n}" for n in self.saved_models()]
        return names

    def dataset(self, name: str) -> Dataset:
        if name not in self.dataset_names():
            raise LabError(f"unknown data set '{name}'; available: {', '.join(self.dataset_names())}")
        with self._lock(("dataset", name)):
            if name not in self._datasets:
                self._datasets[name] = self._build_dataset(name)
            return self._datasets[name]

    def _build_dataset(self, name: str) -> Dataset:
        if name == "synthetic":
            from tastebud.data.synthetic import generate

            n_users, n_items, n_inter = self.synthetic_size
            data = generate(n_users=n_users, n_items=n_items, n_interactions=n_inter, explicit=True, random_state=0)
            ds = Dataset(
                name, f"Synthetic ({n_users} users, {n_items} items, seed 0)", data, lambda: holdout_split(data)
            )
        elif name == "ml-100k":
            from tastebud.data.movielens import load_ml100k, ml100k_folds

            root = self.data_root
            data = load_ml100k(root)
            ds = Dataset(name, "MovieLens 100K", data, lambda: ml100k_folds(root, folds=(1,))[0])
        else:
            model_name = name.split(":", 1)[1]
            model = self.saved_models()[model_name]
            data = interactions_of(model)
            ds = Dataset(name, f"Training data of saved model '{model_name}'", data, None)
            ds.saved_models[f"saved:{model_name}"] = model
            return ds
        fp = data.fingerprint()
        for saved_name, model in self.saved_models().items():
            if getattr(model, "fingerprint_", None) == fp:
                ds.saved_models[f"saved:{saved_name}"] = model
        return ds

    def saved_models(self) -> dict[str, Recommender]:
        """Models loaded from ``models_dir``: one saved model folder, or a folder of them."""
        if self._saved is None:
            from tastebud.core.persist import MANIFEST

            out: dict[str, Recommender] = {}
            if self.models_dir is not None:
                root = self.models_dir
                if not root.is_dir():
                    raise LabError(f"{root}: model folder not found")
                folders = (
                    [root]
                    if (root / MANIFEST).is_file()
                    else sorted(p for p in root.iterdir() if (p / MANIFEST).is_file())
                )
                if not folders:
                    raise LabError(f"{root}: no saved model here (no {MANIFEST} in it or its sub-folders)")
                for folder in folders:
                    out[folder.name] = Recommender.load(folder)
            self._saved = out
        return self._saved

    # ------------------------------------------------------------------ models
    def model_names(self) -> list[str]:
        names = []
        for name in list_models():
            if self.only_models is not None and name not in self.only_models:
                continue
            try:
                get_model(name)
            except UnknownModelError:
                continue  # optional dependency missing
            names.append(name)
        return names

    def model_info(self, dataset: str | None = None) -> list[dict[str, Any]]:
        out = []
        for name in self.model_names():
            cls = get_model(name)
            out.append(
                {
                    "name": name,
                    "supports_history": bool(cls.supports_history),
                    "predicts_ratings": bool(cls.predicts_ratings),
                    "heavy": is_heavy(name),
                    "default": name in DEFAULT_PICKS,
                    "doc": (cls.__doc__ or "").strip().split("\n")[0],
                    "params": self.params_for(name),
                }
            )
        if dataset is not None:
            for name, model in self.dataset(dataset).saved_models.items():
                out.insert(
                    0,
                    {
                        "name": name,
                        "supports_history": bool(model.supports_history),
                        "predicts_ratings": bool(model.predicts_ratings),
                        "heavy": False,
                        "default": True,
                        "doc": f"saved {model.name} model",
                        "params": model.get_params(),
                    },
                )
        return out

    def params_for(self, name: str) -> dict[str, Any]:
        if name in self.params:
            return dict(self.params[name])
        cls = get_model(name)
        return dict(cls.fast_params) if is_heavy(name) else {}

    def check_models(self, dataset: str, names: Sequence[str]) -> list[str]:
        ds = self.dataset(dataset)
        offered = set(self.model_names()) | set(ds.saved_models)
        bad = [n for n in names if n not in offered]
        if bad:
            raise LabError(f"model(s) not offered here: {', '.join(bad)}; choose from {', '.join(sorted(offered))}")
        if not names:
            raise LabError("choose at least one model")
        return list(dict.fromkeys(names))

    def fitted(self, dataset: str, name: str, part: str = "full") -> tuple[Recommender | None, str | None, float]:
        """(model, error, fit seconds) for ``name`` trained on the full data or the split's train part."""
        ds = self.dataset(dataset)
        if name in ds.saved_models:
            if part == "full":
                return ds.saved_models[name], None, 0.0
            return None, "a saved model is not retrained for evaluation", 0.0
        key = (dataset, name, part)
        with self._lock(("fit",) + key):
            if key not in self._fits:
                data = ds.data if part == "full" else ds.split.train
                start = time.perf_counter()
                try:
                    model = get_model(name)(**self.params_for(name))
                    model.fit(data)
                    self._fits[key] = (model, None, time.perf_counter() - start)
                except Exception as exc:  # noqa: BLE001 - the lab shows any model's failure in its column
                    self._fits[key] = (None, f"{type(exc).__name__}: {exc}", time.perf_counter() - start)
            return self._fits[key]

    def fitted_models(self) -> list[tuple[str, str, Recommender]]:
        """(data set, model name, model) for every model fitted on full data so far."""
        return [(d, n, m) for (d, n, p), (m, _, _) in list(self._fits.items()) if p == "full" and m is not None]

    # ------------------------------------------------------------------ evaluation
    def evaluation(self, dataset: str, name: str, k: int = 10) -> dict[str, Any]:
        """Metrics of ``name`` on the data set's split, precision/recall curves, popularity bias."""
        key = (dataset, name, k)
        with self._lock(("eval",) + key):
            if key not in self._evals:
                self._evals[key] = self._evaluate(dataset, name, k)
            return self._evals[key]

    def _evaluate(self, dataset: str, name: str, k: int) -> dict[str, Any]:
        from tastebud.eval import metrics as M
        from tastebud.eval.evaluate import evaluate_fitted

        ds = self.dataset(dataset)
        model, error, fit_s = self.fitted(dataset, name, "train")
        if model is None:
            return {"model": name, "error": error}
        split = ds.split
        scores = evaluate_fitted(model, split, k)
        rel = split.test.matrix
        users = np.nonzero(np.diff(rel.indptr) > 0)[0]
        kmax = max(EVAL_KMAX, k)
        rec, _ = model._recommend_idx(users, kmax, exclude_seen=True)
        rel_rows = rel[users]
        ks = list(range(1, kmax + 1))
        precision = [float(np.mean(M.precision_at_k(rec, rel_rows, kk))) for kk in ks]
        recall = [float(np.mean(M.recall_at_k(rec, rel_rows, kk))) for kk in ks]
        bias = popularity_profile(rec[:, :k], rel_rows, split.train.item_counts())
        clean = {key: (None if isinstance(v, float) and not np.isfinite(v) else v) for key, v in scores.items()}
        return {
            "model": name,
            "error": None,
            "fit_s": fit_s,
            "metrics": clean,
            "ks": ks,
            "precision": precision,
            "recall": recall,
            "popularity": bias,
        }


# ---------------------------------------------------------------------- helpers
def is_heavy(name: str) -> bool:
    """Slow to train with default hyper-parameters (see HEAVY_MODULES)."""
    return name in HEAVY_MODELS or BUILTIN.get(name) in HEAVY_MODULES


def holdout_split(data: Interactions, fraction: float = 0.2, random_state: int = 0) -> Split:
    """Per-user random holdout: ``fraction`` of each user's events (users with >= 5) go to test."""
    rng = np.random.default_rng(random_state)
    order = np.lexsort((rng.random(len(data)), data.user_idx))
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(data)) - starts[data.user_idx[order]]
    n_test = np.where(counts >= 5, np.floor(counts * fraction).astype(int), 0)
    test_mask = np.zeros(len(data), bool)
    test_mask[order] = rank < n_test[data.user_idx[order]]
    return Split(data.subset(~test_mask), data.subset(test_mask), name="holdout-20%")


def popularity_profile(
    rec: np.ndarray, relevant: sp.csr_matrix, item_counts: np.ndarray, bins: int = 10
) -> dict[str, Any]:
    """Share of recommendation slots per item-popularity decile, against the held-out items' shares.

    Items are sorted by training popularity and cut into ``bins`` groups with equal numbers of
    items (bin ``bins - 1`` holds the most popular tenth). A model without popularity bias spreads
    its slots like the held-out items do; a biased one piles them into the last bin.
    """
    n_items = len(item_counts)
    order = np.argsort(item_counts, kind="stable")
    decile = np.empty(n_items, np.int64)
    decile[order] = (np.arange(n_items) * bins) // max(1, n_items)
    valid = rec[rec >= 0]
    rec_share = np.bincount(decile[valid], minlength=bins) / max(1, len(valid))
    rel_items = sp.csr_matrix(relevant).indices
    test_share = np.bincount(decile[rel_items], minlength=bins) / max(1, len(rel_items))
    return {
        "bins": bins,
        "recommended": rec_share.round(4).tolist(),
        "held_out": test_share.round(4).tolist(),
        "mean_count_recommended": float(item_counts[valid].mean()) if len(valid) else 0.0,
        "mean_count_held_out": float(item_counts[rel_items].mean()) if len(rel_items) else 0.0,
    }


def interactions_of(model: Recommender) -> Interactions:
    """A saved model's own training matrix as Interactions (it carries ids and user x item values)."""
    coo = sp.coo_matrix(model.user_items_)
    scale = getattr(model, "rating_scale_", None)
    return Interactions(
        IdMap(model.users_.ids, "user"),
        IdMap(model.items_.ids, "item"),
        coo.row,
        coo.col,
        coo.data,
        explicit=scale is not None,
        rating_scale=scale,
    )


def item_vectors(model: Recommender) -> tuple[str, np.ndarray] | None:
    """The model's item factor matrix, if it has one: a learned (n_items, d) float array."""
    best = None
    for key, value in vars(model).items():
        if not key.endswith("_") or key.startswith("_") or key == "user_items_":
            continue
        if isinstance(value, np.ndarray) and value.ndim == 2 and value.dtype.kind == "f":
            if value.shape[0] == model.n_items and 2 <= value.shape[1] <= 4096 and value.shape[1] != model.n_items:
                score = (1 if "item" in key else 0, -abs(value.shape[1] - 64))
                if best is None or score > best[0]:
                    best = (score, key, value)
    return None if best is None else (best[1], best[2])


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Project rows onto their two leading principal components, scaled into [-1, 1].

    Both axes share one scale, so distances on the map keep their proportions.
    """
    X = np.asarray(vectors, np.float64)
    X = X - X.mean(axis=0, keepdims=True)
    if X.shape[1] == 1:
        X = np.hstack([X, np.zeros_like(X)])
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    Y = X @ vt[:2].T
    if Y.shape[1] < 2:
        Y = np.hstack([Y, np.zeros((len(Y), 2 - Y.shape[1]))])
    # fix the sign (SVD's is arbitrary) so the picture does not flip between runs
    signs = np.sign(Y[np.argmax(np.abs(Y), axis=0), [0, 1]])
    Y *= np.where(signs == 0, 1, signs)
    span = float(np.abs(Y).max()) if Y.size else 0.0
    Y[np.abs(Y) < 1e-12 * max(span, 1e-300)] = 0.0
    return Y / span if span > 0 else Y


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def catch(fn: Callable[[], Any]) -> tuple[Any, str | None]:
    """Run ``fn``; a model that cannot do this, or fails doing it, gives an error line instead."""
    try:
        return fn(), None
    except NotSupportedError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - one model failing must not hide the others' lists
        return None, f"{type(exc).__name__}: {exc}"


__all__ = ["Dataset", "LabError", "LabState", "holdout_split", "item_vectors", "pca_2d", "popularity_profile"]
