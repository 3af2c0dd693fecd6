"""bench_index's raw FAISS sides solve the very problem tastebud's index does (like with like)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmods import bench_fixture

faiss = pytest.importorskip("faiss")


bench_index = bench_fixture("bench_index")


def test_lift_turns_the_largest_inner_product_into_the_nearest_item(bench_index) -> None:
    users, items = bench_index.synthetic_factors(300, 20, dim=8)
    lifted, top = bench_index._lift(items)
    assert lifted.shape == (300, 9) and np.isclose(top, np.linalg.norm(items, axis=1).max())
    queries = np.hstack([users, np.zeros((len(users), 1), np.float32)])
    nearest = ((queries[:, None, :] - lifted[None, :, :]) ** 2).sum(-1).argmin(axis=1)
    assert np.array_equal(nearest, (users @ items.T).argmax(axis=1))


@pytest.mark.parametrize("euclidean", [None, False])
def test_raw_side_returns_what_tastebud_returns_in_the_same_geometry(bench_index, euclidean) -> None:
    users, items = bench_index.synthetic_factors(2000, 50, dim=16)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one thread: HNSW insertion, hence the graph, is deterministic
    try:
        ours = bench_index.Ours(items, 64, euclidean)
        raw = (bench_index.RawLifted if euclidean is None else bench_index.RawIP)(items, 64)
        other = (bench_index.RawIP if euclidean is None else bench_index.RawLifted)(items, 64)
        got, want, unlike = ours.search(users, 10), raw.search(users, 10), other.search(users, 10)
    finally:
        faiss.omp_set_num_threads(threads)
    assert np.array_equal(got, want)
    assert not np.array_equal(got, unlike)  # the other geometry builds another graph
