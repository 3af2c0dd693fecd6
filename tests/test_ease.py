"""EASE: the closed form against a dense numpy computation, the memory guard, fold-in."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

from tastebud.core.errors import ConfigError, DataError
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions
from tastebud.models.ease import EASE, _gram, _spd_inverse_upper, ease_bytes


def tiny(n_users=40, n_items=25, seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < 0.3
    u, i = np.nonzero(mask)
    return Interactions(IdMap(np.arange(n_users), "user"), IdMap(np.arange(n_items), "item"), u, i, explicit=False)


def test_weights_equal_the_dense_formula():
    data = tiny()
    lam = 7.0
    X = data.matrix.toarray().astype(np.float64)
    P = np.linalg.inv(X.T @ X + lam * np.eye(data.n_items))
    B = np.eye(data.n_items) - P / np.diag(P)[None, :]  # B = I - P diag(1/diag(P))
    model = EASE(reg=lam).fit(data)
    np.testing.assert_allclose(np.diag(model.weights_), 0.0)
    np.testing.assert_allclose(model.weights_, B, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.score([3]), X[[3]] @ B, rtol=1e-4, atol=1e-5)


def test_dropout_is_the_edlae_closed_form():
    data = tiny(seed=2)
    lam, p = 3.0, 0.25
    X = data.matrix.toarray().astype(np.float64)
    G = X.T @ X
    P = np.linalg.inv(G + np.diag(lam + p / (1 - p) * np.diag(G)))
    B = np.eye(data.n_items) - P / np.diag(P)[None, :]
    np.testing.assert_allclose(EASE(reg=lam, dropout=p).fit(data).weights_, B, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="dropout"):
        EASE(dropout=1.0).fit(data)


def test_fold_in_and_explanations_are_the_score_split():
    data = tiny(seed=1)
    model = EASE(reg=5.0).fit(data)
    row = model.user_items_[4]
    items = row.indices.tolist()
    a = model.recommend([4], k=5, explain=True)
    b = model.recommend_for_history(items, k=5)
    assert a.items_of(0) == b.items_of(0)
    np.testing.assert_allclose(a.scores_of(0), b.scores_of(0), rtol=1e-5)
    if len(items) <= 5:
        for score, expl in zip(a.scores_of(0), a.explanations[0], strict=False):
            assert sum(w for _, w in expl.contributions) == pytest.approx(score, rel=1e-4)
    contrib = model.weights_[row.indices, a.items[0][0]]
    assert a.explanations[0][0].contributions[0][1] == pytest.approx(contrib.max(), rel=1e-5)


def test_memory_budget_is_checked_before_allocating():
    # 300,000 items would need ~1 TB; the default budget (half the free memory) refuses at once
    n_items = 300_000
    data = Interactions(
        IdMap([0, 1], "user"), IdMap(np.arange(n_items), "item"), np.array([0, 1]), np.array([5, 7]), explicit=False
    )
    with pytest.raises(ConfigError, match="ials.*itemknn|max_memory_gb"):
        EASE().fit(data)
    small = tiny()
    assert ease_bytes(small.n_items) == small.n_items**2 * 12
    with pytest.raises(ConfigError, match="max_memory_gb"):
        EASE(max_memory_gb=ease_bytes(small.n_items) / 2 / (1 << 30)).fit(small)
    EASE(max_memory_gb=ease_bytes(small.n_items) * 2 / (1 << 30)).fit(small)


def test_bad_input():
    data = tiny()
    with pytest.raises(ConfigError, match="reg"):
        EASE(reg=0.0).fit(data)
    neg = Interactions(data.users, data.items, data.user_idx, data.item_idx, -data.values, explicit=False)
    with pytest.raises(DataError, match=">= 0"):
        EASE().fit(neg)
    model = EASE(reg=5.0).fit(data)
    with pytest.raises(DataError, match=">= 0"):
        model.recommend_for_history([1, 2], values=[1.0, -1.0])


@pytest.mark.parametrize(("n", "tile"), [(1, 4), (30, 7), (30, 10), (30, 30), (30, 64), (53, 16)])
def test_tiled_inverse_equals_the_dense_inverse(n, tile):
    # tiles that divide n, that do not, one tile, and a tile larger than the matrix
    rng = np.random.default_rng(n + tile)
    X = rng.random((2 * n + 5, n))
    G = X.T @ X + 0.5 * np.eye(n)
    P = _spd_inverse_upper(G.copy(order="F"), 0.5, tile=tile)
    upper = np.triu_indices(n)
    np.testing.assert_allclose(P[upper], np.linalg.inv(G)[upper], rtol=1e-9, atol=1e-12)


def test_gram_is_the_dense_product():
    data = tiny(n_users=700, n_items=30, seed=3)  # more users than one block of columns holds rows
    X = sp.csr_matrix(data.matrix, dtype=np.float64) * 2.5
    G = _gram(X)
    assert G.flags.f_contiguous
    np.testing.assert_array_equal(G, X.toarray().T @ X.toarray())


# 24,000 items x 31,000 users: the size at which OpenBLAS's threaded syrk/potrf/getrf segfaulted (issue #21)
_BIG_FIT = textwrap.dedent(
    """
    import numpy as np
    from tastebud.core.registry import get_model
    from tastebud.data.synthetic import generate

    data = generate(31_000, 24_000, 256_000, explicit=False, features=False, random_state=0)
    lam = 300.0
    model = get_model("ease")(reg=lam).fit(data)
    B = model.weights_
    assert B.shape == (24_000, 24_000) and np.isfinite(B).all() and not np.diag(B).any()
    # optimality: ((X^T X + lam I) B)_ij = (X^T X + lam I)_ij off the diagonal; checked on a few columns
    X = model.user_items_.astype(np.float64)
    cols = np.array([0, 1, 777, 12_345, 23_999])
    lhs = X.T @ (X @ B[:, cols].astype(np.float64)) + lam * B[:, cols]
    rhs = (X.T @ X[:, cols]).toarray() + lam * np.eye(24_000)[:, cols]
    rhs[cols, np.arange(len(cols))] = lhs[cols, np.arange(len(cols))]
    assert np.abs(lhs - rhs).max() < 1e-3 * np.abs(rhs).max(), np.abs(lhs - rhs).max()
    print("ok", len(model.recommend(["u0", "u1"], k=10).items_of(0)))
    """
)


@pytest.mark.slow
def test_fit_at_24k_items_completes_in_a_subprocess():
    """A native crash must fail this test, not kill pytest: the fit runs in a child process."""
    proc = subprocess.run([sys.executable, "-c", _BIG_FIT], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"exit code {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip() == "ok 10"
