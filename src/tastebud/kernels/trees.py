r"""Compiled prediction and exact TreeSHAP for LightGBM forests, without calling LightGBM.

The ranker explains every list it serves; LightGBM's own ``pred_contrib`` runs path-dependent
TreeSHAP (Lundberg, Erion & Lee 2018, "Consistent individualized feature attribution for tree
ensembles", Algorithm 2), O(L D^2) per tree and row (L leaves, D depth), extending and unwinding a
path polynomial with divisions. Here each leaf's share is written as a one-dimensional integral of
a polynomial, the idea of Linear TreeShap (Yu, Bifet, Read & Xu 2022, "Linear TreeShap"), and
evaluated exactly by Gauss-Legendre quadrature: about L D^2 / 2 multiply-adds per tree and row (the
order of Algorithm 2, a smaller constant), no division, and (unlike Linear TreeShap's polynomial arithmetic) no term that can cancel; the loops'
lengths depend on the leaf alone, so a block of rows runs them together. An earlier version of this
module tabulated each leaf over the subsets of its features as Fast TreeSHAP v2 does (Yang 2021,
"Fast TreeSHAP: Accelerating SHAP Value Computation for Trees"), O(L D) per row: on the served
model its 5 MB of tables made it slower than this (3.1 against 2.0 ms for 10 rows, 180 against
150 ms for 851, one thread; #23), and it needed a fallback for wide leaves that this does not.

**Path-dependent SHAP of one leaf.** A tree's output is ``sum_l v_l [x reaches l]``. Take a leaf
``l`` with value ``v``, and let ``U`` be the ``d`` distinct features split on along its path
(a feature split on twice is one player: its conditions are merged, as Algorithm 2 does when it
unwinds a repeated feature). For ``j`` in ``U``

* ``z_j`` = the product, over the path's conditions on ``j``, of ``cover(child) / cover(node)``
  (covers are LightGBM's data counts, ``internal_count`` / ``leaf_count``);
* ``o_j`` = 1 when ``x`` satisfies every condition on ``j``, else 0.

The path-dependent value of a coalition ``S`` (features known, the rest integrated out along the
covers) is, for this leaf's term, ``v prod_{j in U∩S} o_j prod_{j in U\S} z_j``. Features off
the path are null players, so the Shapley value of ``i`` in ``U`` is a game over ``U`` alone:

    phi_i = v (o_i - z_i) sum_{S ⊆ U\{i}} w(|S|) prod_{j in S} o_j prod_{j in U\S\{i}} z_j,
    w(s) = s! (d - s - 1)! / d! = int_0^1 t^s (1 - t)^(d - 1 - s) dt     (a Beta integral).

Moving the sum inside the integral, each ``j`` contributes ``o_j t`` when in ``S`` and
``z_j (1 - t)`` when not, so the sum over ``S`` factorises:

    phi_i = v (o_i - z_i) int_0^1 prod_{j in U, j != i} (o_j t + z_j (1 - t)) dt.

The integrand is a polynomial of degree ``d - 1``, which Gauss-Legendre quadrature with
``ceil(d / 2)`` nodes integrates exactly. At each node the ``d`` products that leave out one
factor come from prefix and suffix products, so a leaf costs O(d^2 / 2) per row; every factor is
non-negative, so the sums lose nothing to cancellation. Leaves are stored sorted by ``d`` and path
length, and a block of rows goes through each leaf together, so the loops run the same lengths
again and again. The last column is the base value, ``sum_trees sum_l v_l cover(l) / cover(root)``,
LightGBM's ``ExpectedValue``; each row sums to its raw score.

**Decisions** follow LightGBM's ``Tree::NumericalDecision`` / ``CategoricalDecision`` on raw
inputs (float32 or float64, compared as double), after the C API's dense-row reader drops every
value with ``|x| <= kZeroThreshold`` (1e-35f) to 0. Numeric: NaN becomes 0 unless the split's
missing type is NaN; a NaN (missing type NaN) or a zero (missing type Zero) goes the default way;
otherwise ``x <= threshold`` goes left. Categorical: NaN, a value that truncates to a negative int
(``x <= -1``) or one past ``int`` range goes right; otherwise ``int(x)`` in the split's category
set goes left.

Models this cannot reproduce exactly (linear trees, several trees per iteration, averaged
output, an unknown decision or missing type) raise ``NotImplementedError`` at compile time, so
the caller can fall back to LightGBM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, prange

from tastebud.kernels._serial import serial_twin

# LightGBM's kZeroThreshold: a double initialised from the float literal 1e-35f
_ZERO = float(np.float32(1e-35))
# int(x) of a categorical value is out of C int range from here on (the C cast gives INT_MIN: right)
_INT_LIMIT = 2147483648.0
_NUMERIC, _CATEGORICAL = 0, 1
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
# below this many rows one thread is quicker than waking the pool (a served list is 10 rows)
_SERIAL_ROWS = 64
# rows that go through the terms together in the TreeSHAP kernel (one task of the parallel loop):
# at most 64, the bits of a word
_BLOCK = 32


@dataclass(frozen=True)
class Forest:
    """A LightGBM forest as flat arrays (see :func:`compile_booster`).

    Internal nodes of every tree are numbered together; a child ``c < 0`` is the leaf ``~c`` (leaves
    are numbered together too). The SHAP terms (``term_*``) are the leaves of trees with a split,
    sorted by their number of distinct features ``d`` and path length: each keeps its path
    (``path_*``, root first) and its distinct features (``feat_*``, in order of first appearance).
    """

    n_features: int
    base: float  # the trees' expected values: LightGBM's last pred_contrib column
    tree_root: np.ndarray  # (trees,) int32: the root node, or ~leaf for a single-leaf tree
    node_feature: np.ndarray  # int32
    node_threshold: np.ndarray  # float64
    node_kind: np.ndarray  # int8: 0 numeric, 1 categorical
    node_missing: np.ndarray  # int8: 0 None, 1 Zero, 2 NaN
    node_default_left: np.ndarray  # bool
    node_left: np.ndarray  # int32
    node_right: np.ndarray  # int32
    node_cat_start: np.ndarray  # int32: first word of the split's category bitset in cat_bits
    node_cat_words: np.ndarray  # int32
    cat_bits: np.ndarray  # uint32
    leaf_value: np.ndarray  # float64
    term_value: np.ndarray  # float64: the leaf's value
    path_ptr: np.ndarray  # (terms + 1,) int64
    path_node: np.ndarray  # int32
    path_left: np.ndarray  # bool: the leaf lies below the node's left child
    path_slot: np.ndarray  # int32: the node's feature's place among the leaf's distinct features
    feat_ptr: np.ndarray  # (terms + 1,) int64
    feat_index: np.ndarray  # int32
    feat_z: np.ndarray  # float64
    gauss_t: np.ndarray  # (M, M): row m - 1 holds the m Gauss-Legendre nodes on [0, 1], M = ceil(dmax / 2)
    gauss_w: np.ndarray  # (M, M): their weights

    @property
    def n_trees(self) -> int:
        return len(self.tree_root)

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))


# ---------------------------------------------------------------------------------- compiler
def compile_booster(booster: Any) -> Forest:
    """Flatten a ``lightgbm.Booster`` (the iterations its ``predict`` uses by default) into a :class:`Forest`.

    Reads ``booster.dump_model()`` only. Raises ``NotImplementedError`` for models whose
    predictions this module cannot reproduce exactly.
    """
    model = booster.dump_model()
    if model.get("num_tree_per_iteration", 1) != 1 or model.get("num_class", 1) != 1:
        raise NotImplementedError("several trees per iteration (multiclass): use LightGBM's pred_contrib")
    if model.get("average_output", False):
        raise NotImplementedError("averaged output (random forest mode): use LightGBM's pred_contrib")
    n_features = int(model["max_feature_idx"]) + 1

    nodes: dict[str, list] = {
        k: []
        for k in ("feature", "threshold", "kind", "missing", "default_left", "left", "right", "cat_start", "cat_words")
    }
    cat_bits: list[int] = []
    leaf_value: list[float] = []
    leaf_cover: list[float] = []
    paths: list[list[tuple[int, bool, int, float]]] = []  # per leaf: (node, went_left, feature, fraction)
    tree_root: list[int] = []
    base = 0.0

    def leaf(n: dict, path: list) -> int:
        if "leaf_coeff" in n or "leaf_const" in n:
            raise NotImplementedError("linear trees (linear_tree=True): use LightGBM's pred_contrib")
        leaf_value.append(float(n["leaf_value"]))
        leaf_cover.append(float(n.get("leaf_count", 0)))
        paths.append(path)
        return ~(len(leaf_value) - 1)

    def walk(n: dict, path: list) -> int:
        if "split_index" not in n:
            return leaf(n, path)
        k = len(nodes["feature"])
        for key in nodes:
            nodes[key].append(0)
        f = int(n["split_feature"])
        nodes["feature"][k] = f
        nodes["missing"][k] = _MISSING.get(n.get("missing_type"), -1)
        if nodes["missing"][k] < 0:
            raise NotImplementedError(f"unknown missing type {n.get('missing_type')!r}: use LightGBM's pred_contrib")
        nodes["default_left"][k] = bool(n["default_left"])
        if n["decision_type"] == "<=":
            nodes["kind"][k] = _NUMERIC
            nodes["threshold"][k] = float(n["threshold"])
        elif n["decision_type"] == "==":
            nodes["kind"][k] = _CATEGORICAL
            cats = [int(c) for c in str(n["threshold"]).split("||")]
            if min(cats) < 0:
                raise NotImplementedError("a negative category in a split: use LightGBM's pred_contrib")
            words = max(cats) // 32 + 1
            bits = [0] * words
            for c in cats:
                bits[c >> 5] |= 1 << (c & 31)
            nodes["cat_start"][k] = len(cat_bits)
            nodes["cat_words"][k] = words
            cat_bits.extend(bits)
        else:
            raise NotImplementedError(f"unknown decision type {n['decision_type']!r}: use LightGBM's pred_contrib")
        cover = float(n["internal_count"])
        lc, rc = n["left_child"], n["right_child"]
        lcov = float(lc.get("internal_count", lc.get("leaf_count", 0)))
        rcov = float(rc.get("internal_count", rc.get("leaf_count", 0)))
        nodes["left"][k] = walk(lc, path + [(k, True, f, lcov / cover)])
        nodes["right"][k] = walk(rc, path + [(k, False, f, rcov / cover)])
        return k

    for tree in model["tree_info"]:
        first_leaf = len(leaf_value)
        root = walk(tree["tree_structure"], [])
        tree_root.append(root)
        if root < 0:  # a single leaf: its value is the tree's expected value
            base += leaf_value[first_leaf]
        else:
            total = float(tree["tree_structure"]["internal_count"])
            for j in range(first_leaf, len(leaf_value)):
                base += (leaf_cover[j] / total) * leaf_value[j]

    # each leaf's path with merged features (slot per node, z per distinct feature), sorted
    terms = sorted((len({f for _, _, f, _ in path}), len(path), j) for j, path in enumerate(paths) if path)
    path_ptr, path_node, path_left, path_slot = [0], [], [], []
    feat_ptr, feat_index, feat_z = [0], [], []
    for _, _, j in terms:
        slot: dict[int, int] = {}
        z: list[float] = []
        for node, went_left, f, frac in paths[j]:
            if f not in slot:
                slot[f] = len(z)
                z.append(1.0)
                feat_index.append(f)
            z[slot[f]] *= frac  # in path order, as Algorithm 2 multiplies its zero fractions
            path_node.append(node)
            path_left.append(went_left)
            path_slot.append(slot[f])
        feat_z.extend(z)
        path_ptr.append(len(path_node))
        feat_ptr.append(len(feat_index))

    dmax = max((d for d, _, _ in terms), default=1)
    half = (dmax + 1) // 2
    gauss_t = np.zeros((half, half))
    gauss_w = np.zeros((half, half))
    for m in range(1, half + 1):
        roots, w = np.polynomial.legendre.leggauss(m)
        gauss_t[m - 1, :m] = (roots + 1.0) / 2.0
        gauss_w[m - 1, :m] = w / 2.0

    def i32(v: list) -> np.ndarray:
        return np.asarray(v, np.int32)

    return Forest(
        n_features=n_features,
        base=base,
        tree_root=i32(tree_root),
        node_feature=i32(nodes["feature"]),
        node_threshold=np.asarray(nodes["threshold"], np.float64),
        node_kind=np.asarray(nodes["kind"], np.int8),
        node_missing=np.asarray(nodes["missing"], np.int8),
        node_default_left=np.asarray(nodes["default_left"], np.bool_),
        node_left=i32(nodes["left"]),
        node_right=i32(nodes["right"]),
        node_cat_start=i32(nodes["cat_start"]),
        node_cat_words=i32(nodes["cat_words"]),
        cat_bits=np.asarray(cat_bits, np.uint32),
        leaf_value=np.asarray(leaf_value, np.float64),
        term_value=np.asarray([leaf_value[j] for _, _, j in terms], np.float64),
        path_ptr=np.asarray(path_ptr, np.int64),
        path_node=i32(path_node),
        path_left=np.asarray(path_left, np.bool_),
        path_slot=i32(path_slot),
        feat_ptr=np.asarray(feat_ptr, np.int64),
        feat_index=i32(feat_index),
        feat_z=np.asarray(feat_z, np.float64),
        gauss_t=gauss_t,
        gauss_w=gauss_w,
    )


# ---------------------------------------------------------------------------------- decisions
@njit(cache=True)
def _row(X, r, xr):  # pragma: no cover - compiled
    """Row ``r`` as LightGBM's dense-row reader hands it on: every ``|x| <= kZeroThreshold`` is 0."""
    for j in range(X.shape[1]):
        v = X[r, j]
        xr[j] = 0.0 if -_ZERO <= v <= _ZERO else v


