"""timeSVD++: the kernel against a plain-Python SGD step, predictions against the paper's formula,
and the time terms earning their keep on data with a time effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tastebud as tb
from tastebud.core.errors import DataError
from tastebud.data.splits import kfold
from tastebud.eval.evaluate import evaluate_fitted
from tastebud.eval.metrics import rmse
from tastebud.kernels import timesvdpp as K
from tastebud.models.timesvdpp import DAY, TimeSVDpp

START = 1_000_000_000  # a unix second, on a day boundary's neighbourhood


def tiny(seed: int = 0, n_users: int = 12, n_items: int = 10, day_effect: float = 0.0) -> tb.Interactions:
    """Every user rates on a few days; with ``day_effect`` each (user, day) shifts all its ratings."""
    rng = np.random.default_rng(seed)
    rows = []
    item_q = rng.normal(0, 0.6, n_items)
    for u in range(n_users):
        days = rng.choice(60, size=3, replace=False)
        shift = rng.normal(0, day_effect, 3)
        for i in rng.choice(n_items, size=n_items * 3 // 4, replace=False):
            k = int(rng.integers(3))
            r = 3.2 + item_q[i] + shift[k] + rng.normal(0, 0.3)
            rows.append(
                (f"u{u}", f"i{i}", float(np.clip(np.round(r * 2) / 2, 1, 5)), START + int(days[k]) * DAY + 3600)
            )
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "time"])
    return tb.Interactions.from_frame(frame, "user", "item", "rating", "time", scale=(1.0, 5.0))


def reference_epoch(m, days, bins, dev, day_index, user_order, perm, mu, bu, bi, bib, au, but, p, q, y, lr, lr_a, regs):
    """The update rules of Koren 2009 written out in plain Python, one rating at a time."""
    for u in user_order:
        s, e = m.indptr[u], m.indptr[u + 1]
        if e == s:
            continue
        rated = m.indices[s:e]
        z = y[rated].sum(axis=0) / np.sqrt(e - s)
        grad = np.zeros_like(z)
        for k in perm[s:e]:
            pos = s + k
            i, r, b, d, t = m.indices[pos], m.data[pos], bins[pos], dev[pos], day_index[pos]
            pred = mu + bu[u] + au[u] * d + but[t] + bi[i] + bib[i, b] + q[i] @ (p[u] + z)
            err = r - pred
            bu[u] += lr * (err - regs[0] * bu[u])
            bi[i] += lr * (err - regs[1] * bi[i])
            bib[i, b] += lr * (err - regs[5] * bib[i, b])
            au[u] += lr_a * (err * d - regs[6] * au[u])
            but[t] += lr * (err - regs[7] * but[t])
            grad += err / np.sqrt(e - s) * q[i]
            pu = p[u].copy()
            p[u] += lr * (err * q[i] - regs[2] * p[u])
            q[i] += lr * (err * (pu + z) - regs[3] * q[i])
        y[rated] += lr * (grad - regs[4] * y[rated])


def test_kernel_epoch_matches_the_update_rules():
    data = tiny()
    m = data.matrix
    rng = np.random.default_rng(1)
    nnz, k = m.nnz, 3
    bins = rng.integers(0, 4, nnz).astype(np.int64)
    dev = rng.normal(0, 3, nnz)
    day_index = rng.integers(0, 20, nnz).astype(np.int64)
    order = rng.permutation(data.n_users).astype(np.int64)
    perm = np.concatenate([rng.permutation(n) for n in np.diff(m.indptr)]).astype(np.int64)
    regs = np.array([0.02, 0.03, 0.05, 0.06, 0.1, 0.2, 5.0, 0.3])
    state = dict(
        bu=rng.normal(0, 0.1, data.n_users), bi=rng.normal(0, 0.1, data.n_items), bib=rng.normal(0, 0.1, (data.n_items, 4)),
        au=rng.normal(0, 0.01, data.n_users), but=rng.normal(0, 0.1, 20),
        p=rng.normal(0, 0.1, (data.n_users, k)).astype(np.float32), q=rng.normal(0, 0.1, (data.n_items, k)).astype(np.float32),
        y=rng.normal(0, 0.1, (data.n_items, k)).astype(np.float32),
    )  # fmt: skip
    ref = {name: arr.astype(np.float64) for name, arr in state.items()}
    mu = float(m.data.mean())
    K.timesvdpp_epoch(
        m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float64), bins, dev, day_index, order,
        perm, 1, mu, *state.values(), 0.01, 0.001, regs,
    )  # fmt: skip
    reference_epoch(m, None, bins, dev, day_index, order, perm, mu, *ref.values(), 0.01, 0.001, regs)
    for name in state:
        np.testing.assert_allclose(state[name], ref[name], rtol=1e-4, atol=1e-5, err_msg=name)


def brute_force(model: TimeSVDpp, user: int, item: int, t: int) -> float:
    """``mu + b_i + b_{i,Bin(t)} + b_u + alpha_u dev_u(t) + b_{u,t} + q_i . (p_u + |N(u)|^-1/2 sum y_j)``, by hand."""
    day = t // DAY
    width = model.day_max_ - model.day_min_ + 1
    b = min(model.bins - 1, max(0, (day - model.day_min_) * model.bins // width))
    diff = day - model.user_mean_day_[user]
    dev = np.sign(diff) * abs(diff) ** model.beta
    key = user * 2**32 + day + 2**31
    hit = np.nonzero(model.user_day_keys_ == key)[0]
    but = float(model.user_day_bias_[hit[0]]) if len(hit) else 0.0
    rated = model.user_items_[user].indices
    z = model.implicit_factors_[rated].astype(np.float64).sum(axis=0) / np.sqrt(len(rated))
    # user_factors_ stores p_u + z: take p_u back out to write the formula as the paper does
    p_u = model.user_factors_[user].astype(np.float64) - z
    return (
        model.global_mean_ + model.item_bias_[item] + model.item_bin_bias_[item, b] + model.user_bias_[user]
        + model.user_drift_[user] * dev + but + model.item_factors_[item].astype(np.float64) @ (p_u + z)
    )  # fmt: skip


def test_predictions_match_the_formula_at_seen_and_new_days():
    data = tiny(day_effect=0.5)
    model = TimeSVDpp(factors=3, epochs=5, bins=4, learning_rate_drift=1e-3, random_state=0).fit(data)
    assert np.abs(model.user_day_bias_).max() > 0 and np.abs(model.item_bin_bias_).max() > 0
    assert np.abs(model.user_drift_).max() > 0
    users, items = data.user_idx[:30].astype(np.int64), data.item_idx[:30].astype(np.int64)
    seen = data.timestamps[:30]
    new = np.full(30, START + 500 * DAY)  # a day after training: no day bias, the last bin, a drift
    for times in (seen, new):
        got = model._predict_pairs_at(users, items, times)
        want = [brute_force(model, int(u), int(i), int(t)) for u, i, t in zip(users, items, times, strict=True)]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the public predict takes external ids and times, and clips
    ext = model.predict(data.users.to_ids(users), data.items.to_ids(items), seen.tolist())
    np.testing.assert_allclose(ext, np.clip(model._predict_pairs_at(users, items, seen), 1, 5), rtol=1e-6)


def test_time_terms_matter_on_data_with_a_time_effect():
    data = tiny(seed=3, n_users=60, n_items=30, day_effect=1.0)
    split = kfold(data, k=5, random_state=0)[0]
    common = dict(factors=4, epochs=30, random_state=0)
    plain = tb.get_model("svdpp")(**common).fit(split.train)
    timed = TimeSVDpp(**common).fit(split.train)
    t = split.test
    err_plain = rmse(plain.predict_idx(t.user_idx, t.item_idx), t.values)
    err_timed = rmse(timed.predict_idx(t.user_idx, t.item_idx, t.timestamps), t.values)
    assert err_timed < err_plain - 0.1


def test_evaluation_passes_the_test_times():
    data = tiny(seed=3, n_users=60, n_items=30, day_effect=1.0)
    split = kfold(data, k=5, random_state=0)[0]
    model = TimeSVDpp(factors=4, epochs=10, random_state=0).fit(split.train)
    row = evaluate_fitted(model, split, metrics=())
    t = split.test
    assert row["rmse"] == pytest.approx(rmse(model.predict_idx(t.user_idx, t.item_idx, t.timestamps), t.values))


def test_data_without_time_names_the_missing_column():
    frame = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [4.0, 3.0, 5.0]})
    data = tb.Interactions.from_frame(frame, "user", "item", "rating")
    with pytest.raises(DataError, match="no time column.*--time-col"):
        TimeSVDpp(**TimeSVDpp.fast_params).fit(data)


def test_bad_times_are_a_data_error():
    data = tiny()
    model = TimeSVDpp(**TimeSVDpp.fast_params).fit(data)
    with pytest.raises(DataError, match="times"):
        model.predict(["u0"], ["i0"], [float("nan")])
    with pytest.raises(DataError, match="one per pair"):
        model.predict(["u0", "u1"], ["i0", "i0"], [START])
