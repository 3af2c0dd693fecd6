"""The lab's small matrix factorization: biased MF fitted by alternating least squares.

The model is the one of Koren, Bell & Volinsky, "Matrix Factorization Techniques for Recommender
Systems" (IEEE Computer, 2009), eq. 4 and 5:

    r_ui ~ mu + b_u + b_i + p_u . q_i

minimising  sum over observed (r_ui - mu - b_u - b_i - p_u . q_i)^2
            + reg * (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2),

with ``mu`` the mean observed rating. Alternating least squares (Zhou et al., "Large-scale
Parallel Collaborative Filtering for the Netflix Prize", 2008) solves each side exactly given the
other: with the items fixed, user u's unknowns x_u = [p_u, b_u] are a ridge regression of the
residuals r_ui - mu - b_i on z_i = [q_i, 1]; then the same for items. Each half-step is an exact
minimiser, so the objective never increases.

The lab uses it for matrices small enough to refit on every keystroke (the seed's 5 x 5, a
sample of a real data set); it is written for clarity and exactness, not for large data. It is not
the library's ``als`` model on purpose: the page also shows k = 0 (biases only), biases switched
off, and the exact objective after every sweep, which ``ExplicitALS`` (factors >= 1, biases always
on, ALS-WR's count-weighted penalty) does not offer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tastebud.core.errors import ConfigError, DataError

MAX_FACTORS = 16
MAX_ABS_RATING = 1000.0  # the lab shows rating scales, not arbitrary magnitudes
MAX_CELLS = 200_000
MAX_HELD_OUT = 100  # leave-one-out refits once per known cell: bounded so a request stays quick

#: The page's starting point, chosen by leave-one-out error on the seed's 14 ratings (docs/lab.md,
#: "Why these defaults"): the held-out error falls as ``reg`` grows until the taste vectors vanish
#: (reg ~ 3.3), k = 1 ties k = 2..4 there, and the sweep count moves it by less than 0.002.
DEFAULT_FACTORS = 1
DEFAULT_REG = 3.0
DEFAULT_ITERATIONS = 30


@dataclass
class MFResult:
    """A fitted factorization; ``predicted = mu + user_bias[:, None] + item_bias[None, :] + P @ Q.T``."""

    mu: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    P: np.ndarray
    Q: np.ndarray
    predicted: np.ndarray
    rmse: float
    loss_history: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self, decimals: int = 4, scale: tuple[float, float] | None = None) -> dict[str, Any]:
        """JSON-ready; ``predicted`` is clipped to ``scale`` (as shown), ``unclipped`` is the model's sum."""

        def r(a: np.ndarray) -> list[Any]:
            return np.round(a.astype(np.float64), decimals).tolist()

        return {
            "mu": round(self.mu, decimals),
            "user_bias": r(self.user_bias),
            "item_bias": r(self.item_bias),
            "U": r(self.P),
            "I": r(self.Q),
            "predicted": r(np.asarray(clip_to_scale(self.predicted, scale))),
            "unclipped": r(self.predicted),
            "rmse": round(self.rmse, decimals),
            "loss_history": [round(x, decimals) for x in self.loss_history],
            "ms": round(self.seconds * 1000, 2),
        }


def objective(
    R: np.ndarray, mu: float, bu: np.ndarray, bi: np.ndarray, P: np.ndarray, Q: np.ndarray, reg: float
) -> float:
    """The regularised squared error that ALS minimises (NaN cells of ``R`` are missing)."""
    mask = ~np.isnan(R)
    err = np.where(mask, np.nan_to_num(R) - (mu + bu[:, None] + bi[None, :] + P @ Q.T), 0.0)
    return float((err**2).sum() + reg * ((P**2).sum() + (Q**2).sum() + (bu**2).sum() + (bi**2).sum()))


