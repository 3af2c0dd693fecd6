"""tastebud.kernels.trees against LightGBM itself: raw scores and pred_contrib on awkward inputs.

Boosters are trained here on small random sets mixing numeric and categorical features, with NaNs,
zeros, negatives and categories the trees never saw; every decision rule and missing type of
LightGBM's predictor is met, and both the one-thread kernel (few rows) and the parallel one.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest

lgb = pytest.importorskip("lightgbm")
from tastebud.kernels import trees  # noqa: E402

ATOL = 1e-9
N_NUM, N_CAT = 5, 2  # columns 0..4 numeric, 5..6 categorical


def _data(rng: np.random.Generator, n: int, nan_share: float = 0.15) -> np.ndarray:
    X = rng.normal(size=(n, N_NUM + N_CAT))
    X[:, 1] = np.round(X[:, 1])  # many exact zeros
    X[:, 2] = np.where(rng.random(n) < 0.3, 0.0, X[:, 2])
    X[:, 3] = np.abs(X[:, 3]) * 100.0
    X[:, N_NUM] = rng.integers(0, 12, n)
    X[:, N_NUM + 1] = rng.integers(0, 40, n)  # past 32 categories: bitsets of two words
    for j in (0, 2, 4, N_NUM + 1):
        X[rng.random(n) < nan_share, j] = np.nan
    return X


def _target(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = np.nan_to_num(X)
    cat = np.isin(X[:, N_NUM], [1, 3, 5, 8]) * 1.5 + np.isin(X[:, N_NUM + 1], [2, 7, 33, 39]) * 1.0
    return (
        x[:, 0]
        - 0.7 * x[:, 1] * x[:, 2]
        + np.sin(x[:, 3] / 30)
        + np.isnan(X[:, 0])
        + cat
        + 0.3 * rng.normal(size=len(X))
    )


def _queries(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rows to explain: the training distribution plus every edge of the decision rules."""
    X = _data(rng, n, nan_share=0.25)
    edge = [
        0.0,
        -0.0,
        1e-36,
        -1e-36,
        float(np.float32(1e-35)),
        2e-35,
        -2e-35,
        np.nan,
        -0.5,
        -1.0,
        -3.0,
        0.999,
        11.5,
        12.0,
        31.0,
        32.0,
        39.0,
        40.0,
        1000.0,
        2.0**31,
        2.0**32 + 1,
        -(2.0**31),
        1e300,
        -np.inf,
        np.inf,
    ]
    for i in range(len(X)):
        if i % 2 == 0:
            X[i, rng.integers(0, N_NUM + N_CAT, 3)] = rng.choice(edge, 3)
    return X


