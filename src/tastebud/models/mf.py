"""Explicit-rating matrix factorisation: SVD (biased MF by SGD), SVD++, explicit ALS, Bayesian MF.

All four predict ``r_ui = mu + b_u + b_i + p_u . q_i`` (Koren, Bell & Volinsky 2009) and differ in
how they learn it:

* ``svd``: stochastic gradient descent on the regularised squared error (Funk 2006; Koren et al.
  2009), per-parameter regularisation and a per-epoch learning-rate decay;
* ``svdpp``: SVD++ (Koren 2008), the user vector plus ``|N(u)|^-1/2 sum_{j in N(u)} y_j`` over the
  items the user rated (who-rated-what as implicit feedback);
* ``als``: alternating ridge regressions on ``[b, p]`` (Zhou et al. 2008, ALS-WR weighting);
* ``bayesmf``: Bayesian probabilistic MF by Gibbs sampling (Salakhutdinov & Mnih 2008) with
  Normal-Wishart hyper-priors, biases sampled jointly with the factors, sampled noise precision,
  implicit who-rated-what terms on both sides (Bayesian SVD++, "flipped"), and predictions
  averaged over the post-burn-in samples (as advocated by Rendle et al. 2019).

The math, notation and the defaults' provenance are in ``docs/mf.md``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import RatingModel, non_negative, positive
from tastebud.core.errors import ConfigError, DataError, TrainingError
from tastebud.core.progress import progress_bar
from tastebud.core.registry import register
from tastebud.core.results import Explanation
from tastebud.core.space import Categorical, Dist, Int, LogFloat
from tastebud.data.interactions import Interactions
from tastebud.kernels import mf as K
from tastebud.models._common import numba_threads


def _ratings(data: Interactions, owner: str) -> sp.csr_matrix:
    """The user x item rating matrix, checked: explicit, finite, inside the declared scale."""
    if not data.explicit:
        raise DataError(f"{owner} learns from explicit ratings; this data is implicit (use 'ials', 'bpr' or 'ease')")
    m = data.matrix
    if not np.isfinite(m.data).all():
        raise DataError(f"{owner}: the ratings contain NaN or infinite values")
    if data.rating_scale is not None:
        lo, hi = data.rating_scale
        bad = (m.data < lo) | (m.data > hi)
        if bad.any():
            value = float(m.data[np.argmax(bad)])
            raise DataError(
                f"{owner}: rating {value:g} is outside the declared rating_scale {lo:g}..{hi:g}; "
                "declare the scale the ratings use"
            )
    return m


def _diverged(owner: str, epoch: int, what: str, hint: str) -> TrainingError:
    return TrainingError(f"{owner} diverged at epoch {epoch + 1} ({what} is not finite); {hint}")


class _BiasedMF(RatingModel):
    """Shared scoring, fold-in, similarity and explanations of ``mu + b_u + b_i + p_u . q_i``.

    Learned state: ``global_mean_``, ``user_bias_``, ``item_bias_``, ``user_factors_``,
    ``item_factors_`` (for Bayesian MF the factor arrays stack every kept sample, scaled by
    ``1/sqrt(S)``, so one dot product is the posterior-mean prediction).
    """

    supports_history = True

    # ------------------------------------------------------------------ scoring
    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        q = self.item_factors_ if item_idx is None else self.item_factors_[item_idx]
        bi = self.item_bias_ if item_idx is None else self.item_bias_[item_idx]
        out = self.user_factors_[user_idx] @ q.T
        out += bi[None, :]
        out += (self.global_mean_ + self.user_bias_[user_idx])[:, None]
        return out

    def _predict_pairs(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        ku, ki = user_idx >= 0, item_idx >= 0
        u, i = np.clip(user_idx, 0, None), np.clip(item_idx, 0, None)
        pred = np.full(len(u), float(self.global_mean_))
        pred += np.where(ku, self.user_bias_[u], 0.0)
        pred += np.where(ki, self.item_bias_[i], 0.0)
        both = ku & ki
        if both.any():
            pred[both] += np.einsum(
                "nf,nf->n", self.user_factors_[u[both]].astype(np.float64), self.item_factors_[i[both]]
            )
        return pred

    def _similar(self, item_idx: np.ndarray) -> np.ndarray:
        q = self.item_factors_.astype(np.float64)
        norms = np.linalg.norm(q, axis=1)
        norms[norms == 0] = 1.0
        qn = q / norms[:, None]
        return qn[item_idx] @ qn.T

    # ------------------------------------------------------------------ fold-in
    def _views(self) -> int:
        return 1

    def _view_items(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Item biases and factors of view ``s`` (one view; Bayesian MF has one per sample)."""
        return self.item_bias_.astype(np.float64), self.item_factors_.astype(np.float64)

    def _view_prior(self, s: int, n: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(precision matrix, prior mean, data weight) of a user's ``[b, p]`` given ``n`` ratings."""
        raise NotImplementedError

    def _implicit(self, item_idx: np.ndarray, s: int) -> np.ndarray | None:
        """View ``s``'s implicit part of the user vector for a history (SVD++; None for the others)."""
        return None

    def _history_values(self, values: np.ndarray) -> np.ndarray:
        """Ratings of a history. Omitted values arrive as all ones: read them as "liked" (top of scale)."""
        vals = np.asarray(values, np.float64)
        if self.rating_scale_ is not None:
            lo, hi = self.rating_scale_
            if len(vals) and hi > 1.0 and np.all(vals == 1.0):
                return np.full(len(vals), float(hi))
            bad = (vals < lo) | (vals > hi)
            if bad.any():
                raise DataError(
                    f"history rating {float(vals[bad][0]):g} is outside the model's rating scale {lo:g}..{hi:g}"
                )
        return vals

    def _fold_systems(
        self, item_idx: np.ndarray, values: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray, np.ndarray | None]]:
        """Per view: design X = [1, q_j], residual target y, LHS matrix A, data weight, solution, implicit sum."""
        systems = []
        for s in range(self._views()):
            bi, q = self._view_items(s)
            z = self._implicit(item_idx, s)
            x = np.hstack([np.ones((len(item_idx), 1)), q[item_idx]])
            y = values - self.global_mean_ - bi[item_idx]
            if z is not None:
                y = y - q[item_idx] @ z
            lam, m, w = self._view_prior(s, len(item_idx))
            a = w * x.T @ x + lam
            rhs = w * x.T @ y + lam @ m
            systems.append((x, y, a, float(w), np.linalg.solve(a, rhs), z))
        return systems

    def _fold_in(self, item_idx: np.ndarray, values: np.ndarray) -> tuple[float, np.ndarray]:
        """A new user's bias and factor row, solved from their ratings given the item side."""
        systems = self._fold_systems(item_idx, self._history_values(values))
        bias = float(np.mean([sol[0] for *_, sol, _ in systems]))
        parts = [sol[1:] if z is None else sol[1:] + z for *_, sol, z in systems]
        return bias, np.concatenate(parts) / np.sqrt(len(systems))

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        bias, p = self._fold_in(item_idx, values)
        return self.global_mean_ + bias + self.item_bias_ + self.item_factors_ @ p.astype(np.float32)

    # ------------------------------------------------------------------ explanations
    def _contributions(self, hist: np.ndarray, vals: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(len(items), len(hist)): each history item's share of each item's score.

        The user part of the score is ``x_i . w`` with ``w = A^-1 (weight X^T y + prior)``, so it
        splits exactly into ``weight * x_i^T A^-1 x_j * y_j`` per history item j, plus the prior
        (as in Hu, Koren & Volinsky 2008, section 5, for implicit ALS).
        """
        out = np.zeros((len(items), len(hist)))
        systems = self._fold_systems(hist, self._history_values(vals))
        for s, (x, y, a, w, _, _) in enumerate(systems):
            _, q = self._view_items(s)
            xi = np.hstack([np.ones((len(items), 1)), q[items]])
            out += w * (xi @ np.linalg.solve(a, x.T)) * y[None, :]
        out /= len(systems)
        z_items = self._implicit_terms(hist, items)
        if z_items is not None:
            out += z_items
        return out

    def _implicit_terms(self, hist: np.ndarray, items: np.ndarray) -> np.ndarray | None:
        return None

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        row = sp.csr_matrix(history)
        hist, vals = row.indices.astype(np.int64), row.data.astype(np.float64)
        if len(hist) == 0:
            return [
                Explanation(
                    f"item bias {self.item_bias_[i]:+.2f} over the mean", [("item_bias", float(self.item_bias_[i]))]
                )
                for i in item_idx
            ]
        contrib = self._contributions(hist, vals, np.asarray(item_idx, np.int64))
        out = []
        ids = self.items_.to_ids(hist)
        for r, i in enumerate(item_idx):
            order = np.argsort(-contrib[r], kind="stable")[:3]
            pairs = [(ids[j].item() if isinstance(ids[j], np.generic) else ids[j], float(contrib[r, j])) for j in order]
            named = ", ".join(f"{c!r} ({w:+.2f})" for c, w in pairs)
            out.append(Explanation(f"because you rated {named}; item bias {self.item_bias_[i]:+.2f}", pairs))
        return out

    # ------------------------------------------------------------------ helpers
    def _finish(
        self, mu: float, bu: np.ndarray, bi: np.ndarray, p: np.ndarray, q: np.ndarray, m: sp.csr_matrix
    ) -> None:
        """Store the learned state; users / items without a training rating fall back to the biases."""
        for name, arr in (("user_factors", p), ("item_factors", q), ("user_bias", bu), ("item_bias", bi)):
            if not np.isfinite(arr).all():
                raise TrainingError(
                    f"{type(self).__name__}: {name} became non-finite; lower learning_rate or raise reg"
                )
        no_user = np.diff(m.indptr) == 0
        no_item = np.bincount(m.indices, minlength=m.shape[1]) == 0
        p, q, bu, bi = p.copy(), q.copy(), bu.copy(), bi.copy()
        p[no_user] = 0.0
        bu[no_user] = 0.0
        q[no_item] = 0.0
        bi[no_item] = 0.0
        self.global_mean_ = float(mu)
        self.user_bias_ = bu.astype(np.float32)
        self.item_bias_ = bi.astype(np.float32)
        self.user_factors_ = np.ascontiguousarray(p, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(q, dtype=np.float32)


class _SGDMixin:
    """Per-parameter regularisation as in Surprise: ``reg_user_bias`` ... (None: ``reg``)."""

    reg: float
    reg_user_bias: float | None
    reg_item_bias: float | None
    reg_user_factors: float | None
    reg_item_factors: float | None

    def _regs(self) -> tuple[float, float, float, float]:
        r = float(self.reg)
        pick = lambda v: r if v is None else float(v)  # noqa: E731
        return (
            pick(self.reg_user_bias),
            pick(self.reg_item_bias),
            pick(self.reg_user_factors),
            pick(self.reg_item_factors),
        )

    def _epoch_rmse(self, sse: float, n: int, epoch: int) -> float:
        """The epoch's training RMSE; a non-finite or exploding loss stops training with a hint."""
        if not np.isfinite(sse) or sse > 1e6 * n:
            raise _diverged(
                type(self).__name__,
                epoch,
                "the training loss",
                f"lower learning_rate (now {self.learning_rate:g}) or raise reg",  # type: ignore[attr-defined]
            )
        return float(np.sqrt(sse / n))


@register("svd")
class SVD(_SGDMixin, _BiasedMF):
    """Biased matrix factorisation learned by SGD (Funk 2006; Koren, Bell & Volinsky 2009).

    Minimises ``sum (r - mu - b_u - b_i - p_u.q_i)^2 + reg_user_bias b_u^2 + reg_item_bias b_i^2
    + reg_user_factors |p_u|^2 + reg_item_factors |q_i|^2`` (each term per rating, as Surprise does) by SGD over shuffled ratings. The
    learning rate is multiplied by ``learning_rate_decay`` after each epoch. ``threads > 1`` runs
    lock-free Hogwild SGD (fast, not bit-reproducible); ``threads=1`` is deterministic.

    Defaults (tuned on ML-100K u1..u5, see docs/mf.md) differ from Surprise's: more epochs, a
    decaying rate and stronger regularisation.
    """

    demo_params: ClassVar[dict[str, Any] | None] = {}
    lab_default: ClassVar[bool] = True

    fast_params: ClassVar[dict[str, Any]] = {"factors": 8, "epochs": 10, "random_state": 0}
    renamed_params: ClassVar[dict[str, str | tuple[str, ...]]] = {
        "reg_bu": "reg_user_bias",
        "reg_bi": "reg_item_bias",
        "reg_pu": "reg_user_factors",
        "reg_qi": "reg_item_factors",
    }
    search_space: ClassVar[dict[str, Dist]] = {
        "factors": Int(8, 256, log=True),
        "epochs": Int(10, 150),
        "learning_rate": LogFloat(1e-3, 0.05),
        "reg": LogFloat(1e-3, 0.5),
        "reg_user_bias": LogFloat(1e-3, 0.5),
        "reg_item_bias": LogFloat(1e-3, 0.5),
    }

    def __init__(
        self,
        factors: int = 100,
        epochs: int = 100,
        learning_rate: float = 0.007,
        learning_rate_decay: float = 0.99,
        reg: float = 0.1,
        reg_user_bias: float | None = 0.02,
        reg_item_bias: float | None = 0.02,
        reg_user_factors: float | None = None,
        reg_item_factors: float | None = None,
        init_std: float = 0.1,
        threads: int = 1,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.learning_rate_decay = learning_rate_decay
        self.reg = reg
        self.reg_user_bias = reg_user_bias
        self.reg_item_bias = reg_item_bias
        self.reg_user_factors = reg_user_factors
        self.reg_item_factors = reg_item_factors
        self.init_std = init_std
        self.threads = threads
        self.random_state = random_state

    def _validate_params(self) -> None:
        owner = type(self).__name__
        positive(
            owner,
            factors=self.factors,
            epochs=self.epochs,
            learning_rate=self.learning_rate,
            learning_rate_decay=self.learning_rate_decay,
        )
        non_negative(owner, reg=self.reg, init_std=self.init_std, threads=self.threads)
        for name in ("reg_user_bias", "reg_item_bias", "reg_user_factors", "reg_item_factors", "reg_implicit_factors"):
            value = getattr(self, name, None)
            if value is not None:
                non_negative(owner, **{name: value})

    def _fit(self, data: Interactions) -> None:
        m = _ratings(data, type(self).__name__)
        coo = m.tocoo()
        users, items = coo.row.astype(np.int32), coo.col.astype(np.int32)
        ratings = coo.data.astype(np.float64)
        mu = float(ratings.mean())
        rng = np.random.default_rng(self.random_state)
        p = rng.normal(0.0, self.init_std, (data.n_users, self.factors)).astype(np.float32)
        q = rng.normal(0.0, self.init_std, (data.n_items, self.factors)).astype(np.float32)
        bu, bi = np.zeros(data.n_users), np.zeros(data.n_items)
        reg_bu, reg_bi, reg_pu, reg_qi = self._regs()
        lr = float(self.learning_rate)
        history = []
        with numba_threads(self.threads) as n_threads, progress_bar(self.epochs, self.name, "epoch") as bar:
            for epoch in range(self.epochs):
                order = rng.permutation(len(ratings))
                sse = K.sgd_epoch(
                    users[order],
                    items[order],
                    ratings[order],
                    n_threads,
                    mu,
                    bu,
                    bi,
                    p,
                    q,
                    lr,
                    reg_bu,
                    reg_bi,
                    reg_pu,
                    reg_qi,
                )
                history.append(self._epoch_rmse(sse, len(ratings), epoch))
                lr *= self.learning_rate_decay
                bar.set_postfix(rmse=f"{history[-1]:.4f}", refresh=False)
                bar.update(1)
        self.train_rmse_ = np.asarray(history)
        self._finish(mu, bu, bi, p, q, m)

    def _view_prior(self, s: int, n: int) -> tuple[np.ndarray, np.ndarray, float]:
        # per-rating regularisation in SGD = a ridge penalty of n * reg on the user's parameters
        reg_bu, _, reg_pu, _ = self._regs()
        d = self.item_factors_.shape[1] + 1
        lam = np.diag([reg_bu * n] + [reg_pu * n] * (d - 1))
        return lam, np.zeros(d), 1.0


@register("svdpp")
class SVDpp(SVD):
    """SVD++ (Koren 2008, "Factorization meets the neighborhood", eq. 15).

    ``r_ui = mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)`` where N(u) is every
    item u rated: the fact of rating carries information beyond the value. SGD runs user by user
    so the implicit sum is formed once per user (Surprise recomputes it for every rating); the
    ``y_j`` take the user's accumulated gradient once per user. ``user_factors_`` holds the
    effective vector ``p_u + implicit sum``; ``implicit_factors_`` holds the ``y_j``.
    """

    history_preference: ClassVar[int | None] = 8
    demo_params: ClassVar[dict[str, Any] | None] = {"epochs": 10}
    lab_default: ClassVar[bool] = False

    fast_params: ClassVar[dict[str, Any]] = {"factors": 8, "epochs": 10, "random_state": 0}
    renamed_params: ClassVar[dict[str, str | tuple[str, ...]]] = {
        **SVD.renamed_params,
        "reg_yj": "reg_implicit_factors",
    }
    search_space: ClassVar[dict[str, Dist]] = {
        "factors": Int(4, 64, log=True),
        "epochs": Int(10, 100),
        "learning_rate": LogFloat(1e-3, 0.03),
        "reg": LogFloat(1e-3, 0.5),
        "reg_implicit_factors": LogFloat(1e-3, 1.0),
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
        init_std: float = 0.1,
        threads: int = 1,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            factors=factors, epochs=epochs, learning_rate=learning_rate, learning_rate_decay=learning_rate_decay,
            reg=reg, reg_user_bias=reg_user_bias, reg_item_bias=reg_item_bias, reg_user_factors=reg_user_factors,
            reg_item_factors=reg_item_factors, init_std=init_std, threads=threads, random_state=random_state,
        )  # fmt: skip
        self.reg_implicit_factors = reg_implicit_factors

    def _fit(self, data: Interactions) -> None:
        m = _ratings(data, type(self).__name__)
        indptr, indices = m.indptr.astype(np.int64), m.indices.astype(np.int32)
        ratings = m.data.astype(np.float64)
        mu = float(ratings.mean())
        rng = np.random.default_rng(self.random_state)
        p = rng.normal(0.0, self.init_std, (data.n_users, self.factors)).astype(np.float32)
        q = rng.normal(0.0, self.init_std, (data.n_items, self.factors)).astype(np.float32)
        y = rng.normal(0.0, self.init_std, (data.n_items, self.factors)).astype(np.float32)
        bu, bi = np.zeros(data.n_users), np.zeros(data.n_items)
        reg_bu, reg_bi, reg_pu, reg_qi = self._regs()
        reg_yj = float(self.reg if self.reg_implicit_factors is None else self.reg_implicit_factors)
        counts = np.diff(indptr)
        lr = float(self.learning_rate)
        history = []
        with numba_threads(self.threads) as n_threads, progress_bar(self.epochs, self.name, "epoch") as bar:
            for epoch in range(self.epochs):
                user_order = rng.permutation(data.n_users).astype(np.int64)
                # a random order within every user's row: sort random keys per row segment
                keys = rng.random(len(ratings)) + np.repeat(np.arange(data.n_users), counts)
                perm = (np.argsort(keys, kind="stable") - np.repeat(indptr[:-1], counts)).astype(np.int64)
                sse = K.svdpp_epoch(
                    indptr,
                    indices,
                    ratings,
                    user_order,
                    perm,
                    n_threads,
                    mu,
                    bu,
                    bi,
                    p,
                    q,
                    y,
                    lr,
                    reg_bu,
                    reg_bi,
                    reg_pu,
                    reg_qi,
                    reg_yj,
                )
                history.append(self._epoch_rmse(sse, len(ratings), epoch))
                lr *= self.learning_rate_decay
                bar.set_postfix(rmse=f"{history[-1]:.4f}", refresh=False)
                bar.update(1)
        if not np.isfinite(y).all():
            raise TrainingError(f"{type(self).__name__}: implicit factors became non-finite; lower learning_rate")
        norm = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
        z = (sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=m.shape) @ y.astype(np.float64)) * norm[
            :, None
        ]
        self.train_rmse_ = np.asarray(history)
        no_item = np.bincount(indices, minlength=data.n_items) == 0
        y[no_item] = 0.0
        self.implicit_factors_ = y.astype(np.float32)
        self._finish(mu, bu, bi, p + z, q, m)

    def _implicit(self, item_idx: np.ndarray, s: int) -> np.ndarray | None:
        if len(item_idx) == 0:
            return np.zeros(self.implicit_factors_.shape[1])
        return self.implicit_factors_[np.unique(item_idx)].astype(np.float64).sum(axis=0) / np.sqrt(
            len(np.unique(item_idx))
        )

    def _implicit_terms(self, hist: np.ndarray, items: np.ndarray) -> np.ndarray | None:
        yj = self.implicit_factors_[hist].astype(np.float64)
        return (self.item_factors_[items].astype(np.float64) @ yj.T) / np.sqrt(max(1, len(np.unique(hist))))


@register("als")
class ExplicitALS(_BiasedMF):
    """Explicit ALS with biases: alternating exact ridge regressions (Zhou et al. 2008, ALS-WR).

    Each half-step solves every user's (then item's) ``[b, p]`` given the other side, with
    penalty ``reg * n`` on the factors and ``reg_user_bias * n`` (``reg_item_bias * n``) on the
    bias (n = that row's number of ratings; ``weighted_reg=False`` drops the n). Rows solve in parallel and exactly, so the
    result is deterministic on any number of threads. The last half-step updates users, so a
    user's factors equal the fold-in of their ratings.
    """

    history_preference: ClassVar[int | None] = 7
    demo_params: ClassVar[dict[str, Any] | None] = {}

    fast_params: ClassVar[dict[str, Any]] = {"factors": 8, "epochs": 5, "random_state": 0}
    renamed_params: ClassVar[dict[str, str | tuple[str, ...]]] = {"reg_bias": ("reg_user_bias", "reg_item_bias")}
    search_space: ClassVar[dict[str, Dist]] = {
        "factors": Int(4, 128, log=True),
        "epochs": Int(5, 30),
        "reg": LogFloat(1e-3, 1.0),
        "reg_user_bias": LogFloat(1e-4, 1.0),
        "reg_item_bias": LogFloat(1e-4, 1.0),
    }

    def __init__(
        self,
        factors: int = 20,
        epochs: int = 15,
        reg: float = 0.1225,
        reg_user_bias: float | None = 0.1031,
        reg_item_bias: float | None = 0.2147,
        weighted_reg: bool = True,
        init_std: float = 0.1,
        threads: int = 0,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.epochs = epochs
        self.reg = reg
        self.reg_user_bias = reg_user_bias
        self.reg_item_bias = reg_item_bias
        self.weighted_reg = weighted_reg
        self.init_std = init_std
        self.threads = threads
        self.random_state = random_state

    def _validate_params(self) -> None:
        positive("ExplicitALS", factors=self.factors, epochs=self.epochs)
        non_negative("ExplicitALS", reg=self.reg, init_std=self.init_std, threads=self.threads)
        for name in ("reg_user_bias", "reg_item_bias"):
            if getattr(self, name) is not None:
                non_negative("ExplicitALS", **{name: getattr(self, name)})
        if not self.weighted_reg and self.reg <= 0:
            raise ConfigError(
                "ExplicitALS: reg must be > 0 when weighted_reg is false (the ridge systems would be singular)"
            )

    def _reg_bias(self, side: str) -> float:
        value = self.reg_user_bias if side == "user" else self.reg_item_bias
        return float(self.reg if value is None else value)

    def _fit(self, data: Interactions) -> None:
        m = _ratings(data, "ExplicitALS")
        mt = m.T.tocsr()
        rng = np.random.default_rng(self.random_state)
        mu = float(m.data.mean())
        u = np.zeros((data.n_users, self.factors + 1))
        v = np.zeros((data.n_items, self.factors + 1))
        u[:, 1:] = rng.normal(0.0, self.init_std, (data.n_users, self.factors))
        v[:, 1:] = rng.normal(0.0, self.init_std, (data.n_items, self.factors))
        args_u = (m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float64))
        args_i = (mt.indptr.astype(np.int64), mt.indices.astype(np.int32), mt.data.astype(np.float64))
        coo = m.tocoo()
        history = []
        lam_bu, lam_bi, lam_f = self._reg_bias("user"), self._reg_bias("item"), float(self.reg)
        with numba_threads(self.threads), progress_bar(self.epochs, self.name, "epoch") as bar:
            for epoch in range(self.epochs):
                K.ridge_side(*args_i, mu + u[:, 0], u, v, lam_bi, lam_f, self.weighted_reg)
                K.ridge_side(*args_u, mu + v[:, 0], v, u, lam_bu, lam_f, self.weighted_reg)
                sse = K.sq_errors(
                    coo.row.astype(np.int32),
                    coo.col.astype(np.int32),
                    coo.data.astype(np.float64),
                    mu,
                    u[:, 0],
                    v[:, 0],
                    u[:, 1:].copy(),
                    v[:, 1:].copy(),
                )
                if not np.isfinite(sse):
                    raise _diverged("ExplicitALS", epoch, "the training loss", "raise reg")
                history.append(float(np.sqrt(sse / m.nnz)))
                bar.set_postfix(rmse=f"{history[-1]:.4f}", refresh=False)
                bar.update(1)
        self.train_rmse_ = np.asarray(history)
        self._finish(mu, u[:, 0], v[:, 0], u[:, 1:], v[:, 1:], m)

    def _view_prior(self, s: int, n: int) -> tuple[np.ndarray, np.ndarray, float]:
        scale = n if self.weighted_reg else 1
        d = self.item_factors_.shape[1] + 1
        return np.diag([self._reg_bias("user") * scale] + [float(self.reg) * scale] * (d - 1)), np.zeros(d), 1.0


def _wishart(rng: np.random.Generator, scale: np.ndarray, dof: float) -> np.ndarray:
    """One draw from Wishart(scale, dof) by the Bartlett decomposition."""
    d = scale.shape[0]
    chol = np.linalg.cholesky(scale)
    a = np.tril(rng.standard_normal((d, d)), -1)
    a[np.diag_indices(d)] = np.sqrt(rng.chisquare(dof - np.arange(d)))
    la = chol @ a
    return la @ la.T


def _normal_wishart_draw(
    rng: np.random.Generator, x: np.ndarray, beta0: float, nu0: float
) -> tuple[np.ndarray, np.ndarray]:
    """(mu, Lambda) from the Normal-Wishart posterior given rows ``x`` (prior mean 0, W0 = I)."""
    n, d = x.shape
    xbar = x.mean(axis=0)
    centred = x - xbar
    s = centred.T @ centred
    w_inv = np.eye(d) + s + (beta0 * n / (beta0 + n)) * np.outer(xbar, xbar)
    w = np.linalg.inv(w_inv)
    w = (w + w.T) / 2
    lam = _wishart(rng, w, nu0 + n)
    mean = n * xbar / (beta0 + n)
    cov = np.linalg.inv((beta0 + n) * lam)
    mu = rng.multivariate_normal(mean, (cov + cov.T) / 2, method="cholesky")
    return mu, lam


@register("bayesmf")
class BayesianMF(_BiasedMF):
    """Bayesian probabilistic matrix factorisation by Gibbs sampling (Salakhutdinov & Mnih 2008).

    Ratings ``r_ui ~ N(mu + b_u + b_i + p_u.q_i, 1/alpha)``. Each user's ``[b_u, p_u]`` (and each
    item's ``[b_i, q_i]``) has a Gaussian prior whose mean and precision get a Normal-Wishart
    hyper-prior (mean 0, beta0 = 2, W0 = I, nu0 = factors + 1); the noise precision alpha gets a
    Gamma(1, 1) prior. One sweep draws the hyper-parameters, every user given the items, every item
    given the users (rows in parallel; the normal draws come from the seeded generator, so the
    result is identical on any number of threads) and alpha. Predictions average the kept samples
    after ``burn_in`` sweeps (every ``thin``-th), as Rendle et al. (2019) do for their strong
    Bayesian baselines.

    ``implicit`` adds who-rated-what as in SVD++ (Koren 2008) inside the Bayesian model:
    ``"users"`` uses ``p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j``; ``"both"`` (default) also uses the
    flipped item side ``q_i + |M(i)|^-1/2 sum_{v in M(i)} x_v`` (Rendle et al. 2019's "flipped"
    Bayesian SVD++); the ``y`` / ``x`` factors get their own Normal-Wishart priors and are drawn
    one at a time from their exact conditionals. ``"none"`` is plain biased BPMF.
    """

    heavy: ClassVar[bool] = True  # Gibbs sampling: tens of seconds with its defaults
    demo_params: ClassVar[dict[str, Any] | None] = {}

    fast_params: ClassVar[dict[str, Any]] = {"factors": 4, "epochs": 12, "burn_in": 4, "random_state": 0, "threads": 1}
    # ``epochs`` / ``burn_in`` buy accuracy with time rather than trade it off: not searched.
    search_space: ClassVar[dict[str, Dist]] = {
        "factors": Int(4, 64, log=True),
        "implicit": Categorical(["none", "users", "both"]),
    }

    def __init__(
        self,
        factors: int = 10,
        epochs: int = 200,
        burn_in: int = 30,
        thin: int = 1,
        implicit: Literal["none", "users", "both"] = "both",
        init_std: float = 0.1,
        threads: int = 0,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.epochs = epochs
        self.burn_in = burn_in
        self.thin = thin
        self.implicit = implicit
        self.init_std = init_std
        self.threads = threads
        self.random_state = random_state

    def _validate_params(self) -> None:
        positive("BayesianMF", factors=self.factors, epochs=self.epochs, thin=self.thin)
        non_negative("BayesianMF", burn_in=self.burn_in, init_std=self.init_std, threads=self.threads)
        if self.burn_in >= self.epochs:
            raise ConfigError(
                f"BayesianMF: burn_in ({self.burn_in}) must be smaller than epochs ({self.epochs}) so some samples are kept"
            )

    def _fit(self, data: Interactions) -> None:
        m = _ratings(data, "BayesianMF")
        mt = m.T.tocsr()
        rng = np.random.default_rng(self.random_state)
        mu = float(m.data.mean())
        k = self.factors
        d = k + 1
        u = np.zeros((data.n_users, d))
        v = np.zeros((data.n_items, d))
        u[:, 1:] = rng.normal(0.0, self.init_std, (data.n_users, k))
        v[:, 1:] = rng.normal(0.0, self.init_std, (data.n_items, k))
        args_u = (m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float64))
        args_i = (mt.indptr.astype(np.int64), mt.indices.astype(np.int32), mt.data.astype(np.float64))
        coo = m.tocoo()  # CSR order
        rows, cols, vals = coo.row.astype(np.int32), coo.col.astype(np.int32), coo.data.astype(np.float64)
        alpha = 2.0
        beta0 = 2.0
        has_u = np.diff(m.indptr) > 0
        has_i = np.diff(mt.indptr) > 0
        none = np.empty(0)
        # Bayesian SVD++: implicit factors y_j, z_u = |N(u)|^-1/2 sum_{j in N(u)} y_j ("users"), and the
        # flipped side w_i = |M(i)|^-1/2 sum_{v in M(i)} x_v over the users who rated i ("both")
        use_y = self.implicit in ("users", "both")
        use_x = self.implicit == "both"
        norm_u = np.where(has_u, 1.0 / np.sqrt(np.maximum(np.diff(m.indptr), 1)), 0.0)
        norm_i = np.where(has_i, 1.0 / np.sqrt(np.maximum(np.diff(mt.indptr), 1)), 0.0)
        binary = sp.csr_matrix((np.ones(m.nnz), m.indices, m.indptr), shape=m.shape)
        binary_t = binary.T.tocsr()
        y = rng.normal(0.0, self.init_std, (data.n_items, k)) if use_y else np.zeros((data.n_items, k))
        x = rng.normal(0.0, self.init_std, (data.n_users, k)) if use_x else np.zeros((data.n_users, k))
        z = (binary @ y) * norm_u[:, None]
        w = (binary_t @ x) * norm_i[:, None]
        ct = mt.tocoo()  # item-CSR order
        rows_t, cols_t = ct.row.astype(np.int32), ct.col.astype(np.int32)
        kept_u, kept_v, kept_y, hyper_mu, hyper_lam, alphas = [], [], [], [], [], []
        history = []
        with numba_threads(self.threads), progress_bar(self.epochs, self.name, "sweep") as bar:
            for epoch in range(self.epochs):
                mu_v, lam_v = _normal_wishart_draw(rng, v[has_i], beta0, float(d))
                mu_u, lam_u = _normal_wishart_draw(rng, u[has_u], beta0, float(d))
                v_eff = v.copy()
                v_eff[:, 1:] += w
                extra = np.einsum("nf,nf->n", z[rows], v_eff[cols, 1:]) if use_y else none
                K.gibbs_side(
                    *args_u, mu + v[:, 0], v_eff, u, alpha, mu_u, lam_u, rng.standard_normal((data.n_users, d)), extra
                )
                u_eff = u.copy()
                u_eff[:, 1:] += z
                extra = np.einsum("nf,nf->n", w[rows_t], u_eff[cols_t, 1:]) if use_x else none
                K.gibbs_side(
                    *args_i, mu + u[:, 0], u_eff, v, alpha, mu_v, lam_v, rng.standard_normal((data.n_items, d)), extra
                )
                v_eff[:, 1:] = v[:, 1:] + w
                if use_y:
                    q_eff = np.ascontiguousarray(v_eff[:, 1:])
                    mu_y, lam_y = _normal_wishart_draw(rng, y[has_i], beta0, float(k))
                    resid = vals - (mu + u[rows, 0] + v[cols, 0] + np.einsum("nf,nf->n", u_eff[rows, 1:], q_eff[cols]))
                    g = sp.csr_matrix((resid, m.indices, m.indptr), shape=m.shape) @ q_eff
                    gram = K.user_gram(args_u[0], args_u[1], q_eff)
                    K.gibbs_implicit(
                        args_i[0],
                        args_i[1],
                        norm_u,
                        q_eff,
                        y,
                        g,
                        gram,
                        alpha,
                        mu_y,
                        lam_y,
                        rng.standard_normal((data.n_items, k)),
                    )
                    z = (binary @ y) * norm_u[:, None]
                    u_eff[:, 1:] = u[:, 1:] + z
                if use_x:
                    p_eff = np.ascontiguousarray(u_eff[:, 1:])
                    mu_x, lam_x = _normal_wishart_draw(rng, x[has_u], beta0, float(k))
                    resid_t = args_i[2] - (
                        mu + u[cols_t, 0] + v[rows_t, 0] + np.einsum("nf,nf->n", p_eff[cols_t], v_eff[rows_t, 1:])
                    )
                    g_t = sp.csr_matrix((resid_t, mt.indices, mt.indptr), shape=mt.shape) @ p_eff
                    gram_t = K.user_gram(args_i[0], args_i[1], p_eff)
                    K.gibbs_implicit(
                        args_u[0],
                        args_u[1],
                        norm_i,
                        p_eff,
                        x,
                        g_t,
                        gram_t,
                        alpha,
                        mu_x,
                        lam_x,
                        rng.standard_normal((data.n_users, k)),
                    )
                    w = (binary_t @ x) * norm_i[:, None]
                    v_eff[:, 1:] = v[:, 1:] + w
                sse = K.sq_errors(
                    rows, cols, vals, mu, u[:, 0].copy(), v[:, 0].copy(), u_eff[:, 1:].copy(), v_eff[:, 1:].copy()
                )
                if not np.isfinite(sse) or not np.isfinite(u_eff).all() or not np.isfinite(v_eff).all():
                    raise _diverged("BayesianMF", epoch, "the sampled factors", "lower factors or check the ratings")
                alpha = rng.gamma(1.0 + m.nnz / 2.0, 1.0 / (1.0 + sse / 2.0))
                history.append(float(np.sqrt(sse / m.nnz)))
                if epoch >= self.burn_in and (epoch - self.burn_in) % self.thin == 0:
                    kept_u.append(u_eff)
                    kept_v.append(v_eff)
                    if use_y:
                        kept_y.append(y.copy())
                    hyper_mu.append(mu_u)
                    hyper_lam.append(lam_u)
                    alphas.append(alpha)
                # Gibbs sweeps: the first burn_in are discarded, then every thin-th is kept
                bar.set_postfix(rmse=f"{history[-1]:.4f}", kept=len(kept_u), refresh=False)
                bar.update(1)
        n_s = len(kept_u)
        us, vs = np.stack(kept_u), np.stack(kept_v)  # (S, rows, d)
        scale = 1.0 / np.sqrt(n_s)
        p = np.concatenate(list(us[:, :, 1:]), axis=1) * scale
        q = np.concatenate(list(vs[:, :, 1:]), axis=1) * scale
        self.train_rmse_ = np.asarray(history)
        self.samples_ = n_s
        self.item_bias_samples_ = vs[:, :, 0].astype(np.float32)
        self.user_prior_mean_ = np.stack(hyper_mu)
        self.user_prior_precision_ = np.stack(hyper_lam)
        self.noise_precision_ = np.asarray(alphas)
        if use_y:
            ys = np.concatenate(kept_y, axis=1) * scale
            ys[~has_i] = 0.0
            self.implicit_factors_ = ys.astype(np.float32)
        self._finish(mu, us[:, :, 0].mean(axis=0), vs[:, :, 0].mean(axis=0), p, q, m)
        self.item_bias_samples_[:, ~has_i] = 0.0

    def _implicit(self, item_idx: np.ndarray, s: int) -> np.ndarray | None:
        if self.implicit == "none":
            return None
        k = self.factors
        uniq = np.unique(item_idx)
        if len(uniq) == 0:
            return np.zeros(k)
        ys = self.implicit_factors_[uniq, s * k : (s + 1) * k].astype(np.float64) * np.sqrt(self.samples_)
        return ys.sum(axis=0) / np.sqrt(len(uniq))

    def _implicit_terms(self, hist: np.ndarray, items: np.ndarray) -> np.ndarray | None:
        if self.implicit == "none":
            return None
        # (1/S) sum_s |N|^-1/2 q_i^s . y_j^s: both stacks carry 1/sqrt(S)
        yj = self.implicit_factors_[hist].astype(np.float64)
        return (self.item_factors_[items].astype(np.float64) @ yj.T) / np.sqrt(max(1, len(np.unique(hist))))

    def _views(self) -> int:
        return int(self.samples_)

    def _view_items(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        k = self.factors
        q = self.item_factors_[:, s * k : (s + 1) * k].astype(np.float64) * np.sqrt(self.samples_)
        return self.item_bias_samples_[s].astype(np.float64), q

    def _view_prior(self, s: int, n: int) -> tuple[np.ndarray, np.ndarray, float]:
        # posterior mean of [b_u, p_u] given this sample's items and user hyper-parameters
        return self.user_prior_precision_[s], self.user_prior_mean_[s], float(self.noise_precision_[s])