def _solve_side(R: np.ndarray, mask: np.ndarray, Z: np.ndarray, target_shift: np.ndarray, reg: float) -> np.ndarray:
    """Ridge solutions for every row of ``R`` at once.

    Row u regresses ``R[u, j] - target_shift[u, j]`` over observed j on the design rows ``Z[j]``
    (``Z`` already holds the constant column when ``bias``). Solved as one batched system
    (sum_j m_uj z_j z_j^T + reg I) x_u = sum_j m_uj t_uj z_j; a pseudo-inverse covers reg = 0 with
    too few observations (the minimum-norm minimiser, so never a NaN).
    """
    m = mask.astype(np.float64)
    t = np.where(mask, np.nan_to_num(R) - target_shift, 0.0)
    A = np.einsum("uj,jd,je->ude", m, Z, Z)
    d = Z.shape[1]
    A += reg * np.eye(d)[None, :, :]
    b = np.einsum("uj,jd->ud", t, Z)
    if reg > 0:
        try:
            return np.linalg.solve(A, b[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:  # numerically singular (extreme inputs): fall back to pinv
            pass
    return np.einsum("ude,ue->ud", np.linalg.pinv(A, hermitian=True), b)


def fit_biased_mf(
    ratings: np.ndarray | list[list[float | None]],
    factors: int = DEFAULT_FACTORS,
    reg: float = DEFAULT_REG,
    biases: bool = True,
    iterations: int = DEFAULT_ITERATIONS,
    random_state: int = 0,
) -> MFResult:
    """Fit ``mu + b_u + b_i + p_u . q_i`` to the observed cells of ``ratings`` (NaN / None = missing).

    ``factors`` may be 0 (a bias-only model); ``biases=False`` fits a plain ``p_u . q_i`` (then
    ``mu`` is 0 and the dot product alone is the prediction). Deterministic under ``random_state``.
    """
    start = time.perf_counter()
    R = as_matrix(ratings)
    if isinstance(factors, bool) or not isinstance(factors, (int, np.integer)) or not 0 <= factors <= MAX_FACTORS:
        raise ConfigError(f"factors must be an integer from 0 to {MAX_FACTORS}, got {factors!r}")
    if (
        isinstance(reg, bool)
        or not isinstance(reg, (int, float, np.floating, np.integer))
        or not np.isfinite(reg)
        or reg < 0
    ):
        raise ConfigError(f"reg must be a finite number >= 0, got {reg!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or not 1 <= iterations <= 500:
        raise ConfigError(f"iterations must be an integer from 1 to 500, got {iterations!r}")
    if not biases and factors == 0:
        raise ConfigError("factors must be >= 1 when biases are off (otherwise there is no model)")
    reg = float(reg)
    n_users, n_items = R.shape
    mask = ~np.isnan(R)
    if not mask.any():
        raise DataError("ratings: no observed cell; give at least one rating")
    rng = np.random.default_rng(random_state)
    P = rng.normal(0.0, 0.1, (n_users, factors))
    Q = rng.normal(0.0, 0.1, (n_items, factors))
    mu = float(R[mask].mean()) if biases else 0.0
    bu = np.zeros(n_users)
    bi = np.zeros(n_items)
    ones_i = np.ones((n_items, 1))
    ones_u = np.ones((n_users, 1))
    history = [objective(R, mu, bu, bi, P, Q, reg)]
    for _ in range(iterations):
        # users, items fixed
        Z = np.hstack([Q, ones_i]) if biases else Q
        X = _solve_side(R, mask, Z, mu + bi[None, :], reg)
        P = X[:, :factors]
        if biases:
            bu = X[:, factors]
        # items, users fixed
        Z = np.hstack([P, ones_u]) if biases else P
        X = _solve_side(R.T, mask.T, Z, mu + bu[None, :], reg)
        Q = X[:, :factors]
        if biases:
            bi = X[:, factors]
        history.append(objective(R, mu, bu, bi, P, Q, reg))
        if history[-2] - history[-1] <= 1e-13 * max(1.0, history[-2]):
            break
    pred = mu + bu[:, None] + bi[None, :] + P @ Q.T
    rmse = float(np.sqrt(np.mean((pred[mask] - R[mask]) ** 2)))
    return MFResult(mu, bu, bi, P, Q, pred, rmse, history, time.perf_counter() - start)


def leave_one_out_rmse(
    ratings: np.ndarray | list[list[float | None]],
    factors: int = DEFAULT_FACTORS,
    reg: float = DEFAULT_REG,
    biases: bool = True,
    iterations: int = DEFAULT_ITERATIONS,
    scale: tuple[float, float] | None = None,
    random_state: int = 0,
) -> float | None:
    """RMSE on ratings the fit did not see: each known cell in turn is hidden, refitted and predicted.

    Predictions are clipped to ``scale`` as the page shows them. None when there are fewer than two
    known cells (nothing would be left to fit) or more than ``MAX_HELD_OUT`` (too many refits).
    """
    R = as_matrix(ratings)
    known = np.argwhere(~np.isnan(R))
    if not 2 <= len(known) <= MAX_HELD_OUT:
        return None
    errors = np.empty(len(known))
    for n, (u, i) in enumerate(known):
        hidden = R.copy()
        hidden[u, i] = np.nan
        fit = fit_biased_mf(hidden, factors, reg, biases, iterations, random_state)
        errors[n] = clip_to_scale(fit.predicted[u, i], scale) - R[u, i]
    return float(np.sqrt(np.mean(errors**2)))


def clip_to_scale(predicted: np.ndarray | float, scale: tuple[float, float] | None) -> np.ndarray | float:
    """Predictions as a person reads them: inside the rating scale (unchanged when ``scale`` is None)."""
    if scale is None:
        return predicted
    lo, hi = scale
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise DataError(f"scale must be two finite numbers, low < high, got {list(scale)!r}")
    return np.clip(predicted, lo, hi)


def as_matrix(ratings: np.ndarray | list[list[float | None]]) -> np.ndarray:
    """A float copy of ``ratings`` (NaN = missing), checked once for every lab model that fills it."""
    if isinstance(ratings, np.ndarray):
        R = ratings.astype(np.float64, copy=True)
    else:
        if not isinstance(ratings, (list, tuple)) or not all(isinstance(row, (list, tuple)) for row in ratings):
            raise DataError("ratings must be a list of rows (lists of numbers or null)")
        widths = {len(row) for row in ratings}
        if len(widths) > 1:
            raise DataError(f"ratings rows must all have the same length, got lengths {sorted(widths)}")
        try:
            R = np.array([[np.nan if v is None else float(v) for v in row] for row in ratings], dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError("ratings cells must be numbers or null") from None
    if R.ndim != 2 or R.shape[0] == 0 or R.shape[1] == 0:
        raise DataError(f"ratings must be a non-empty 2-D matrix, got shape {R.shape}")
    if R.size > MAX_CELLS:
        raise DataError(f"ratings has {R.size} cells; the lab fits at most {MAX_CELLS}")
    if np.isinf(R).any():
        raise DataError("ratings cells must be finite numbers or null")
    if (np.abs(np.nan_to_num(R)) > MAX_ABS_RATING).any():
        raise DataError(f"ratings cells must lie between -{MAX_ABS_RATING:g} and {MAX_ABS_RATING:g}")
    return R
