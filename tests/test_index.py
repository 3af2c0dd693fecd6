"""Vector index: exact answers worked by hand, brute-force references, filters that keep k, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tastebud.core.base import Recommender
from tastebud.core.errors import ConfigError, DataError, NotFittedError
from tastebud.index import ExactIndex, factor_view, load_index, make_index

pytest.importorskip("faiss")


def brute(vectors, queries, k, exclude=None, allowed=None):
    scores = queries @ vectors.T
    if allowed is not None:
        mask = np.full(len(vectors), True)
        mask[allowed] = False
        scores[:, mask] = -np.inf
    if exclude is not None:
        for r, ex in enumerate(exclude):
            scores[r, ex] = -np.inf
    out = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))
        out.append([i for i in order[:k] if np.isfinite(row[i])])
    return out


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((20, 16)).astype(np.float32)
    vecs = centers[rng.integers(0, 20, 3000)] + 0.3 * rng.standard_normal((3000, 16)).astype(np.float32)
    queries = rng.standard_normal((25, 16)).astype(np.float32)
    return vecs.astype(np.float32), queries


def test_exact_known_answer():
    vecs = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    idx, val = ExactIndex().build(vecs).search(np.array([[1.0, 0.5]]), 3)
    assert idx.tolist() == [[2, 0, 1]]
    np.testing.assert_allclose(val, [[1.5, 1.0, 0.5]])
    # cosine ignores length: [1,1] is 18.4 degrees from the query, [1,0] 26.6, [0,1] 63.4
    idx, val = (
        ExactIndex(metric="cosine")
        .build(vecs * np.array([[5.0], [1.0], [0.1]], np.float32))
        .search(np.array([[1.0, 0.5]]), 3)
    )
    assert idx.tolist() == [[2, 0, 1]]
    np.testing.assert_allclose(val[0], [1.5 / np.sqrt(2.5), 1 / np.sqrt(1.25), 0.5 / np.sqrt(1.25)], rtol=1e-5)
    # inner product prefers the long vector [5, 0] over [0.1, 0.1] after scaling
    idx, _ = ExactIndex().build(vecs * np.array([[5.0], [1.0], [0.1]], np.float32)).search(np.array([[1.0, 0.5]]), 3)
    assert idx.tolist() == [[0, 1, 2]]


def test_exact_matches_brute_force_with_filters_and_chunks(data):
    vecs, queries = data
    rng = np.random.default_rng(1)
    exclude = [rng.choice(3000, 40, replace=False) for _ in queries]
    allowed = rng.choice(3000, 500, replace=False)
    ref = brute(vecs, queries, 10, exclude, allowed)
    for block in (16_000_000, 1000):  # one chunk, and many chunks of 40 items
        idx, val = ExactIndex(block=block).build(vecs).search(queries, 10, exclude=exclude, allowed=allowed)
        assert [list(r) for r in idx] == ref
        assert np.all(np.diff(val, axis=1) <= 1e-6)
    # a CSR exclusion matrix means the same as a list of arrays
    rows = np.repeat(np.arange(len(queries)), 40)
    csr = sp.csr_matrix((np.ones(len(rows)), (rows, np.concatenate(exclude))), shape=(len(queries), 3000))
    idx2, _ = ExactIndex().build(vecs).search(queries, 10, exclude=csr, allowed=allowed)
    assert [list(r) for r in idx2] == ref


def test_exact_pads_when_too_few_eligible():
    vecs = np.eye(4, dtype=np.float32)
    idx, val = ExactIndex().build(vecs).search(np.ones((1, 4)), 5, exclude=[np.array([0])], allowed=[0, 1, 2])
    assert idx[0].tolist() == [1, 2, -1, -1, -1]
    assert np.isnan(val[0, 2:]).all()


def test_hnsw_recall_and_filters_keep_k(data):
    vecs, queries = data
    hnsw = make_index("HNSW32", ef_search=64).build(vecs)
    exact = ExactIndex().build(vecs)
    got, _ = hnsw.search(queries, 10)
    ref, _ = exact.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, ref, strict=False)])
    assert recall >= 0.95
    rng = np.random.default_rng(2)
    # a tight allowed set (12 items) and a person who has seen most of it: still min(k, eligible)
    allowed = rng.choice(3000, 12, replace=False)
    exclude = [allowed[:5]] * len(queries)
    idx, val = hnsw.search(queries, 10, exclude=exclude, allowed=allowed)
    for row in idx:
        valid = row[row >= 0]
        assert len(valid) == 7 and set(valid) <= set(allowed[5:])
    # heavy exclusions without a subset: still k results, none excluded
    big_ex = [rng.choice(3000, 1500, replace=False) for _ in queries]
    idx, _ = hnsw.search(queries, 10, exclude=big_ex)
    for row, ex in zip(idx, big_ex, strict=False):
        assert (row >= 0).all() and not set(row) & set(ex)
    ref_f = brute(vecs, queries, 10, big_ex)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, ref_f, strict=False)]) >= 0.9


def test_ivfpq_factory_string_and_round_trip(data, tmp_path):
    vecs, queries = data
    ivf = make_index("IVF16,PQ4x4", nprobe=16, train_size=1000).build(vecs)
    idx, _ = ivf.search(queries, 10, allowed=np.arange(0, 3000, 7))
    assert (idx >= 0).all() and (idx % 7 == 0).all()
    ivf.save(tmp_path / "ivf")
    again = load_index(tmp_path / "ivf")
    idx2, _ = again.search(queries, 10, allowed=np.arange(0, 3000, 7))
    assert np.array_equal(idx, idx2)


@pytest.mark.parametrize("spec", ["exact", "HNSW16"])
def test_save_load_identical_and_pickle_free(data, tmp_path, spec):
    vecs, queries = data
    index = make_index(spec, metric="cosine").build(vecs)
    a = index.search(queries, 8, exclude=[np.array([1, 2, 3])] * len(queries))
    index.save(tmp_path / "ix")
    names = sorted(p.name for p in (tmp_path / "ix").iterdir())
    assert "manifest.json" in names and not any(n.endswith((".pkl", ".pickle")) for n in names)
    loaded = load_index(tmp_path / "ix")
    b = loaded.search(queries, 8, exclude=[np.array([1, 2, 3])] * len(queries))
    assert np.array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    assert loaded.metric == "cosine" and loaded.dim == 16 and len(loaded) == 3000


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the process's memory map (Linux)")
def test_faiss_index_is_mapped_from_its_file_not_copied(data, tmp_path):
    """A loaded FAISS index maps its saved file (a reload costs no copy; fleet workers share the
    pages); the mapping outlives the file's removal, and a replaced index unmaps it."""
    vecs, queries = data
    index = make_index("HNSW16").build(vecs)
    want = index.search(queries, 10)
    index.save(tmp_path / "ix")
    path = str((tmp_path / "ix" / "index.faiss").resolve())

    def mapped() -> bool:
        return path in Path("/proc/self/maps").read_text()

    assert not mapped()
    loaded = load_index(tmp_path / "ix")
    assert mapped()
    (tmp_path / "ix" / "index.faiss").unlink()  # a pruned version still being served
    got = loaded.search(queries, 10)
    assert np.array_equal(got[0], want[0])
    del loaded
    assert not mapped()


