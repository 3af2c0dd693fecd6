"""timeSVD++ (Koren 2009, "Collaborative Filtering with Temporal Dynamics", KDD; eq. 9 with the
biases of eq. 10 less the c_u(t) scaling).

SVD++ whose biases drift with time:

``r(u,i,t) = mu + b_i + b_{i,Bin(t)} + b_u + alpha_u dev_u(t) + b_{u,t} + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)``

* ``b_{i,Bin(t)}``: an item's popularity drifts slowly, so the training time range is cut into
  ``bins`` equal bins (30 in the paper) and each item has a bias offset per bin;
* ``alpha_u dev_u(t)``, ``dev_u(t) = sign(t - t_u) |t - t_u|^beta``: a user's gradual drift, linear
  in a compressed distance (days) from ``t_u``, the mean day of their ratings (``beta`` = 0.4);
* ``b_{u,t}``: a bias for every (user, day) with ratings, the day-specific mood or the one who
  rates for the household that day; at a day without training ratings it is 0.

The paper's rating-scale drift ``c_u(t)`` and drifting factors ``p_u(t)`` are not implemented.
``predict(users, items, times)`` (unix seconds) predicts at those times; without times, and when
ranking, the model predicts at the last training day (the present). The math is in docs/timesvdpp.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import non_negative, positive
from tastebud.core.errors import DataError, TrainingError
from tastebud.core.progress import progress_bar
from tastebud.core.registry import register
from tastebud.core.space import Dist, Int, LogFloat
from tastebud.data.interactions import Interactions
from tastebud.kernels import timesvdpp as K
from tastebud.models._common import numba_threads
from tastebud.models.mf import SVDpp, _ratings

DAY = 86_400


def rating_days(data: Interactions, m: sp.csr_matrix, owner: str) -> np.ndarray:
    """The day (unix seconds // 86400) of every rating of ``m`` in CSR order.

    A pair rated twice takes its latest event, as ``Interactions.matrix`` does for ``"last"``."""
    if data.timestamps is None:
        raise DataError(
            f"{owner} needs the time of every rating, and this data has no time column; "
            "name the time column (unix seconds): --time-col in the CLI, time= in Interactions.from_frame"
        )
    n = len(data)
    order = np.argsort(data.timestamps, kind="stable")
    pair = data.user_idx[order].astype(np.int64) * data.n_items + data.item_idx[order]
    uniq, last_rev = np.unique(pair[::-1], return_index=True)  # sorted pairs: CSR order
    if len(uniq) != m.nnz:
        raise DataError(f"{owner}: {m.nnz} ratings but {len(uniq)} rated pairs; the matrix holds explicit zeros")
    return np.floor_divide(data.timestamps[order[n - 1 - last_rev]], DAY)


def deviation(days: np.ndarray, mean_day: np.ndarray, beta: float) -> np.ndarray:
    """``dev_u(t) = sign(t - t_u) |t - t_u|^beta`` (days)."""
    d = np.asarray(days, np.float64) - mean_day
    return np.sign(d) * np.abs(d) ** beta


@register("timesvdpp")
class TimeSVDpp(SVDpp):
    """timeSVD++ (Koren 2009): SVD++ plus item-bias time bins, a user-bias drift and day-specific user biases.

    ``alpha_u`` takes its own step ``learning_rate_drift`` (dev_u(t) reaches |t - t_u|^0.4, about 9
    over ML-100K's seven months, so the step that suits the other biases would overshoot).
    Learned time state: ``item_bin_bias_`` (items x bins), ``user_drift_`` (alpha_u),
    ``user_day_bias_`` with ``user_day_keys_`` (user * 2^32 + day, sorted), ``user_mean_day_``.
    """

    uses_time = True
    demo_params: ClassVar[dict[str, Any] | None] = None  # SVD++ stands for the family in the demo
    history_preference: ClassVar[int | None] = 9  # after SVD++, whose fold-in it shares
    docs_page = "timesvdpp"
    fast_params: ClassVar[dict[str, Any]] = {"factors": 8, "epochs": 10, "bins": 4, "random_state": 0}
    renamed_params: ClassVar[dict[str, str | tuple[str, ...]]] = {}
    search_space: ClassVar[dict[str, Dist]] = {
        "factors": Int(4, 64, log=True),
        "epochs": Int(10, 80),
        "learning_rate": LogFloat(1e-3, 0.02),
        "reg": LogFloat(1e-3, 0.5),
        "reg_implicit_factors": LogFloat(1e-3, 1.0),
        "reg_user_day_bias": LogFloat(1e-3, 1.0),
        "reg_item_bin_bias": LogFloat(1e-3, 1.0),
        "learning_rate_drift": LogFloat(1e-6, 1e-3),
    }

    def __init__(
        self,
        factors: int = 20,
        epochs: int = 60,
        learning_rate: float = 0.007,
        learning_rate_decay: float = 0.97,
        reg: float = 0.1,
        reg_user_bias: float | None = 0.02,
        reg_item_bias: float | None = 0.02,
        reg_user_factors: float | None = None,
        reg_item_factors: float | None = None,
        reg_implicit_factors: float | None = 0.3,
        bins: int = 30,
        beta: float = 0.4,
        learning_rate_drift: float = 1e-5,
        reg_user_drift: float = 50.0,
        reg_user_day_bias: float = 0.3,
        reg_item_bin_bias: float = 20.0,
        init_std: float = 0.1,
        threads: int = 1,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            factors=factors, epochs=epochs, learning_rate=learning_rate, learning_rate_decay=learning_rate_decay,
            reg=reg, reg_user_bias=reg_user_bias, reg_item_bias=reg_item_bias, reg_user_factors=reg_user_factors,
            reg_item_factors=reg_item_factors, reg_implicit_factors=reg_implicit_factors, init_std=init_std,
            threads=threads, random_state=random_state,
        )  # fmt: skip
        self.bins = bins
        self.beta = beta
        self.learning_rate_drift = learning_rate_drift
        self.reg_user_drift = reg_user_drift
        self.reg_user_day_bias = reg_user_day_bias
        self.reg_item_bin_bias = reg_item_bin_bias

    def _validate_params(self) -> None:
        super()._validate_params()
        positive("TimeSVDpp", bins=self.bins)
        non_negative(
            "TimeSVDpp",
            beta=self.beta,
            learning_rate_drift=self.learning_rate_drift,
            reg_user_drift=self.reg_user_drift,
            reg_user_day_bias=self.reg_user_day_bias,
            reg_item_bin_bias=self.reg_item_bin_bias,
        )

    # ------------------------------------------------------------------ fit
    def _fit(self, data: Interactions) -> None:
        owner = type(self).__name__
        m = _ratings(data, owner)
        days = rating_days(data, m, owner)
        indptr, indices = m.indptr.astype(np.int64), m.indices.astype(np.int32)
        ratings = m.data.astype(np.float64)
        counts = np.diff(indptr)
        row = np.repeat(np.arange(data.n_users), counts)
        self.day_min_, self.day_max_ = int(days.min()), int(days.max())
        mean_day = np.bincount(row, weights=days.astype(np.float64), minlength=data.n_users) / np.maximum(counts, 1)
        self.user_mean_day_ = mean_day
        devs = deviation(days, mean_day[row], self.beta)
        bins = self._bin(days)
        keys = _day_key(row, days)
        self.user_day_keys_, user_days = np.unique(keys, return_inverse=True)

        mu = float(ratings.mean())
        rng = np.random.default_rng(self.random_state)
        p = rng.normal(0.0, self.init_std, (data.n_users, self.factors)).astype(np.float32)
        q = rng.normal(0.0, self.init_std, (data.n_items, self.factors)).astype(np.float32)
        y = rng.normal(0.0, self.init_std, (data.n_items, self.factors)).astype(np.float32)
        bu, bi = np.zeros(data.n_users), np.zeros(data.n_items)
        bib = np.zeros((data.n_items, self.bins))
        au = np.zeros(data.n_users)
        but = np.zeros(len(self.user_day_keys_))
        reg_bu, reg_bi, reg_pu, reg_qi = self._regs()
        reg_yj = float(self.reg if self.reg_implicit_factors is None else self.reg_implicit_factors)
        regs = np.array(
            [
                reg_bu,
                reg_bi,
                reg_pu,
                reg_qi,
                reg_yj,
                self.reg_item_bin_bias,
                self.reg_user_drift,
                self.reg_user_day_bias,
            ],
            np.float64,
        )
        lr, lr_drift = float(self.learning_rate), float(self.learning_rate_drift)
        history = []
        with numba_threads(self.threads) as n_threads, progress_bar(self.epochs, self.name, "epoch") as bar:
            for epoch in range(self.epochs):
                user_order = rng.permutation(data.n_users).astype(np.int64)
                rand = rng.random(len(ratings)) + row
                perm = (np.argsort(rand, kind="stable") - np.repeat(indptr[:-1], counts)).astype(np.int64)
                sse = K.timesvdpp_epoch(
                    indptr, indices, ratings, bins, devs, user_days.astype(np.int64), user_order, perm, n_threads,
                    mu, bu, bi, bib, au, but, p, q, y, lr, lr_drift, regs,
                )  # fmt: skip
                history.append(self._epoch_rmse(sse, len(ratings), epoch))
                lr *= self.learning_rate_decay
                lr_drift *= self.learning_rate_decay
                bar.set_postfix(rmse=f"{history[-1]:.4f}", refresh=False)
                bar.update(1)
        for name, arr in (("implicit factors", y), ("item bin biases", bib), ("user drifts", au), ("day biases", but)):
            if not np.isfinite(arr).all():
                raise TrainingError(f"{owner}: {name} became non-finite; lower learning_rate or learning_rate_drift")
        norm = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
        ones = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=m.shape)
        z = (ones @ y.astype(np.float64)) * norm[:, None]
        no_item = np.bincount(indices, minlength=data.n_items) == 0
        y[no_item] = 0.0
        bib[no_item] = 0.0
        self.train_rmse_ = np.asarray(history)
        self.implicit_factors_ = y.astype(np.float32)
        self.item_bin_bias_ = bib.astype(np.float32)
        self.user_drift_ = au.astype(np.float32)
        self.user_day_bias_ = but.astype(np.float32)
        self._finish(mu, bu, bi, p + z, q, m)

    # ------------------------------------------------------------------ time terms
    def _bin(self, days: np.ndarray) -> np.ndarray:
        """``Bin(t)``: equal-width bins over the training days; days outside fall into the end bins."""
        width = self.day_max_ - self.day_min_ + 1
        b = np.floor_divide((np.asarray(days, np.int64) - self.day_min_) * self.bins, width)
        return np.clip(b, 0, self.bins - 1).astype(np.int64)

    def _time_terms(self, user_idx: np.ndarray, item_idx: np.ndarray, days: np.ndarray) -> np.ndarray:
        """``b_{i,Bin(t)} + alpha_u dev_u(t) + b_{u,t}`` per pair; the parts of an unknown id are 0."""
        ku, ki = user_idx >= 0, item_idx >= 0
        u, i = np.clip(user_idx, 0, None), np.clip(item_idx, 0, None)
        out = np.where(ki, self.item_bin_bias_[i, self._bin(days)], 0.0)
        drift = self.user_drift_[u] * deviation(days, self.user_mean_day_[u], self.beta)
        keys = _day_key(u, days)
        pos = np.clip(np.searchsorted(self.user_day_keys_, keys), 0, max(0, len(self.user_day_keys_) - 1))
        known_day = ku & (len(self.user_day_keys_) > 0) & (self.user_day_keys_[pos] == keys)
        out += np.where(ku, drift, 0.0) + np.where(known_day, self.user_day_bias_[pos], 0.0)
        return out

    def _predict_pairs_at(self, user_idx: np.ndarray, item_idx: np.ndarray, times: np.ndarray) -> np.ndarray:
        days = np.floor_divide(np.asarray(times, np.int64), DAY)
        return super()._predict_pairs(user_idx, item_idx) + self._time_terms(user_idx, item_idx, days)

    def _predict_pairs(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        days = np.full(len(user_idx), self.day_max_, np.int64)
        return super()._predict_pairs(user_idx, item_idx) + self._time_terms(user_idx, item_idx, days)

    def _present_item_bias(self) -> np.ndarray:
        return self.item_bias_ + self.item_bin_bias_[:, self._bin(np.array([self.day_max_]))[0]]

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        """Scores at the present (the last training day): the bin's item biases and each user's drift and day bias."""
        out = super()._score(user_idx, item_idx)
        bins = self.item_bin_bias_[:, self._bin(np.array([self.day_max_]))[0]]
        out += (bins if item_idx is None else bins[item_idx])[None, :]
        today = np.full(len(user_idx), self.day_max_, np.int64)
        out += self._time_terms(np.asarray(user_idx, np.int64), np.full(len(user_idx), -1), today)[:, None]
        return out

    def _view_items(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        return self._present_item_bias().astype(np.float64), self.item_factors_.astype(np.float64)

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        bias, p = self._fold_in(item_idx, values)
        return self.global_mean_ + bias + self._present_item_bias() + self.item_factors_ @ p.astype(np.float32)


def _day_key(users: np.ndarray, days: np.ndarray) -> np.ndarray:
    """One sortable int64 per (user, day)."""
    return np.asarray(users, np.int64) * (1 << 32) + (np.asarray(days, np.int64) + (1 << 31))
