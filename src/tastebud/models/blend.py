"""Blend: rating models combined by a blender learned on predictions no member made from the rating itself.

Blending different predictors carried the Netflix Prize past any single model (Koren 2009, "The
BellKor Solution to the Netflix Grand Prize"; Toescher, Jahrer & Bell 2009, "The BigChaos
Solution"). The blender must learn from predictions of ratings the member did not see. Two
protocols give it such rows:

* one probe (``probe_by="random"`` or ``"latest"``): a probe carve is taken from the training
  ratings (random ratings, or each user's latest); every member is fitted on the rest and predicts
  the probe; the blender learns the probe ratings from those predictions;
* cross-fitting (``probe_by="folds"``; Jahrer, Toescher & Legenstein 2010, "Combining Predictions
  for Accurate Recommender Systems", KDD): the training ratings R are split into K random folds
  R_1..R_K; every member m is fitted K times, on R minus R_k, and predicts R_k, so each rating
  (u, i) in R_k gets one out-of-fold prediction x_m(u, i) = f_m[R - R_k](u, i). The blender
  learns on all |R| rows (1 / probe times the rows of one probe), and every member sees
  (K - 1) / K of the ratings when it predicts a row, close to the final refit's share.

In both, the blender's kind and regularisation are chosen on an inner random 20% fold of its rows,
it is refitted on all of them, and every member is refitted on all the training ratings; the
blender applies to their predictions.

Blenders: ``ridge`` (a linear blend, the baseline); ``fwls``, feature-weighted linear stacking
(Sill, Takacs, Mackey & Lin 2009): each member's weight is a linear function of meta-features of
the pair (log user support, log item support, the user's rating spread, time since the user's
first rating), fitted as one ridge regression on the member x meta-feature products; ``lgbm``,
gradient-boosted trees (LightGBM, ``pip install tastebud[boost]``) on the predictions and the
meta-features. See docs/blend.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import RatingModel
from tastebud.core.errors import ConfigError, DataError, UnknownModelError
from tastebud.core.members import load_members, member_files
from tastebud.core.progress import enabled, progress_bar
from tastebud.core.registry import get_model, register
from tastebud.core.results import Explanation
from tastebud.core.space import Categorical, Dist, Float, Int
from tastebud.data.interactions import Interactions
from tastebud.models.mf import _ratings

DAY = 86_400
#: The default members and the parameters that make them rating predictors (kNN on the baseline).
DEFAULT_MEMBERS: dict[str, dict[str, Any]] = {
    "bias": {},
    "itemknn": {"prediction": "baseline", "similarity": "pearson_baseline"},
    "userknn": {"prediction": "baseline", "similarity": "pearson_baseline"},
    "svd": {},
    "svdpp": {},
    "bayesmf": {},
    "timesvdpp": {},
}
#: Ridge penalties tried on the inner fold (per blender row, so the grid does not depend on their number).
REG_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
#: The fewest ratings a cross-fitted blend takes (the lab's seed has 14); one probe needs 20 of its own.
MIN_CROSS_FIT = 10
META = ("log user support", "log item support", "user rating spread", "log days since first rating")
#: Fixed LightGBM settings; the number of trees is chosen by early stopping on the inner fold.
LGBM_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 50,
    "lambda_l2": 1.0,
    "feature_fraction": 0.9,
    "verbosity": -1,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
}
Blender = Literal["auto", "ridge", "fwls", "lgbm"]
ProbeBy = Literal["folds", "random", "latest"]


@register("blend")
class Blend(RatingModel):
    """Rating models blended by ridge, feature-weighted linear stacking or LightGBM, learned on held-out predictions.

    ``members``: model names or ``{name: params}`` (default: bias, item- and user-kNN with baseline,
    svd, svdpp, bayesmf, and timesvdpp when the data has timestamps). ``blender``: ``auto`` picks
    the best of ridge, fwls and lgbm (lgbm when installed) on an inner fold of its rows.
    ``probe_by``: where the blender's rows come from: ``folds`` cross-fits (Jahrer, Toescher &
    Legenstein 2010): ``folds`` random folds, each predicted by members fitted on the others, so
    every training rating is one row; ``random`` ratings (one probe, mirrors a random test split) or
    each user's ``latest`` (one probe, mirrors a split in time, as the Prize's probe). ``probe``:
    the share of training ratings carved for a one-probe blender (unused with ``folds``); ``folds``:
    K, the number of folds (unused with one probe). ``reg``: the ridge penalty per blender row
    (None: chosen on the inner fold).
    """

    # on data with timestamps, the time since a user's first rating is a meta-feature and time-aware
    # members drift: predict(users, items, times) passes the times on (without them: the present).
    uses_time = True
    heavy = True  # fits every member folds + 1 times (twice with one probe)
    fast_params: ClassVar[dict[str, Any]] = {
        "members": {
            "bias": {},
            "itemknn": {"prediction": "baseline", "neighbors": 20},
            "svd": {"factors": 8, "epochs": 10, "random_state": 0},
        },
        "blender": "ridge",
    }
    # which members to blend is the user's design (their own parameters are tuned on their own);
    # the blend's choices are searched.
    search_space: ClassVar[dict[str, Dist]] = {
        "blender": Categorical(["auto", "ridge", "fwls", "lgbm"]),
        "probe": Float(0.05, 0.3),
        "probe_by": Categorical(["folds", "random", "latest"]),
        "folds": Int(3, 10),
    }

    def __init__(
        self,
        members: Sequence[str] | dict[str, dict[str, Any]] | None = None,
        blender: Blender = "auto",
        probe: float = 0.1,
        probe_by: ProbeBy = "folds",
        folds: int = 5,
        reg: float | None = None,
        random_state: int = 0,
    ) -> None:
        self.members = members
        self.blender = blender
        self.probe = probe
        self.probe_by = probe_by
        self.folds = folds
        self.reg = reg
        self.random_state = random_state

    # ------------------------------------------------------------------ params
    def _validate_params(self) -> None:
        self._member_specs(timestamps=True)
        if not 0.0 < self.probe < 1.0:
            raise ConfigError(
                f"Blend: probe must be between 0 and 1 (the share carved for the blender), got {self.probe!r}"
            )
        if self.folds < 2:
            raise ConfigError(f"Blend: folds must be an integer >= 2 (the cross-fitting folds), got {self.folds!r}")
        if self.reg is not None and self.reg < 0:
            raise ConfigError(f"Blend: reg must be >= 0, got {self.reg!r}")

    def _member_specs(self, timestamps: bool) -> list[tuple[str, dict[str, Any]]]:
        """(name, params) of every member; the default list drops time-aware models on data without time."""
        if self.members is None:
            return [
                (name, dict(params))
                for name, params in DEFAULT_MEMBERS.items()
                if timestamps or not getattr(get_model(name), "uses_time", False)
            ]
        if isinstance(self.members, dict):
            specs = list(self.members.items())
        elif isinstance(self.members, (list, tuple)):
            specs = [(name, {}) for name in self.members]
        else:
            raise ConfigError(f"Blend: members must be a list of model names or {{name: params}}, got {self.members!r}")
        if not specs:
            raise ConfigError("Blend: members is empty; name at least one rating model")
        names = [name for name, _ in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"Blend: members has duplicate names: {names}")
        out = []
        for name, params in specs:
            if not isinstance(name, str) or not isinstance(params, dict):
                raise ConfigError(
                    f"Blend: members must map model names to dicts of parameters, got {name!r}: {params!r}"
                )
            try:
                cls = get_model(name)
            except UnknownModelError as exc:
                raise ConfigError(f"Blend: members: {exc}") from None
            if cls is Blend or not cls.predicts_ratings:
                raise ConfigError(f"Blend: member '{name}' does not predict ratings; blend rating models")
            try:
                cls(**params)._check_params()
            except ConfigError as exc:
                raise ConfigError(f"Blend: members['{name}']: {exc}") from None
            out.append((name, dict(params)))
        return out

    # ------------------------------------------------------------------ fit
    def _fit(self, data: Interactions) -> None:
        _ratings(data, "Blend")
        if self.probe_by == "latest" and data.timestamps is None:
            raise DataError("Blend: probe_by='latest' needs the time of every rating; the data has no time column")
        specs = self._member_specs(timestamps=data.timestamps is not None)
        self.member_names_ = [name for name, _ in specs]
        self.has_time_ = data.timestamps is not None
        carves = self._carves(data)
        with progress_bar((len(carves) + 1) * len(specs) + 1, "blend", "member fit") as bar:
            xs, metas, ys = [], [], []
            for k, held in enumerate(carves):
                base, probe = data.subset(~held), data.subset(held)
                step = f"blend fold {k + 1}/{len(carves)}" if len(carves) > 1 else "blend probe"
                bar.set_description(step, refresh=False)
                members = self._fit_members(specs, base, bar)
                self._set_stats(base)  # the meta-features of a row come from the ratings its members saw
                xs.append(self._member_predictions(members, probe.user_idx, probe.item_idx, probe.timestamps))
                metas.append(self._meta(probe.user_idx, probe.item_idx, probe.timestamps))
                ys.append(probe.values.astype(np.float64))
            x, meta, y = np.vstack(xs), np.vstack(metas), np.concatenate(ys)
            self.meta_mean_ = meta.mean(axis=0)
            self.meta_std_ = np.where(meta.std(axis=0) > 0, meta.std(axis=0), 1.0)
            # each member's RMSE on the blender's held-out rows (the probe, or every rating out of fold)
            self.probe_rmse_ = {n: _rmse(x[:, j], y) for j, n in enumerate(self.member_names_)}
            self._learn_blender(x, meta, y)
            bar.set_postfix(blender=self.blender_, refresh=False)
            bar.update(1)
            bar.set_description("blend refit", refresh=False)
            members = self._fit_members(specs, data, bar)
        self._set_stats(data)
        self._members = members

    def _carves(self, data: Interactions) -> list[np.ndarray]:
        """Masks of the rows each round holds out: one probe, or the ``folds`` folds (every row in exactly one)."""
        n = len(data)
        if self.probe_by == "folds":
            # every rating is a blender row here, so the floor is on the whole set, not per fold
            need = max(MIN_CROSS_FIT, 2 * self.folds)
            if n < need:
                raise DataError(
                    f"Blend: {n} ratings for {self.folds} folds; cross-fitting needs at least {need} (2 a fold)"
                )
            fold = np.empty(n, np.int64)
            fold[np.random.default_rng(self.random_state).permutation(n)] = np.arange(n) % self.folds
            return [fold == k for k in range(self.folds)]
        mask = self._probe_mask(data)
        if mask.sum() < 20 or mask.all():
            raise DataError(f"Blend: {int(mask.sum())} probe ratings out of {n}; raise probe or give more ratings")
        return [mask]

    def _probe_mask(self, data: Interactions) -> np.ndarray:
        """The probe carve: random ratings, or each user's latest ``probe`` share (a user keeps one rating)."""
        rng = np.random.default_rng(self.random_state)
        n = len(data)
        if self.probe_by == "random":
            return rng.random(n) < self.probe
        order = np.lexsort((np.arange(n), data.timestamps, data.user_idx))
        users = data.user_idx[order]
        counts = np.bincount(users, minlength=data.n_users)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(n) - starts[users]
        take = np.minimum(np.round(self.probe * counts), np.maximum(counts - 1, 0))
        mask = np.zeros(n, bool)
        mask[order] = rank >= counts[users] - take[users]
        return mask

    def _fit_members(self, specs: list[tuple[str, dict[str, Any]]], data: Interactions, bar: Any) -> list[RatingModel]:
        out = []
        for name, params in specs:
            bar.set_postfix(member=name, refresh=False)
            with enabled(False):  # the blend's bar stands for the members' own
                out.append(get_model(name)(**params).fit(data))
            bar.update(1)
        return out  # type: ignore[return-value]

    def _member_predictions(
        self, members: Sequence[RatingModel], uidx: np.ndarray, iidx: np.ndarray, times: np.ndarray | None
    ) -> np.ndarray:
        """(n_pairs, n_members): every member's (clipped) rating for each pair."""
        cols = [m.predict_idx(uidx, iidx, times) for m in members]
        return np.column_stack(cols).astype(np.float64)

    # ------------------------------------------------------------------ meta-features
    def _set_stats(self, data: Interactions) -> None:
        """Support, rating spread and first day from the ratings the members were fitted on."""
        m = data.matrix
        n_u = np.diff(m.indptr).astype(np.float64)
        self.user_support_ = n_u
        self.item_support_ = np.bincount(m.indices, minlength=data.n_items).astype(np.float64)
        rows = np.repeat(np.arange(data.n_users), np.diff(m.indptr))
        vals = m.data.astype(np.float64)
        mean_u = np.bincount(rows, weights=vals, minlength=data.n_users) / np.maximum(n_u, 1)
        sq = np.bincount(rows, weights=(vals - mean_u[rows]) ** 2, minlength=data.n_users)
        prior = 5.0  # pseudo-ratings at the global variance: a user with 3 ratings has no reliable spread
        self.global_var_ = float(vals.var())
        self.user_spread_ = np.sqrt((sq + prior * self.global_var_) / (n_u + prior))
        if data.timestamps is not None:
            first = np.full(data.n_users, np.iinfo(np.int64).max)
            np.minimum.at(first, data.user_idx, data.timestamps // DAY)
            self.user_first_day_ = np.where(first == np.iinfo(np.int64).max, 0, first)
            self.present_day_ = int(data.timestamps.max() // DAY)

    def _meta(self, uidx: np.ndarray, iidx: np.ndarray, times: np.ndarray | None) -> np.ndarray:
        """(n_pairs, n_meta) raw meta-features; unknown ids have no support and the global spread."""
        uidx, iidx = np.asarray(uidx, np.int64), np.asarray(iidx, np.int64)
        ku, ki = uidx >= 0, iidx >= 0
        u, i = np.clip(uidx, 0, None), np.clip(iidx, 0, None)
        cols = [
            np.log1p(np.where(ku, self.user_support_[u], 0.0)),
            np.log1p(np.where(ki, self.item_support_[i], 0.0)),
            np.where(ku, self.user_spread_[u], np.sqrt(self.global_var_)),
        ]
        if self.has_time_:
            days = np.full(len(u), self.present_day_) if times is None else np.asarray(times, np.int64) // DAY
            since = np.where(ku, np.maximum(days - self.user_first_day_[u], 0), 0)
            cols.append(np.log1p(since.astype(np.float64)))
        return np.column_stack(cols)

    # ------------------------------------------------------------------ blenders
    def _design(self, kind: str, x: np.ndarray, meta: np.ndarray) -> np.ndarray:
        """Regressors of a linear blender (the intercept apart): predictions, or FWLS's products."""
        if kind == "ridge":
            return x
        g = np.hstack([np.ones((len(x), 1)), (meta - self.meta_mean_) / self.meta_std_])
        p = np.hstack([np.ones((len(x), 1)), x])
        return (p[:, :, None] * g[:, None, :]).reshape(len(x), -1)[:, 1:]

    def _learn_blender(self, x: np.ndarray, meta: np.ndarray, y: np.ndarray) -> None:
        """Choose the blender (and its penalty, or LightGBM's trees) on an inner fold of its rows, refit on all of them."""
        kinds = ["ridge", "fwls", "lgbm"] if self.blender == "auto" else [self.blender]
        if self.blender == "auto" and not _lightgbm_installed():
            kinds.remove("lgbm")
        rng = np.random.default_rng(self.random_state + 1)
        inner = rng.random(len(y)) < 0.2
        if not inner.any() or inner.all():  # a handful of rows drew no split: hold out a fifth, at least one
            inner = np.zeros(len(y), bool)
            inner[rng.permutation(len(y))[: max(1, len(y) // 5)]] = True
        fit, val = ~inner, inner
        scores: dict[str, float] = {}
        best: tuple[float, str, float] = (np.inf, "", 0.0)
        for kind in kinds:
            if kind == "lgbm":
                rounds, err = self._lgbm_rounds(x, meta, y, fit, val)
                scores["lgbm"] = err
                best = min(best, (err, "lgbm", float(rounds)))
                continue
            for reg in REG_GRID if self.reg is None else (float(self.reg),):
                w = _ridge(self._design(kind, x[fit], meta[fit]), y[fit], reg)
                err = _rmse(_linear(self._design(kind, x[val], meta[val]), w), y[val])
                scores[f"{kind} reg={reg:g}"] = err
                best = min(best, (err, kind, reg))
        _, kind, value = best
        self.blender_ = kind
        self.inner_rmse_ = scores
        if kind == "lgbm":
            self.lgbm_rounds_ = int(value)
            self._booster = _lgbm_train(np.hstack([x, meta]), y, int(value), self.random_state)
            self.blend_weights_ = np.zeros(0)
        else:
            self.reg_ = value
            self.blend_weights_ = _ridge(self._design(kind, x, meta), y, value)

    def _lgbm_rounds(
        self, x: np.ndarray, meta: np.ndarray, y: np.ndarray, fit: np.ndarray, val: np.ndarray
    ) -> tuple[int, float]:
        lgb = _lightgbm()
        feats = np.hstack([x, meta])
        train = lgb.Dataset(feats[fit], y[fit])
        valid = lgb.Dataset(feats[val], y[val], reference=train)
        booster = lgb.train(
            {**LGBM_PARAMS, "seed": self.random_state},
            train,
            num_boost_round=1000,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        rounds = max(1, booster.best_iteration)
        return rounds, _rmse(booster.predict(feats[val], num_iteration=rounds), y[val])

    # ------------------------------------------------------------------ predict
    def _blend(self, x: np.ndarray, meta: np.ndarray) -> np.ndarray:
        if self.blender_ == "lgbm":
            return self._booster.predict(np.hstack([x, meta]))
        return _linear(self._design(self.blender_, x, meta), self.blend_weights_)

    def _predict_pairs_at(self, user_idx: np.ndarray, item_idx: np.ndarray, times: np.ndarray | None) -> np.ndarray:
        out = np.empty(len(user_idx))
        for s in range(0, len(user_idx), 200_000):
            u, i = user_idx[s : s + 200_000], item_idx[s : s + 200_000]
            t = None if times is None else times[s : s + 200_000]
            x = self._member_predictions(self._members, u, i, t)
            out[s : s + len(u)] = self._blend(x, self._meta(u, i, t))
        return out

    def _predict_pairs(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self._predict_pairs_at(user_idx, item_idx, None)

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        """Blended ratings of every (user, item) pair of the block (at the present, for time-aware members)."""
        items = np.arange(self.n_items) if item_idx is None else np.asarray(item_idx, np.int64)
        u = np.repeat(np.asarray(user_idx, np.int64), len(items))
        i = np.tile(items, len(user_idx))
        return self.predict_idx(u, i).reshape(len(user_idx), len(items))

    # ------------------------------------------------------------------ explain
    def contributions(self, users: Any, items: Any, times: Any = None) -> list[list[tuple[str, float, float]]]:
        """Per pair, ``(member, its prediction, its contribution to the blend)``, plus a ``(base)`` row.

        Linear blenders: contribution = weight x prediction (FWLS: the weight at this pair's
        meta-features). LightGBM: the trees' SHAP value of the member's prediction feature; the
        meta-features' share and the expected value make up ``(base)``."""
        self._check_fitted()
        from tastebud.core.results import as_list

        u = self.users_.lookup(as_list(users))
        i = self.items_.lookup(as_list(items))
        t = None if times is None else np.asarray(as_list(times), np.int64)
        return self._contributions(u, i, t)

    def _contributions(
        self, u: np.ndarray, i: np.ndarray, t: np.ndarray | None
    ) -> list[list[tuple[str, float, float]]]:
        x = self._member_predictions(self._members, u, i, t)
        meta = self._meta(u, i, t)
        m = len(self.member_names_)
        if self.blender_ == "lgbm":
            shap = self._booster.predict(np.hstack([x, meta]), pred_contrib=True)
            contrib, base = shap[:, :m], shap[:, m:].sum(axis=1)
        elif self.blender_ == "ridge":
            contrib = x * self.blend_weights_[1:][None, :]
            base = np.full(len(x), self.blend_weights_[0])
        else:
            g = np.hstack([np.ones((len(x), 1)), (meta - self.meta_mean_) / self.meta_std_])
            w = self.blend_weights_.reshape(m + 1, -1)
            weights = g @ w.T  # (n, m + 1): the intercept's and every member's weight at this pair
            contrib, base = x * weights[:, 1:], weights[:, 0]
        return [
            [(name, float(x[r, j]), float(contrib[r, j])) for j, name in enumerate(self.member_names_)]
            + [("(base)", float("nan"), float(base[r]))]
            for r in range(len(x))
        ]

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        items = np.asarray(item_idx, np.int64)
        rows = self._contributions(np.full(len(items), user_idx, np.int64), items, None)
        out = []
        for row in rows:
            members = row[:-1]
            text = f"blend ({self.blender_}): " + ", ".join(f"{n} {p:.2f} ({c:+.2f})" for n, p, c in members)
            out.append(Explanation(text, [(n, c) for n, _, c in row]))
        return out

    # ------------------------------------------------------------------ persistence
    def _extra_files(self) -> dict[str, bytes]:
        files = member_files(self._members)
        if self.blender_ == "lgbm":
            files["blender.lgbm.txt"] = self._booster.model_to_string().encode("utf-8")
        return files

    def _load_extra(self, files: dict[str, bytes]) -> None:
        self._members = load_members(self, list(self.member_names_), files)
        if self.blender_ == "lgbm":
            self._booster = _lightgbm().Booster(model_str=files["blender.lgbm.txt"].decode("utf-8"))

    @property
    def fitted_members(self) -> list[RatingModel]:
        """The members refitted on all the training ratings, in the order of ``member_names_``."""
        self._check_fitted()
        return list(self._members)


def _ridge(x: np.ndarray, y: np.ndarray, reg: float) -> np.ndarray:
    """``[intercept, w]`` minimising ``|y - b - X w|^2 + reg n |w|^2`` (the intercept unpenalised)."""
    mx, my = x.mean(axis=0), y.mean()
    xc = x - mx
    a = xc.T @ xc + reg * len(y) * np.eye(x.shape[1])
    w = np.linalg.lstsq(a, xc.T @ (y - my), rcond=None)[0]
    return np.concatenate([[my - mx @ w], w])


def _linear(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return w[0] + x @ w[1:]


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - y) ** 2)))


def _lightgbm_installed() -> bool:
    try:
        _lightgbm()
    except ConfigError:
        return False
    return True


def _lightgbm() -> Any:
    try:
        import lightgbm
    except ImportError:
        raise ConfigError("Blend: blender='lgbm' needs LightGBM: pip install 'tastebud[boost]'") from None
    return lightgbm


def _lgbm_train(feats: np.ndarray, y: np.ndarray, rounds: int, seed: int) -> Any:
    lgb = _lightgbm()
    return lgb.train({**LGBM_PARAMS, "seed": seed}, lgb.Dataset(feats, y), num_boost_round=rounds)