def test_cosine_normalises_for_the_user(data):
    vecs, queries = data
    scaled = vecs * np.random.default_rng(3).uniform(0.1, 10, (len(vecs), 1)).astype(np.float32)
    a, va = make_index("exact", metric="cosine").build(vecs).search(queries, 5)
    b, vb = make_index("HNSW32", metric="cosine").build(scaled).search(queries * 7, 5)
    assert np.mean([len(set(x) & set(y)) / 5 for x, y in zip(a, b, strict=False)]) >= 0.95
    assert np.nanmax(vb) <= 1.0 + 1e-5


def test_bad_input():
    with pytest.raises(ConfigError, match="metric"):
        make_index("exact", metric="l2")
    with pytest.raises(ConfigError, match="factory"):
        make_index("NoSuchIndex12").build(np.ones((10, 4), np.float32))
    index = make_index("exact")
    with pytest.raises(NotFittedError):
        index.search(np.ones((1, 4)), 3)
    with pytest.raises(DataError, match="NaN"):
        index.build(np.array([[np.nan, 1.0]]))
    index.build(np.ones((10, 4), np.float32))
    with pytest.raises(DataError, match="dimension"):
        index.search(np.ones((1, 5)), 3)
    with pytest.raises(ConfigError, match="k must"):
        index.search(np.ones((1, 4)), 0)
    with pytest.raises(DataError, match="outside"):
        index.search(np.ones((1, 4)), 3, allowed=[50])


class _Factors(Recommender):
    """Scores by <p_u, q_i> + b_i (+ a per-user constant that must not matter)."""

    def __init__(self, bias: bool = True) -> None:
        self.bias = bias

    def _fit(self, data):  # pragma: no cover - the test sets the state directly
        raise NotImplementedError

    def _score(self, user_idx, item_idx):
        q = self.item_factors_ if item_idx is None else self.item_factors_[item_idx]
        b = self.item_bias_ if item_idx is None else self.item_bias_[item_idx]
        out = self.user_factors_[user_idx] @ q.T + 3.0 * user_idx[:, None]
        return out + b[None, :] if self.bias else out


def _factors(bias: bool) -> _Factors:
    from tastebud.data.idmap import IdMap

    rng = np.random.default_rng(0)
    m = _Factors(bias)
    m.users_, m.items_ = IdMap(np.arange(30)), IdMap(np.arange(50))
    m.user_items_ = sp.csr_matrix((30, 50), dtype=np.float32)
    m.user_factors_ = rng.standard_normal((30, 4)).astype(np.float32)
    m.item_factors_ = rng.standard_normal((50, 4)).astype(np.float32)
    m.item_bias_ = rng.standard_normal(50).astype(np.float32)
    return m


@pytest.mark.parametrize("bias", [True, False])
def test_factor_view_is_verified(bias):
    m = _factors(bias)
    view = factor_view(m)
    assert view is not None and view.dim == (5 if bias else 4)
    # the view ranks exactly like the model
    uidx = np.arange(30)
    ref = np.argsort(-m._score(uidx, None), axis=1, kind="stable")[:, :5]
    idx, _ = ExactIndex().build(view.item_vectors).search(view.user_vectors, 5)
    assert np.array_equal(idx, ref)


def test_factor_view_refuses_non_inner_products():
    m = _factors(True)
    m._score = lambda u, i: np.tanh(m.user_factors_[u] @ m.item_factors_.T)  # type: ignore[method-assign]
    assert factor_view(m) is None