@njit(cache=True)
def _goes_left(
    x, kind, missing, default_left, threshold, cat_bits, cat_start, cat_words
):  # pragma: no cover - compiled
    """LightGBM's decision at a node for a value from :func:`_row` (see the module docstring).

    Scalars in, one array: a call per node that passes every node array costs more than the test.
    """
    if kind == _NUMERIC:
        if x != x:
            if missing == 2:
                return default_left
            x = 0.0
        if missing == 1 and x == 0.0:  # IsZero, once the reader has zeroed |x| <= kZeroThreshold
            return default_left
        return x <= threshold
    if x > -1.0 and x < _INT_LIMIT:  # else NaN, a negative int, or past int range: right
        c = int(x)
        w = c >> 5
        if w < cat_words:
            return ((np.int64(cat_bits[cat_start + w]) >> (c & 31)) & 1) != 0
    return False


# ---------------------------------------------------------------------------------- prediction
@njit(parallel=True, cache=True)
def _predict_rows(
    X,
    tree_root,
    node_feature,
    node_threshold,
    node_kind,
    node_missing,
    node_default_left,
    node_left,
    node_right,
    node_cat_start,
    node_cat_words,
    cat_bits,
    leaf_value,
    out,
):  # pragma: no cover - compiled
    """Sum of the reached leaves per row, trees in LightGBM's order (so the sums round alike)."""
    for r in prange(X.shape[0]):
        x = np.empty(X.shape[1])
        _row(X, r, x)
        s = 0.0
        for t in range(len(tree_root)):
            k = tree_root[t]
            while k >= 0:
                if _goes_left(
                    x[node_feature[k]],
                    node_kind[k],
                    node_missing[k],
                    node_default_left[k],
                    node_threshold[k],
                    cat_bits,
                    node_cat_start[k],
                    node_cat_words[k],
                ):
                    k = node_left[k]
                else:
                    k = node_right[k]
            s += leaf_value[~k]
        out[r] = s


