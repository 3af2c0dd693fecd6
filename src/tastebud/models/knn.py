"""Neighbourhood collaborative filtering: ``UserKNN`` and ``ItemKNN``.

One class per direction; hyper-parameters choose the similarity and the prediction rule.

* Rating prediction (explicit data), the family of Surprise's KNNBasic / KNNWithMeans /
  KNNWithZScore / KNNBaseline (Herlocker et al. 1999; Sarwar et al. 2001; Koren 2010, section
  2.2): the ``neighbors`` most similar users (items) that rated the target item (were rated by
  the user) vote with their similarity, on the raw rating (``prediction="plain"``), on the
  rating minus the neighbour's mean (``"mean"``), on its z-score (``"zscore"``), or on its
  residual from the bias baseline mu + b_u + b_i (``"baseline"``).
* Ranking (any data): the score of an item is the sum of the similarities that reach it from
  the person's items (item-based) or from the person's nearest users (user-based), each row of
  the similarity matrix pruned to its ``neighbors`` best entries, as in implicit's
  ItemItemRecommender (Deshpande & Karypis 2004). On explicit data ranking uses the fact that an
  item was rated, not the rating.

Similarities (Desrosiers & Karypis 2011 for the definitions; Surprise's conventions for the
common-support ones): ``cosine`` (norms over all ratings), ``pearson`` (over the common raters,
per-pair means), ``adjusted_cosine`` (ratings centred on the mean of the other side, Sarwar et
al. 2001), ``pearson_baseline`` (residuals from the bias baseline, shrunk by
``(n - 1) / (n - 1 + shrinkage)``, Koren 2010), ``msd`` (``1 / (mean squared difference + 1)``),
and for implicit data ``bm25`` and ``tfidf`` weightings (as implicit's BM25Recommender and
TFIDFRecommender) and ``asymmetric_cosine`` (Aiolli 2013).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import RatingModel, non_negative, positive
from tastebud.core.errors import ConfigError, NotSupportedError
from tastebud.core.registry import register
from tastebud.core.results import Explanation
from tastebud.core.space import Categorical, Dist, Float, Int
from tastebud.data.interactions import Interactions
from tastebud.kernels import knn as K

Similarity = Literal[
    "cosine", "pearson", "adjusted_cosine", "pearson_baseline", "msd", "bm25", "tfidf", "asymmetric_cosine"
]
Prediction = Literal["plain", "mean", "zscore", "baseline"]

_KIND = {
    "cosine": K.COSINE,
    "pearson": K.PEARSON,
    "adjusted_cosine": K.COMMON_COSINE,
    "pearson_baseline": K.COMMON_COSINE,
    "msd": K.MSD,
    "bm25": K.DOT,
    "tfidf": K.COSINE,
    "asymmetric_cosine": K.ASYMMETRIC,
}
_NEEDS_RATINGS = ("pearson", "adjusted_cosine", "pearson_baseline", "msd")
# per-row similarities kept for rating prediction when max_similar is None
_RATING_KEEP = 1000


class _KNN(RatingModel):
    """Shared machinery; ``user_based`` picks the direction."""

    user_based: ClassVar[bool] = False
    supports_history = True
    fast_params: ClassVar[dict[str, Any]] = {"neighbors": 10}
    renamed_params: ClassVar[dict[str, str | tuple[str, ...]]] = {
        "alpha": "asymmetry",
        "K1": "bm25_k1",
        "B": "bm25_b",
        "reg_user": "reg_user_bias",
        "reg_item": "reg_item_bias",
    }
    # similarities that also work on implicit data; ``prediction`` matters for RMSE only.
    search_space: ClassVar[dict[str, Dist]] = {
        "neighbors": Int(5, 200, log=True),
        "similarity": Categorical(["cosine", "bm25", "tfidf", "asymmetric_cosine"]),
        "shrinkage": Float(0.0, 100.0),
        "prediction": Categorical(["plain", "mean", "zscore", "baseline"]),
    }

    def __init__(
        self,
        neighbors: int = 40,
        similarity: Similarity = "cosine",
        shrinkage: float | None = None,
        min_support: int = 1,
        prediction: Prediction = "mean",
        max_similar: int | None = None,
        asymmetry: float = 0.5,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        reg_user_bias: float = 15.0,
        reg_item_bias: float = 10.0,
        epochs: int = 10,
        normalize: bool = False,
        random_state: int = 0,
    ) -> None:
        self.neighbors = neighbors
        self.similarity = similarity
        self.shrinkage = shrinkage
        self.min_support = min_support
        self.prediction = prediction
        self.max_similar = max_similar
        self.asymmetry = asymmetry
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.reg_user_bias = reg_user_bias
        self.reg_item_bias = reg_item_bias
        self.epochs = epochs
        self.normalize = normalize
        self.random_state = random_state

    # ------------------------------------------------------------------ params
    def _validate_params(self) -> None:
        owner = type(self).__name__
        positive(owner, neighbors=self.neighbors, bm25_k1=self.bm25_k1, epochs=self.epochs)
        if self.max_similar is not None:
            positive(owner, max_similar=self.max_similar)
        if self.shrinkage is not None:
            non_negative(owner, shrinkage=self.shrinkage)
        non_negative(
            owner, min_support=self.min_support, reg_user_bias=self.reg_user_bias, reg_item_bias=self.reg_item_bias
        )
        if not 0.0 <= self.asymmetry <= 1.0:
            raise ConfigError(f"{owner}: asymmetry must be in [0, 1], got {self.asymmetry!r}")
        if not 0.0 <= self.bm25_b <= 1.0:
            raise ConfigError(f"{owner}: bm25_b must be in [0, 1], got {self.bm25_b!r}")

    @property
    def _shrink(self) -> float:
        if self.shrinkage is not None:
            return float(self.shrinkage)
        return 100.0 if self.similarity == "pearson_baseline" else 0.0

    # ------------------------------------------------------------------ fit
    def _fit(self, data: Interactions) -> None:
        owner = type(self).__name__
        explicit = bool(data.explicit)
        if not explicit and self.similarity in _NEEDS_RATINGS:
            raise ConfigError(
                f"{owner}: similarity '{self.similarity}' needs explicit ratings; for implicit data use "
                "cosine, bm25, tfidf or asymmetric_cosine"
            )
        self.explicit_ = explicit
        self.predicts_ratings = explicit
        X = data.matrix.astype(np.float64)
        X.sort_indices()
        n_users, n_items = X.shape
        counts_u = np.diff(X.indptr)
        counts_i = np.bincount(X.indices, minlength=n_items)
        rows = np.repeat(np.arange(n_users), counts_u)
        cols = X.indices
        r = X.data
        self.global_mean_ = float(r.mean())
        self.user_mean_, self.user_std_ = _means(rows, r, n_users, counts_u, self.global_mean_)
        self.item_mean_, self.item_std_ = _means(cols, r, n_items, counts_i, self.global_mean_)
        need_bias = explicit and (self.similarity == "pearson_baseline" or self.prediction == "baseline")
        if need_bias:
            from tastebud.models.baseline import Bias

            bias = Bias(reg_user_bias=self.reg_user_bias, reg_item_bias=self.reg_item_bias, epochs=self.epochs)
            bias.fit(data)
            self.bias_mean_ = float(bias.global_mean_)
            self.user_bias_ = bias.user_bias_.astype(np.float64)
            self.item_bias_ = bias.item_bias_.astype(np.float64)

        # entity x feature matrix with the similarity's weighting
        ent_rows, feat_cols = (cols, rows) if not self.user_based else (rows, cols)
        n_ent, n_feat = (n_items, n_users) if not self.user_based else (n_users, n_items)
        vals = self._weigh(ent_rows, feat_cols, r, n_ent, n_feat, fit=True)
        E = sp.csr_matrix((vals, (ent_rows, feat_cols)), shape=(n_ent, n_feat))
        E.sort_indices()
        F = E.T.tocsr()
        F.sort_indices()
        sq = np.asarray(E.multiply(E).sum(axis=1)).ravel().astype(np.float64)
        keep = self._keep(n_ent)
        kind = _KIND[self.similarity]
        n_chunks = max(1, min(n_ent, 4 * K.n_threads()))
        Eq, Ff = E, F
        fast = (
            kind in (K.DOT, K.COSINE, K.ASYMMETRIC)
            and self._shrink == 0
            and self.min_support <= 1
            and bool((E.data > 0).all())
        )
        if fast:
            # the similarity is a plain dot product of rescaled rows: x / |x|^(2a) . y / |y|^(2(1-a))
            a = {K.DOT: 0.0, K.COSINE: 0.5, K.ASYMMETRIC: float(self.asymmetry)}[kind]
            safe = np.where(sq > 0, sq, 1.0)
            Eq = sp.csr_matrix(sp.diags(safe ** (-a) if a else np.ones(n_ent)) @ E)
            Ff = sp.csr_matrix(sp.diags(safe ** (-(1.0 - a)) if kind != K.DOT else np.ones(n_ent)) @ E).T.tocsr()
            Eq.sort_indices()
            Ff.sort_indices()
        counts, c, v = K.topk_similarity(
            Eq.indptr, Eq.indices, Eq.data, Ff.indptr, Ff.indices, Ff.data, sq, kind, keep,
            self._shrink, 1.0 if self.similarity == "pearson_baseline" else 0.0,
            int(self.min_support), float(self.asymmetry), n_chunks, fast,
        )  # fmt: skip
        self.sim_ = _rows_to_csr(counts, c, v, n_ent)
        self._rank_cache = None
        # what fold-in (user-based) and explanations need
        if self.user_based:
            self.features_t_ = F  # item x user, weighted
            self.sq_ = sq
        if explicit:
            self.residual_ = self._residuals(rows, cols, r, n_users, n_items)

    def _keep(self, n_ent: int) -> int:
        if self.max_similar is not None:
            keep = int(self.max_similar)
        elif self.explicit_:
            keep = max(int(self.neighbors), _RATING_KEEP)
        else:
            keep = int(self.neighbors)
        return max(1, min(keep, max(1, n_ent - 1)))

    def _weigh(
        self, ent: np.ndarray, feat: np.ndarray, r: np.ndarray, n_ent: int, n_feat: int, fit: bool
    ) -> np.ndarray:
        """Values of the entity x feature matrix under the chosen similarity."""
        sim = self.similarity
        if sim == "adjusted_cosine":
            feat_mean = self.user_mean_ if not self.user_based else self.item_mean_
            return r - feat_mean[feat]
        if sim == "pearson_baseline":
            return r - self._baseline_of(ent, feat)
        if sim in ("bm25", "tfidf"):
            if fit:
                df = np.bincount(feat, minlength=n_feat).astype(np.float64)
                self.idf_ = np.log(float(n_ent)) - np.log1p(df)
                lengths = np.bincount(ent, weights=r, minlength=n_ent)
                self.avg_length_ = float(lengths.mean()) if n_ent else 1.0
            if sim == "tfidf":
                return np.sqrt(np.maximum(r, 0.0)) * self.idf_[feat]
            lengths = np.bincount(ent, weights=r, minlength=n_ent)
            norm = (1.0 - self.bm25_b) + self.bm25_b * lengths[ent] / max(self.avg_length_, 1e-12)
            return r * (self.bm25_k1 + 1.0) / (self.bm25_k1 * norm + r) * self.idf_[feat]
        return r.astype(np.float64)

    def _baseline_of(self, ent: np.ndarray, feat: np.ndarray) -> np.ndarray:
        users, items = (feat, ent) if not self.user_based else (ent, feat)
        bu = np.where(users >= 0, self.user_bias_[np.clip(users, 0, None)], 0.0)
        return self.bias_mean_ + bu + self.item_bias_[items]

    def _residuals(
        self, rows: np.ndarray, cols: np.ndarray, r: np.ndarray, n_users: int, n_items: int
    ) -> sp.csr_matrix:
        """The neighbours' votes, laid out as the lists the predictor intersects with a similarity row."""
        nb = cols if not self.user_based else rows
        mean = self.item_mean_ if not self.user_based else self.user_mean_
        std = self.item_std_ if not self.user_based else self.user_std_
        if self.prediction == "plain":
            vals = r
        elif self.prediction == "mean":
            vals = r - mean[nb]
        elif self.prediction == "zscore":
            vals = (r - mean[nb]) / std[nb]
        else:
            vals = r - (self.bias_mean_ + self.user_bias_[rows] + self.item_bias_[cols])
        if not self.user_based:
            m = sp.csr_matrix((vals, (rows, cols)), shape=(n_users, n_items))
        else:
            m = sp.csr_matrix((vals, (cols, rows)), shape=(n_items, n_users))
        m.sort_indices()
        return m

    def _set_state(self, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
        super()._set_state(arrays, attrs)
        self.predicts_ratings = bool(getattr(self, "explicit_", False))
        self._rank_cache = None

    # ------------------------------------------------------------------ ranking
    @property
    def _ranker(self) -> sp.csr_matrix:
        """The similarity rows that ranking sums: each pruned to its ``neighbors`` best entries
        (rating prediction may keep more) and, with ``normalize``, scaled to sum to one
        (Deshpande & Karypis 2004). Derived from ``sim_`` on first use, so it is never saved."""
        cached = getattr(self, "_rank_cache", None)
        if cached is not None:
            return cached
        R = self.sim_
        n = R.shape[0]
        if np.diff(R.indptr).max(initial=0) > self.neighbors:
            R = _rows_to_csr(*K.truncate_rows(R.indptr, R.indices, R.data, int(self.neighbors)), R.shape[1])
        if self.normalize:
            sums = np.asarray(R.sum(axis=1)).ravel()
            R = sp.csr_matrix(
                sp.diags(np.where(sums > 0, 1.0 / np.where(sums > 0, sums, 1.0), 0.0)) @ R, dtype=np.float32
            )
            R.sort_indices()
        assert R.shape[0] == n
        self._rank_cache = R
        return R

    def _history_matrix(self) -> sp.csr_matrix:
        """What a person's row contributes to ranking: 1 per rated item on explicit data."""
        m = self.user_items_
        if self.explicit_:
            m = m.copy()
            m.data = np.ones_like(m.data)
        return m

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        hist = self._history_matrix()
        if not self.user_based:
            block = (hist[user_idx] @ self._ranker).toarray()
        else:
            block = (self._ranker[user_idx] @ hist).toarray()
        return block if item_idx is None else block[:, item_idx]

    def _history_values(self, values: np.ndarray) -> np.ndarray:
        return np.ones_like(values, dtype=np.float64) if self.explicit_ else values.astype(np.float64)

    def _query_neighbours(self, item_idx: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """User-based fold-in: the new person's nearest training users (indices, similarities)."""
        order = np.argsort(item_idx, kind="stable")
        iidx = np.asarray(item_idx, np.int64)[order]
        r = np.asarray(values, np.float64)[order]
        if len(iidx) == 0:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        iidx, first = np.unique(iidx, return_index=True)
        r = r[first]
        if self.similarity == "pearson_baseline":
            resid = r - self.bias_mean_ - self.item_bias_[iidx]
            bu = resid.sum() / (self.reg_user_bias + len(resid))
            q = resid - bu
        elif self.similarity in ("bm25", "tfidf"):
            if self.similarity == "tfidf":
                q = np.sqrt(np.maximum(r, 0.0)) * self.idf_[iidx]
            else:
                norm = (1.0 - self.bm25_b) + self.bm25_b * r.sum() / max(self.avg_length_, 1e-12)
                q = r * (self.bm25_k1 + 1.0) / (self.bm25_k1 * norm + r) * self.idf_[iidx]
        elif self.similarity == "adjusted_cosine":
            q = r - self.item_mean_[iidx]
        else:
            q = r
        cols, sims = K.query_similarity(
            iidx, q, float(q @ q), self.features_t_.indptr, self.features_t_.indices, self.features_t_.data,
            self.sq_, _KIND[self.similarity], int(self.neighbors), self._shrink,
            1.0 if self.similarity == "pearson_baseline" else 0.0, int(self.min_support), float(self.asymmetry),
        )  # fmt: skip
        return cols, sims

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        if not self.user_based:
            h = self._history_values(values)
            if len(item_idx) == 0:
                return np.zeros(self.n_items, np.float32)
            return np.asarray(self._ranker[item_idx].T @ h).ravel()
        cols, sims = self._query_neighbours(item_idx, values)
        if len(cols) == 0:
            return np.zeros(self.n_items, np.float32)
        return np.asarray(self._history_matrix()[cols].T @ sims).ravel()

    def _similar(self, item_idx: np.ndarray) -> np.ndarray:
        if not self.user_based:
            return self.sim_[item_idx].toarray()
        # user-based models have no item-item matrix: cosine between item columns, on demand
        Xt = self.user_items_.T.tocsr().astype(np.float64)
        norms = np.sqrt(np.asarray(Xt.multiply(Xt).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        Xn = sp.diags(1.0 / norms) @ Xt
        return (Xn[item_idx] @ Xn.T).toarray()

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        history = sp.csr_matrix(history)
        out = []
        if not self.user_based:
            hist_items = history.indices
            h = self._history_values(history.data)
            contrib = (
                (self._ranker[hist_items][:, item_idx].toarray() * h[:, None])
                if len(hist_items)
                else np.zeros((0, len(item_idx)))
            )
            for col in range(len(item_idx)):
                out.append(_explanation(contrib[:, col], self.items_.to_ids(hist_items), "you had"))
            return out
        if user_idx >= 0:
            row = self._ranker[user_idx]
            nb, sims = row.indices, row.data.astype(np.float64)
        else:
            nb, sims = self._query_neighbours(history.indices, history.data)
        contrib = (
            self._history_matrix()[nb][:, item_idx].toarray() * sims[:, None]
            if len(nb)
            else np.zeros((0, len(item_idx)))
        )
        for col in range(len(item_idx)):
            out.append(_explanation(contrib[:, col], self.users_.to_ids(nb), "similar users"))
        return out

    # ------------------------------------------------------------------ ratings
    def predict(self, users: Any, items: Any, times: Any = None) -> np.ndarray:
        self._check_fitted()
        if not getattr(self, "explicit_", False):
            raise NotSupportedError(
                f"{type(self).__name__} was fitted on implicit data; it ranks items but does not predict ratings"
            )
        return super().predict(users, items, times)

    def predict_idx(self, user_idx: Any, item_idx: Any, times: Any = None) -> np.ndarray:
        if not getattr(self, "explicit_", False):
            raise NotSupportedError(f"{type(self).__name__} was fitted on implicit data; it does not predict ratings")
        return super().predict_idx(user_idx, item_idx, times)

    def _predict_pairs(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        u = np.asarray(user_idx, np.int64)
        i = np.asarray(item_idx, np.int64)
        sim_rows, list_rows = (i, u) if not self.user_based else (u, i)
        S, R = self.sim_, self.residual_
        num, den, _ = K.knn_aggregate(
            sim_rows, list_rows, S.indptr, S.indices, S.data.astype(np.float64),
            R.indptr, R.indices, R.data.astype(np.float64), int(self.neighbors),
        )  # fmt: skip
        has = den > 0
        dev = np.where(has, num / np.where(has, den, 1.0), 0.0)
        x = i if not self.user_based else u
        mean = self.item_mean_ if not self.user_based else self.user_mean_
        std = self.item_std_ if not self.user_based else self.user_std_
        mean_x = np.where(x >= 0, mean[np.clip(x, 0, None)], self.global_mean_)
        if self.prediction == "plain":
            return np.where(has, dev, self.global_mean_)
        if self.prediction == "mean":
            return mean_x + dev
        if self.prediction == "zscore":
            std_x = np.where(x >= 0, std[np.clip(x, 0, None)], 1.0)
            return mean_x + std_x * dev
        bu = np.where(u >= 0, self.user_bias_[np.clip(u, 0, None)], 0.0)
        bi = np.where(i >= 0, self.item_bias_[np.clip(i, 0, None)], 0.0)
        return self.bias_mean_ + bu + bi + dev


@register("itemknn")
class ItemKNN(_KNN):
    """Item-based neighbourhood model (Sarwar et al. 2001; Deshpande & Karypis 2004; Koren 2010).

    ``neighbors``: neighbours that vote (ranking: entries kept per similarity row);
    ``similarity``: see the module docstring; ``shrinkage``: damp similarities of pairs with
    little support by ``n / (n + shrinkage)`` (None: 100 for pearson_baseline, else 0);
    ``min_support``: pairs with fewer common users get no similarity; ``prediction``: plain /
    mean / zscore / baseline; ``max_similar``: similarities kept per item for rating prediction
    (None: 1000 on explicit data, ``neighbors`` on implicit); ``asymmetry``: asymmetric
    cosine exponent; ``bm25_k1`` / ``bm25_b``: BM25 saturation and length normalisation;
    ``reg_user_bias`` / ``reg_item_bias`` / ``epochs``: the bias baseline
    (:class:`tastebud.models.baseline.Bias`) behind pearson_baseline and the baseline predictor;
    ``normalize``: scale every pruned neighbour list to sum to one before ranking (Deshpande &
    Karypis 2004).
    """

    history_preference: ClassVar[int | None] = 0
    demo_params: ClassVar[dict[str, Any] | None] = {}
    lab_default: ClassVar[bool] = True

    user_based = False


@register("userknn")
class UserKNN(_KNN):
    """User-based neighbourhood model (Herlocker et al. 1999; Resnick et al. 1994).

    Same hyper-parameters as :class:`ItemKNN`, with users as neighbours: a person is scored by
    the ``neighbors`` most similar users. A new person (``recommend_for_history``) gets their
    neighbours computed on the fly against the stored user vectors, without refitting.
    """

    history_preference: ClassVar[int | None] = 9
    demo_params: ClassVar[dict[str, Any] | None] = {}
    lab_default: ClassVar[bool] = True

    user_based = True


def _means(
    idx: np.ndarray, r: np.ndarray, n: int, counts: np.ndarray, fallback: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation per index (fallback mean / std 1 when empty or flat)."""
    s = np.bincount(idx, weights=r, minlength=n)
    mean = np.where(counts > 0, s / np.maximum(counts, 1), fallback)
    dev = r - mean[idx]
    var = np.bincount(idx, weights=dev * dev, minlength=n) / np.maximum(counts, 1)
    std = np.sqrt(var)
    std[std <= 1e-12] = 1.0
    return mean.astype(np.float64), std.astype(np.float64)


def _rows_to_csr(counts: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_cols: int) -> sp.csr_matrix:
    n, k = cols.shape
    mask = np.arange(k)[None, :] < counts[:, None]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    m = sp.csr_matrix((vals[mask].astype(np.float32), cols[mask].astype(np.int32), indptr), shape=(n, n_cols))
    return m


def _explanation(contrib: np.ndarray, ids: np.ndarray, what: str, top: int = 3) -> Explanation:
    order = np.argsort(-contrib, kind="stable")
    order = [o for o in order[:top] if contrib[o] > 0]
    if not order:
        return Explanation("no close neighbour; ranked by the remaining similarity mass", [])
    pairs = [(ids[o], float(contrib[o])) for o in order]
    text = f"{what} " + ", ".join(f"{p[0]} ({p[1]:.2f})" for p in pairs)
    return Explanation(text, pairs)
