"""Implicit ALS: matrix factorisation for clicks, plays and purchases (Hu, Koren & Volinsky 2008).

"Collaborative Filtering for Implicit Feedback Datasets" (ICDM 2008) treats every (user, item)
cell as a preference ``p_ui`` (1 if the user had the item, else 0) held with confidence ``c_ui``
and minimises ``sum_ui c_ui (p_ui - x_u . y_i)^2 + reg (|X|^2 + |Y|^2)`` over *all* cells by
alternating least squares. Each sweep is solved with a few conjugate-gradient steps per row,
warm-started (Takacs, Pilaszy & Tikk 2011), as benfred/implicit does; see
:mod:`tastebud.kernels.ials`.

Conventions (docs/ials.md): ``c_ui = 1 + alpha * v_ui`` (``confidence="linear"``) or
``1 + alpha * log(1 + v_ui / eps)`` (``"log"``). implicit 0.7 uses ``c_ui = alpha * v_ui`` with
the same ``reg`` (added once, not scaled by counts), so implicit's ``alpha=a`` on binary data is
tastebud's ``alpha=a - 1``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from tastebud.core.base import ENGINE_PARAMS, Recommender, non_negative, positive
from tastebud.core.errors import ConfigError, DataError, TrainingError
from tastebud.core.progress import progress_bar
from tastebud.core.registry import register
from tastebud.core.results import Explanation
from tastebud.core.space import Dist, Float, Int, LogFloat
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions
from tastebud.kernels import ials as K
from tastebud.models._common import check_values, cosine_rows, numba_threads


@register("ials")
class ImplicitALS(Recommender):
    """Weighted matrix factorisation for implicit feedback, fitted by conjugate-gradient ALS.

    ``factors``: latent dimensions; ``reg``: L2 penalty added to every row's normal equations;
    ``alpha``: how much more an observed interaction counts than a missing one; ``epochs``: ALS
    sweeps (items then users); ``cg_steps``: CG steps per row and sweep (0 = exact Cholesky
    solve); ``threads``: 0 for every core. Scores are dot products ``x_u . y_i``.
    """

    history_preference: ClassVar[int | None] = 5
    demo_params: ClassVar[dict[str, Any] | None] = {}
    lab_default: ClassVar[bool] = True
    scale_out: ClassVar[frozenset[str]] = frozenset({"ray", "parquet"})
    deprecated_params: ClassVar[dict[str, str]] = ENGINE_PARAMS

    supports_history = True
    docs_page = "ials"
    fast_params: ClassVar[dict[str, Any]] = {"factors": 8, "epochs": 5, "reg": 0.1, "alpha": 4.0}
    search_space: ClassVar[dict[str, Dist]] = {
        "factors": Int(8, 256, log=True),
        "reg": LogFloat(1e-2, 100.0),
        "alpha": LogFloat(0.5, 50.0),
        "epochs": Int(5, 30),
        "reg_exponent": Float(0.0, 1.0),
    }

    def __init__(
        self,
        factors: int = 64,
        reg: float = 17.73,
        alpha: float = 0.6621,
        epochs: int = 15,
        confidence: Literal["linear", "log"] = "linear",
        eps: float = 1.0,
        cg_steps: int = 3,
        reg_exponent: float = 0.883,
        threads: int = 0,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.reg = reg
        self.alpha = alpha
        self.epochs = epochs
        self.confidence = confidence
        self.eps = eps
        self.cg_steps = cg_steps
        self.reg_exponent = reg_exponent
        self.threads = threads
        self.random_state = random_state

    def _validate_params(self) -> None:
        positive("ImplicitALS", factors=self.factors, epochs=self.epochs, eps=self.eps)
        non_negative(
            "ImplicitALS", reg=self.reg, alpha=self.alpha, cg_steps=self.cg_steps, threads=self.threads,
            reg_exponent=self.reg_exponent,
        )  # fmt: skip

    # ------------------------------------------------------------------ confidence
    def _cm1(self, values: np.ndarray) -> np.ndarray:
        """``c - 1`` for raw interaction values."""
        values = np.asarray(values, np.float64)
        with np.errstate(over="ignore"):
            if self.confidence == "log":
                out = (self.alpha * np.log1p(values / self.eps)).astype(np.float32)
            else:
                out = (self.alpha * values).astype(np.float32)
        if not np.isfinite(out).all():
            raise TrainingError(
                f"ImplicitALS: confidences 1 + alpha * value overflow float32; lower alpha (now {self.alpha})"
            )
        return out

    def _conf_matrix(self, m: sp.csr_matrix) -> sp.csr_matrix:
        m = sp.csr_matrix(m, dtype=np.float32, copy=True)
        m.data = self._cm1(m.data)
        return m

    # ------------------------------------------------------------------ fit
    def _fit(self, data: Interactions) -> None:
        # on Ray: fit(data, engine=tastebud.scale.RayEngine(...)) runs tastebud.scale.ray_ials instead (same factors)
        m = self.user_items_
        check_values(m.data, "interaction values")
        check_values(data.values, "interaction values")
        cui = self._conf_matrix(m)
        ciu = cui.T.tocsr()
        rng = np.random.default_rng(self.random_state)
        k = int(self.factors)
        # small random start, as implicit does; the first item sweep overwrites the item side
        self.user_factors_ = (rng.random((data.n_users, k), dtype=np.float32) * 0.01).astype(np.float32)
        self.item_factors_ = (rng.random((data.n_items, k), dtype=np.float32) * 0.01).astype(np.float32)
        # what stays the same for the whole fit is made once: penalties and each side's row blocks
        items = (ciu, self._row_reg(ciu, data.n_users), self._plan(ciu, k))
        users = (cui, self._row_reg(cui, data.n_items), self._plan(cui, k))
        with numba_threads(self.threads), progress_bar(int(self.epochs), self.name, "epoch") as bar:
            for epoch in range(int(self.epochs)):
                bad = self._sweep(*items, self.item_factors_, self.user_factors_)
                bad += self._sweep(*users, self.user_factors_, self.item_factors_)
                if bad:
                    self._check_finite(epoch)
                bar.update(1)
        self._gram_cache = None

    def _row_reg(self, conf: sp.csr_matrix, n_cols: int) -> np.ndarray:
        """Per-row penalty on top of ``reg``: frequency-scaled regularisation (Rendle, Krichene,
        Zhang & Koren 2022, "Revisiting the performance of iALS"): row u's penalty is
        ``reg * (w_u / n_cols) ** reg_exponent`` with ``w_u = sum_i c_ui`` over *all* columns, the
        weight of the row's loss terms. Empty (no extra) when ``reg_exponent`` is 0."""
        if self.reg_exponent == 0:
            return np.empty(0, np.float32)
        row_of = np.repeat(np.arange(conf.shape[0]), np.diff(conf.indptr))
        mass = np.bincount(row_of, weights=conf.data.astype(np.float64), minlength=conf.shape[0])
        return self._penalty(mass, n_cols)

    def _penalty(self, mass: np.ndarray, n_cols: int) -> np.ndarray:
        """The extra penalty of rows whose ``sum_i (c_ui - 1)`` is ``mass`` (see :meth:`_row_reg`)."""
        scale = ((n_cols + mass) / max(1, n_cols)) ** float(self.reg_exponent)
        return (float(self.reg) * (scale - 1.0)).astype(np.float32)

    def _plan(self, conf: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The CG kernel's row blocks for ``conf`` (None for the exact solver, which needs none)."""
        return K.cg_plan(conf.indptr, k) if self.cg_steps > 0 else None

    def _sweep(
        self,
        conf: sp.csr_matrix,
        extra: np.ndarray,
        plan: tuple[np.ndarray, np.ndarray] | None,
        X: np.ndarray,
        Y: np.ndarray,
    ) -> int:
        """Re-solve every row of ``X`` given ``Y`` (CG, or exactly when ``cg_steps`` is 0); returns
        how many rows may have come out non-finite (the CG kernel counts them; the exact path
        leaves the check to :meth:`_check_finite`)."""
        A0 = K.gramian(Y, float(self.reg))
        if self.cg_steps > 0:
            return K.cg_rows(
                conf.indptr, conf.indices, conf.data, X, Y, A0.astype(np.float32), int(self.cg_steps), extra, plan
            )
        rows = np.arange(X.shape[0], dtype=np.int64)
        K.exact_rows(conf.indptr, conf.indices, conf.data, rows, X, Y, A0, extra)
        return 1

    def _check_finite(self, epoch: int) -> None:
        if not (np.isfinite(self.user_factors_).all() and np.isfinite(self.item_factors_).all()):
            raise TrainingError(
                f"ImplicitALS diverged in epoch {epoch + 1} (non-finite factors): lower alpha "
                f"(now {self.alpha}) or raise reg (now {self.reg})"
            )

    # ------------------------------------------------------------------ scoring
    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        Y = self.item_factors_ if item_idx is None else self.item_factors_[item_idx]
        return self.user_factors_[user_idx] @ Y.T

    def _history_parts(self, item_idx: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct items of a history and their raw values (duplicates summed)."""
        values = np.asarray(values, np.float32)
        check_values(values, "history values")
        item_idx = np.asarray(item_idx, np.int64)
        order = np.argsort(item_idx, kind="stable")
        items = item_idx[order]
        if (items[1:] != items[:-1]).all():  # distinct, as histories mostly are: no np.unique
            return items.astype(np.int32), values[order]
        items, where = np.unique(item_idx, return_inverse=True)
        summed = np.bincount(where, weights=values, minlength=len(items)).astype(np.float32)
        return items.astype(np.int32), summed

    def _item_gramian(self) -> np.ndarray:
        """``Y^T Y + reg I``, kept while the item factors stay the same array (a fold-in per
        request would otherwise cost ``n_items x k^2``; fit and partial_fit drop it)."""
        cached = getattr(self, "_gram_cache", None)
        if cached is None or cached[0] is not self.item_factors_ or cached[1] != float(self.reg):
            cached = self._gram_cache = (
                self.item_factors_,
                float(self.reg),
                K.gramian(self.item_factors_, float(self.reg)),
            )
        return cached[2]

    def fold_in(self, row: sp.csr_matrix) -> np.ndarray:
        """The exact least-squares user vector for one raw history row, item factors fixed."""
        row = sp.csr_matrix(row, copy=True)
        row.sum_duplicates()
        return self._solve_history(row.indices.astype(np.int32), row.data.astype(np.float32))

    def _solve_history(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        """:meth:`fold_in` of one row given as its sorted distinct items and raw values.

        No sparse matrix is built: this runs once per ``POST /recommendations``, where scipy's
        constructors cost more than the k x k solve."""
        cm1 = self._cm1(values)
        extra = np.empty(0, np.float32)
        if self.reg_exponent != 0:
            extra = self._penalty(np.array([cm1.sum(dtype=np.float64)]), self.n_items)
        out = np.zeros((1, self.item_factors_.shape[1]), np.float32)
        indptr = np.array([0, len(items)], np.int32)
        rows = np.zeros(1, np.int64)
        K.exact_rows_serial(indptr, items, cm1, rows, out, self.item_factors_, self._item_gramian(), extra)
        return out[0]

    def history_vector(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The folded-in vector of a new person: the query a vector index is searched with."""
        return self._solve_history(*self._history_parts(item_idx, values))

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        return self.item_factors_ @ self.history_vector(item_idx, values)

    def _similar(self, item_idx: np.ndarray) -> np.ndarray:
        return cosine_rows(self.item_factors_, item_idx)

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        """Hu et al. section 5: ``s_ui = sum_j s^u_ij c_uj`` with ``W^u = Y (Y^T C^u Y + reg I)^-1 Y^T``.

        The contributions sum to the score of the exact user vector (the stored vector when the
        fit converged).
        """
        history = sp.csr_matrix(history)
        hist_items = history.indices
        if len(hist_items) == 0:
            return [Explanation("no history to explain from") for _ in item_idx]
        Y = self.item_factors_.astype(np.float64)
        cm1 = self._cm1(history.data).astype(np.float64)
        Yh = Y[hist_items]
        A = K.gramian(self.item_factors_, float(self.reg)) + (Yh * cm1[:, None]).T @ Yh
        conf_row = sp.csr_matrix((cm1, hist_items, [0, len(hist_items)]), shape=(1, self.n_items))
        extra = self._row_reg(conf_row, self.n_items)
        if len(extra):
            A[np.diag_indices_from(A)] += extra[0]
        chol = scipy.linalg.cho_factor(A)
        weighted = scipy.linalg.cho_solve(chol, Y[item_idx].T).T  # y_i^T (Y^T C^u Y + reg I)^-1
        contrib = (weighted @ Yh.T) * (cm1 + 1.0)[None, :]  # s^u_ij c_uj
        out = []
        for row in contrib:
            top = np.argsort(-row, kind="stable")[:5]
            ids = self.items_.to_ids(hist_items[top])
            pairs = [(i, float(w)) for i, w in zip(ids, row[top], strict=False)]
            names = ", ".join(map(str, ids[:3]))
            out.append(Explanation(f"because of {names} in your history (total {row.sum():.3f})", pairs))
        return out

    # ------------------------------------------------------------------ partial fit
    def partial_fit(
        self, new: Interactions, side: Literal["both", "users", "items"] = "both", rounds: int = 2
    ) -> ImplicitALS:
        """Fold later interactions into the model without a full refit.

        ``new`` may name users and items the model has never seen: the vocabularies grow (new ids
        are appended, existing indices never move). Its events are merged into the training
        matrix (a pair already present takes the new value). Then only the touched rows are
        re-solved exactly: ``side="users"`` re-solves the users in ``new`` with item factors
        fixed (implicit's ``partial_fit_users``), ``"items"`` the items with user factors fixed
        (``partial_fit_items``), and ``"both"`` alternates items then users ``rounds`` times,
        so a new item bought only by new users still gets a vector.
        """
        self._check_fitted()
        if not isinstance(new, Interactions):
            raise DataError(f"partial_fit expects tastebud.Interactions, got {type(new).__name__}")
        if side not in ("both", "users", "items"):
            raise ConfigError(f"side must be 'both', 'users' or 'items', got {side!r}")
        positive("partial_fit", rounds=rounds)
        if len(new) == 0:
            return self
        m = new.matrix.tocoo()
        check_values(m.data, "new interaction values")
        self.users_ = _extend(self.users_, new.users.ids[np.unique(m.row)])
        self.items_ = _extend(self.items_, new.items.ids[np.unique(m.col)])
        rows = self.users_.lookup(new.users.ids[m.row])
        cols = self.items_.lookup(new.items.ids[m.col])
        n_u, n_i, k = len(self.users_), len(self.items_), self.item_factors_.shape[1]
        old = sp.csr_matrix(self.user_items_, dtype=np.float32)
        old.resize((n_u, n_i))
        # drop the old entries of pairs that arrive again, then add the new values
        coo = old.tocoo()
        keys_old = coo.row.astype(np.int64) * n_i + coo.col
        keys_new = rows.astype(np.int64) * n_i + cols
        keep = ~np.isin(keys_old, keys_new)
        merged = sp.csr_matrix(
            (
                np.concatenate([coo.data[keep], m.data]),
                (np.concatenate([coo.row[keep], rows]), np.concatenate([coo.col[keep], cols])),
            ),
            shape=(n_u, n_i),
            dtype=np.float32,
        )
        merged.sort_indices()
        self.user_items_ = merged
        self.user_factors_ = _grow(self.user_factors_, n_u, k)
        self.item_factors_ = _grow(self.item_factors_, n_i, k)
        touched_users = np.unique(rows).astype(np.int64)
        touched_items = np.unique(cols).astype(np.int64)
        cui = self._conf_matrix(merged)
        with numba_threads(self.threads):
            if side == "users":
                self._solve_rows(cui, touched_users, self.user_factors_, self.item_factors_)
            elif side == "items":
                self._solve_rows(cui.T.tocsr(), touched_items, self.item_factors_, self.user_factors_)
            else:
                ciu = cui.T.tocsr()
                for _ in range(int(rounds)):
                    self._solve_rows(ciu, touched_items, self.item_factors_, self.user_factors_)
                    self._solve_rows(cui, touched_users, self.user_factors_, self.item_factors_)
        self._check_finite(0)
        self._gram_cache = None  # the item factors changed in place
        return self

    def partial_fit_users(self, new: Interactions) -> ImplicitALS:
        """Re-solve only the users in ``new`` (new users are added), item factors fixed."""
        return self.partial_fit(new, side="users")

    def partial_fit_items(self, new: Interactions) -> ImplicitALS:
        """Re-solve only the items in ``new`` (new items are added), user factors fixed."""
        return self.partial_fit(new, side="items")

    def _solve_rows(self, conf: sp.csr_matrix, rows: np.ndarray, X: np.ndarray, Y: np.ndarray) -> None:
        A0 = K.gramian(Y, float(self.reg))
        out = np.zeros((len(rows), X.shape[1]), np.float32)
        K.exact_rows(conf.indptr, conf.indices, conf.data, rows, out, Y, A0, self._row_reg(conf, Y.shape[0]))
        X[rows] = out


def _extend(vocab: IdMap, ids: np.ndarray) -> IdMap:
    """The vocabulary with unseen ``ids`` appended (existing indices unchanged)."""
    fresh = ids[vocab.lookup(ids) < 0]
    if len(fresh) == 0:
        return vocab
    if vocab.is_int and np.asarray(fresh).dtype.kind not in "iu":
        raise DataError(f"new {vocab.name} ids {list(fresh[:3])!r} are not integers like the model's {vocab.name} ids")
    return IdMap(np.concatenate([vocab.ids, np.asarray(fresh, dtype=vocab.ids.dtype)]), vocab.name)


def _grow(factors: np.ndarray, n: int, k: int) -> np.ndarray:
    if factors.shape[0] >= n:
        return factors
    return np.vstack([factors, np.zeros((n - factors.shape[0], k), factors.dtype)])


__all__ = ["ImplicitALS"]