_predict_rows_serial = serial_twin(_predict_rows)


# ---------------------------------------------------------------------------------- TreeSHAP
@njit(parallel=True, cache=True)
def _contrib_rows(
    X,
    base,
    node_feature,
    node_threshold,
    node_kind,
    node_missing,
    node_default_left,
    node_cat_start,
    node_cat_words,
    cat_bits,
    term_value,
    path_ptr,
    path_node,
    path_left,
    path_slot,
    feat_ptr,
    feat_index,
    feat_z,
    gauss_t,
    gauss_w,
    out,
):  # pragma: no cover - compiled
    """Each row's SHAP values (columns 0..F-1) and base value (column F); see the module docstring.

    A block of up to 64 rows decides every node first, one bit per row, so a term's ``o_j`` for the
    whole block take one AND per path node; then the quadrature runs with the rows innermost (the
    same loop lengths for every row, and SIMD across rows).
    """
    n, n_cols = X.shape
    n_nodes = len(node_feature)
    dmax = 2 * gauss_t.shape[0] + 1
    for blk in prange((n + _BLOCK - 1) // _BLOCK):
        lo = blk * _BLOCK
        m = min(n, lo + _BLOCK) - lo
        x = np.empty(n_cols)
        went_left = np.zeros(n_nodes, np.uint64)  # bit r: row lo + r goes left
        for r in range(m):
            _row(X, lo + r, x)
            bit = np.uint64(1) << np.uint64(r)
            for k in range(n_nodes):
                if _goes_left(
                    x[node_feature[k]],
                    node_kind[k],
                    node_missing[k],
                    node_default_left[k],
                    node_threshold[k],
                    cat_bits,
                    node_cat_start[k],
                    node_cat_words[k],
                ):
                    went_left[k] |= bit
        phi = np.zeros((n_cols, m))  # feature-major, so that a term adds to a row of it
        rows = (np.uint64(1) << np.uint64(m)) - np.uint64(1) if m < 64 else ~np.uint64(0)
        held = np.empty(dmax, np.uint64)  # bit r of held[s]: row r satisfies the term's conditions on s
        ones = np.empty((dmax, m))
        fac = np.empty((dmax, m))
        pre = np.empty((dmax, m))
        acc = np.empty((dmax, m))
        prod = np.empty(m)
        for term in range(len(term_value)):
            f0 = feat_ptr[term]
            d = feat_ptr[term + 1] - f0
            for s in range(d):
                held[s] = rows
            for p in range(path_ptr[term], path_ptr[term + 1]):
                if path_left[p]:
                    held[path_slot[p]] &= went_left[path_node[p]]
                else:
                    held[path_slot[p]] &= ~went_left[path_node[p]]
            for s in range(d):
                for r in range(m):
                    ones[s, r] = np.float64((held[s] >> np.uint64(r)) & np.uint64(1))
                    acc[s, r] = 0.0
            nq = (d + 1) // 2  # Gauss-Legendre nodes: exact for the degree d - 1
            for j in range(nq):  # acc[i] = int_0^1 prod_{s != i} (o_s t + z_s (1 - t)) dt
                t = gauss_t[nq - 1, j]
                u = 1.0 - t
                w = gauss_w[nq - 1, j]
                for r in range(m):
                    prod[r] = w
                for s in range(d):
                    zu = feat_z[f0 + s] * u
                    for r in range(m):
                        fac[s, r] = ones[s, r] * t + zu
                        pre[s, r] = prod[r]
                        prod[r] *= fac[s, r]
                for r in range(m):
                    prod[r] = 1.0
                for s in range(d - 1, -1, -1):
                    for r in range(m):
                        acc[s, r] += pre[s, r] * prod[r]
                        prod[r] *= fac[s, r]
            v = term_value[term]
            for s in range(d):
                f = feat_index[f0 + s]
                z = feat_z[f0 + s]
                for r in range(m):
                    phi[f, r] += v * (ones[s, r] - z) * acc[s, r]
        for r in range(m):
            for f in range(n_cols):
                out[lo + r, f] = phi[f, r]
            out[lo + r, n_cols] = base


_contrib_rows_serial = serial_twin(_contrib_rows)


# ---------------------------------------------------------------------------------- public API
def _rows(forest: Forest, X: Any) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != forest.n_features:
        raise ValueError(f"X must be (rows, {forest.n_features}), got shape {X.shape}")
    return np.ascontiguousarray(X, dtype=np.float64)  # float32 -> float64 is exact, as in LightGBM


def _serial(X: np.ndarray, threads: int) -> bool:
    """One thread for one-thread callers and for few rows (waking the pool costs more)."""
    return threads == 1 or len(X) < _SERIAL_ROWS


def predict_raw(forest: Forest, X: Any, threads: int = 0) -> np.ndarray:
    """(n,) raw scores, equal to ``booster.predict(X, raw_score=True)``; ``threads`` 1 runs on the
    calling thread alone (a served request), otherwise numba's pool runs blocks of rows."""
    X = _rows(forest, X)
    out = np.empty(len(X))
    kernel = _predict_rows_serial if _serial(X, threads) else _predict_rows
    f = forest
    kernel(
        X,
        f.tree_root,
        f.node_feature,
        f.node_threshold,
        f.node_kind,
        f.node_missing,
        f.node_default_left,
        f.node_left,
        f.node_right,
        f.node_cat_start,
        f.node_cat_words,
        f.cat_bits,
        f.leaf_value,
        out,
    )
    return out


def contributions(forest: Forest, X: Any, threads: int = 0) -> np.ndarray:
    """(n, n_features + 1) path-dependent SHAP values and base value: LightGBM's ``pred_contrib``.

    Each row sums to its raw score. Rows are independent, so the result does not depend on the
    number of threads (``threads`` as in :func:`predict_raw`).
    """
    X = _rows(forest, X)
    out = np.empty((len(X), forest.n_features + 1))
    kernel = _contrib_rows_serial if _serial(X, threads) else _contrib_rows
    f = forest
    kernel(
        X,
        f.base,
        f.node_feature,
        f.node_threshold,
        f.node_kind,
        f.node_missing,
        f.node_default_left,
        f.node_cat_start,
        f.node_cat_words,
        f.cat_bits,
        f.term_value,
        f.path_ptr,
        f.path_node,
        f.path_left,
        f.path_slot,
        f.feat_ptr,
        f.feat_index,
        f.feat_z,
        f.gauss_t,
        f.gauss_w,
        out,
    )
    return out


__all__ = ["Forest", "compile_booster", "contributions", "predict_raw"]
