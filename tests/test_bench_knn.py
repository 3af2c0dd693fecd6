"""bench_knn's item cold-start carve: the validation items come from the training items only."""

from __future__ import annotations

import numpy as np

from benchmods import bench_fixture
from tastebud.data.synthetic import generate

bench_knn = bench_fixture("bench_knn")


def test_validation_items_are_training_items_and_leave_no_trace(bench_knn) -> None:
    data = generate(n_users=60, n_items=50, n_interactions=1500, explicit=True, random_state=1, features=False)
    test, test_held = bench_knn.cold_start_split(data, 0)
    among = np.setdiff1d(np.arange(data.n_items), test_held)
    val, val_held = bench_knn.cold_start_split(test.train, 1, among=among)
    assert len(test_held) == len(val_held) == data.n_items // 10
    assert not np.intersect1d(test_held, val_held).size
    # the training parts hold none of their held-out items, the test parts only those
    assert not np.isin(test.train.item_idx, test_held).any() and np.isin(test.test.item_idx, test_held).all()
    assert not np.isin(val.train.item_idx, np.union1d(test_held, val_held)).any()
    assert np.isin(val.test.item_idx, val_held).all() and len(val.train) + len(val.test) == len(test.train)


def test_slower_names_only_the_sides_behind_the_baseline(bench_knn) -> None:
    from common import Timing

    fast, slow, base = Timing("1"), Timing("1"), Timing("1")
    base.wall, fast.wall, slow.wall = [1.0, 2.0, 1.0], [0.5, 1.0, 0.9], [1.5, 1.0, 3.0]
    losses: list[str] = []
    bench_knn._slower({"peer": base, "fast": fast, "slow": slow}, "peer", "fit", losses)
    assert losses == ["fit: slow takes 1.50x the wall time of peer (median per pair)."]