def _float32(X: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # 1e300 becomes inf, which the kernels must take too
        return X.astype(np.float32)


def _booster(objective: str, rounds: int, leaves: int, seed: int, **params) -> tuple[object, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = _data(rng, 600)
    y = _target(X, rng)
    extra = {}
    if objective == "lambdarank":
        y = np.clip(np.digitize(y, np.quantile(y, [0.5, 0.75, 0.9])), 0, 3)
        extra["group"] = [20] * 30
    ds = lgb.Dataset(X, y, categorical_feature=[N_NUM, N_NUM + 1], free_raw_data=False, **extra)
    base = {
        "objective": objective,
        "num_leaves": leaves,
        "learning_rate": 0.2,
        "min_data_in_leaf": 5,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        "cat_l2": 1.0,
        "max_cat_to_onehot": 4,
        "verbose": -1,
        "seed": seed,
        "num_threads": 1,
        "deterministic": True,
    }
    booster = lgb.train({**base, **params}, ds, num_boost_round=rounds)
    return booster, _queries(rng, 150)


def _split_kinds(booster) -> set[tuple[str, str]]:
    kinds, stack = set(), [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        n = stack.pop()
        if "split_index" in n:
            kinds.add((n["decision_type"], n["missing_type"]))
            stack += [n["left_child"], n["right_child"]]
    return kinds


CASES = [
    ("regression", 40, 15, 0, {}),
    ("lambdarank", 30, 31, 1, {}),
    ("regression", 5, 4, 2, {}),
    ("regression", 25, 63, 3, {"max_depth": -1, "min_data_in_leaf": 2}),  # deep leaves, many features
    ("regression", 20, 15, 4, {"zero_as_missing": True}),
    ("regression", 20, 15, 5, {"use_missing": False}),
    ("binary", 15, 7, 6, {}),
]


@pytest.fixture(scope="module", params=CASES, ids=[f"{c[0]}-{c[1]}x{c[2]}-{c[3]}" for c in CASES])
def case(request):
    objective, rounds, leaves, seed, params = request.param
    if objective == "binary":
        booster, X = _booster("regression", 1, 2, seed)  # any data; relabel below
        rng = np.random.default_rng(seed)
        Xt = _data(rng, 600)
        y = (_target(Xt, rng) > 0.5).astype(float)
        ds = lgb.Dataset(Xt, y, categorical_feature=[N_NUM, N_NUM + 1])
        booster = lgb.train(
            {"objective": "binary", "num_leaves": leaves, "verbose": -1, "num_threads": 1, "seed": seed}, ds, rounds
        )
    else:
        booster, X = _booster(objective, rounds, leaves, seed, **params)
    return booster, X, trees.compile_booster(booster)


def test_predict_raw_equals_lightgbm(case):
    booster, X, forest = case
    for rows in (X[:7], X, _float32(X)):  # the one-thread kernel, the parallel one, float32 input
        want = booster.predict(rows, raw_score=True)
        assert np.abs(trees.predict_raw(forest, rows) - want).max() <= ATOL
    # threads=1 keeps a request's many rows on the calling thread: the same numbers
    assert np.array_equal(trees.predict_raw(forest, X, threads=1), trees.predict_raw(forest, X))


def test_contributions_equal_lightgbm(case):
    booster, X, forest = case
    for rows in (X[:9], X, _float32(X)):
        want = booster.predict(rows, pred_contrib=True)
        got = trees.contributions(forest, rows)
        assert got.shape == want.shape == (len(rows), N_NUM + N_CAT + 1)
        assert np.abs(got - want).max() <= ATOL
        assert np.abs(got.sum(axis=1) - booster.predict(rows, raw_score=True)).max() <= 1e-8
    assert np.array_equal(trees.contributions(forest, X, threads=1), trees.contributions(forest, X))


def test_the_cases_meet_every_rule():
    """The boosters above really split on what the kernels must reproduce (else the tests prove less)."""
    kinds = set()
    for objective, rounds, leaves, seed, params in CASES:
        if objective != "binary":
            kinds |= _split_kinds(_booster(objective, rounds, leaves, seed, **params)[0])
    assert {("<=", "NaN"), ("<=", "None"), ("<=", "Zero"), ("==", "NaN"), ("==", "None")} <= kinds
    deep, _ = _booster(*CASES[3][:4], **CASES[3][4])
    forest = trees.compile_booster(deep)
    assert int(np.diff(forest.feat_ptr).max()) >= 6  # quadrature with several nodes
    assert forest.cat_bits.size > 0 and int(forest.node_cat_words.max()) >= 2


def _shapley_by_enumeration(tree: dict, x: np.ndarray, n_features: int) -> np.ndarray:
    """Path-dependent SHAP of one tree (numeric splits) from its definition, over every coalition.

    The value of a coalition S follows x at splits on S and averages the children by their data
    counts elsewhere (Lundberg et al. 2018, Algorithm 1).
    """

    def count(n: dict) -> float:
        return float(n["internal_count"] if "split_index" in n else n["leaf_count"])

    def value(n: dict, S: frozenset) -> float:
        if "split_index" not in n:
            return n["leaf_value"]
        f = n["split_feature"]
        if f in S:
            v = x[f]
            go_left = n["default_left"] if np.isnan(v) else v <= n["threshold"]
            return value(n["left_child"] if go_left else n["right_child"], S)
        lc, rc = n["left_child"], n["right_child"]
        return (count(lc) * value(lc, S) + count(rc) * value(rc, S)) / count(n)

    phi = np.zeros(n_features)
    for i in range(n_features):
        others = [j for j in range(n_features) if j != i]
        for size in range(n_features):
            w = math.factorial(size) * math.factorial(n_features - size - 1) / math.factorial(n_features)
            for S in combinations(others, size):
                phi[i] += w * (value(tree, frozenset(S) | {i}) - value(tree, frozenset(S)))
    return phi


def test_contributions_equal_the_shapley_definition():
    """A model small enough to enumerate every coalition: the kernel computes SHAP, not just LightGBM's numbers."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 4))
    X[rng.random(300) < 0.2, 1] = np.nan
    y = X[:, 0] * np.nan_to_num(X[:, 1]) + (X[:, 2] > 0.3) * X[:, 3] + (X[:, 0] > 0) * X[:, 2]
    booster = lgb.train(
        {"num_leaves": 12, "verbose": -1, "min_data_in_leaf": 3, "num_threads": 1}, lgb.Dataset(X, y), 3
    )
    model = booster.dump_model()
    assert max(t["num_leaves"] for t in model["tree_info"]) >= 8
    forest = trees.compile_booster(booster)
    Q = np.array([[0.5, np.nan, 1.0, -2.0], [-1.0, 0.3, 0.0, 0.5], [2.0, -0.7, -1.0, 3.0]])
    got = trees.contributions(forest, Q)
    for r, x in enumerate(Q):
        want = sum(_shapley_by_enumeration(t["tree_structure"], x, 4) for t in model["tree_info"])
        assert np.abs(got[r, :4] - want).max() <= 1e-12


def test_a_single_leaf_tree_is_all_base():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 3))
    booster = lgb.train({"min_data_in_leaf": 100, "verbose": -1}, lgb.Dataset(X, X[:, 0]), 2)
    forest = trees.compile_booster(booster)
    got = trees.contributions(forest, X[:4])
    assert np.abs(got - booster.predict(X[:4], pred_contrib=True)).max() <= ATOL
    assert np.all(got[:, :3] == 0.0)
    assert np.abs(trees.predict_raw(forest, X[:4]) - booster.predict(X[:4], raw_score=True)).max() <= ATOL


def test_unsupported_models_raise():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 3))
    y = X[:, 0] + rng.normal(size=200)
    small = {"verbose": -1, "num_leaves": 4}
    multi = lgb.train({**small, "objective": "multiclass", "num_class": 3}, lgb.Dataset(X, rng.integers(0, 3, 200)), 2)
    linear = lgb.train({**small, "linear_tree": True}, lgb.Dataset(X, y), 2)
    forest = lgb.train({**small, "boosting": "rf", "bagging_fraction": 0.5, "bagging_freq": 1}, lgb.Dataset(X, y), 2)
    for booster, what in ((multi, "multiclass"), (linear, "linear"), (forest, "random forest")):
        with pytest.raises(NotImplementedError, match=what):
            trees.compile_booster(booster)

    class Odd:
        """A dump with a decision type LightGBM does not write today."""

        def dump_model(self) -> dict:
            node = {
                "split_index": 0,
                "split_feature": 0,
                "threshold": 0.0,
                "decision_type": "<",
                "default_left": True,
                "missing_type": "None",
                "internal_count": 2,
                "left_child": {"leaf_index": 0, "leaf_value": 1.0, "leaf_count": 1},
                "right_child": {"leaf_index": 1, "leaf_value": 2.0, "leaf_count": 1},
            }
            return {
                "num_class": 1,
                "num_tree_per_iteration": 1,
                "max_feature_idx": 0,
                "tree_info": [{"tree_structure": node}],
            }

    with pytest.raises(NotImplementedError, match="decision type '<'"):
        trees.compile_booster(Odd())


def test_bad_rows_raise():
    booster, X = _booster("regression", 3, 4, 9)
    forest = trees.compile_booster(booster)
    with pytest.raises(ValueError, match=r"X must be \(rows, 7\)"):
        trees.contributions(forest, X[:, :5])
    with pytest.raises(ValueError, match=r"X must be \(rows, 7\)"):
        trees.predict_raw(forest, X[0])
