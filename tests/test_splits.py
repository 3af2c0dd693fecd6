"""Splitters: exact sizes worked by hand, determinism, vocabularies kept, unseen ids reported."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tastebud.core.errors import ConfigError, DataError
from tastebud.data.interactions import Interactions
from tastebud.data.splits import Split, holdout, kfold, leave_last_out, time_cutoff


def tiny() -> Interactions:
    # a: 6 events, b: 3 events, c: 1 event; timestamps out of input order on purpose
    rows = [
        ("a", "x1", 5, 60), ("a", "x2", 4, 10), ("a", "x3", 3, 20), ("a", "x4", 2, 50), ("a", "x5", 1, 40),
        ("a", "x6", 3, 30), ("b", "x1", 4, 5), ("b", "x2", 2, 15), ("b", "x7", 1, 25), ("c", "x8", 5, 70),
    ]  # fmt: skip
    return Interactions.from_frame(pd.DataFrame(rows, columns=["u", "i", "r", "t"]), "u", "i", "r", "t")


def pairs(d: Interactions) -> set[tuple[str, str]]:
    f = d.to_frame()
    return set(zip(f["user"], f["item"], strict=False))


def test_holdout_sizes_and_determinism():
    d = tiny()
    s = holdout(d, fraction=0.5, min_interactions=3, random_state=1)
    assert isinstance(s, Split)
    test = s.test.to_frame()
    assert test.groupby("user").size().to_dict() == {"a": 3, "b": 2}  # round(0.5*6), round(0.5*3)
    assert s.report["users_train_only"] == 1  # c has one event
    assert pairs(s.train) | pairs(s.test) == pairs(d) and not pairs(s.train) & pairs(s.test)
    again = holdout(d, fraction=0.5, min_interactions=3, random_state=1)
    assert pairs(again.test) == pairs(s.test)
    assert s.train.users is d.users and s.test.items is d.items


def test_holdout_on_synthetic(synth):
    s = holdout(synth, fraction=0.2, random_state=0)
    counts = synth.user_counts()
    got = np.bincount(s.test.user_idx, minlength=synth.n_users)
    np.testing.assert_array_equal(got, np.clip(np.rint(0.2 * counts), 1, counts - 1) * (counts >= 5))
    assert len(s.train) + len(s.test) == len(synth)
    assert s.report["test_users_unseen_in_train"] == 0
    others = {frozenset(pairs(holdout(synth, 0.2, random_state=r).test)) for r in (0, 1, 2)}
    assert len(others) == 3


def test_leave_last_out_by_time():
    d = tiny()
    s = leave_last_out(d, n=1)
    assert pairs(s.test) == {("a", "x1"), ("b", "x7")}  # latest by timestamp, not by input order
    assert s.report["users_train_only"] == 1
    s2 = leave_last_out(d, n=2)
    assert pairs(s2.test) == {("a", "x1"), ("a", "x4"), ("b", "x7"), ("b", "x2")}


def test_leave_last_out_with_validation():
    d = tiny()
    val, test = leave_last_out(d, n=1, validation=True)
    assert pairs(test.test) == {("a", "x1"), ("b", "x7")}
    assert pairs(val.test) == {("a", "x4"), ("b", "x2")}
    assert pairs(val.train) == pairs(d) - pairs(test.test) - pairs(val.test)
    assert pairs(test.train) == pairs(val.train) | pairs(val.test)
    # with n=2 user b (3 events) cannot give 2 + 2 and keep one: training only
    val2, test2 = leave_last_out(d, n=2, validation=True)
    assert {u for u, _ in pairs(test2.test)} == {"a"} and val2.report["users_train_only"] == 2


def test_leave_last_out_synthetic_is_each_users_latest(synth):
    s = leave_last_out(synth, n=1)
    f = synth.to_frame()
    latest = f.loc[f.groupby("user")["timestamp"].idxmax()]
    assert pairs(s.test) == set(zip(latest["user"], latest["item"], strict=False))


def test_time_cutoff():
    d = tiny()
    s = time_cutoff(d, at=40)
    assert pairs(s.test) == {("a", "x1"), ("a", "x4"), ("a", "x5"), ("c", "x8")}
    assert s.report["cutoff"] == 40 and s.report["test_users_unseen_in_train"] == 1  # c
    assert s.report["test_items_unseen_in_train"] == 3  # x4, x5, x8
    q = time_cutoff(d, quantile=0.5)
    assert len(q.test) == 5 and (q.train.timestamps < q.test.timestamps.min()).all()
    assert pairs(time_cutoff(d, 0.5).test) == pairs(q.test)
    assert len(time_cutoff(d, at="1970-01-01 00:00:40").test) == 4
    with pytest.raises(ConfigError):
        time_cutoff(d, at=1000)
    with pytest.raises(ConfigError):
        time_cutoff(d)


def test_kfold_partitions_every_event(synth):
    folds = kfold(synth, k=5, random_state=3)
    seen = np.zeros(len(synth), dtype=int)
    sizes = [len(f.test) for f in folds]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(synth)
    union = set()
    for f in folds:
        assert len(f.train) + len(f.test) == len(synth)
        assert not pairs(f.test) & union
        union |= pairs(f.test)
    assert union == pairs(synth)
    assert [pairs(f.test) for f in kfold(synth, 5, random_state=3)] == [pairs(f.test) for f in folds]
    del seen


def test_errors():
    d = tiny()
    with pytest.raises(ConfigError, match="fraction"):
        holdout(d, fraction=1.5)
    with pytest.raises(ConfigError, match="random_state"):
        holdout(d, random_state=-1)
    with pytest.raises(ConfigError, match="k must"):
        kfold(d, k=1)
    with pytest.raises(ConfigError, match="n must"):
        leave_last_out(d, n=0)
    no_time = Interactions.from_frame(pd.DataFrame({"u": [1, 2], "i": [1, 2]}), "u", "i")
    with pytest.raises(DataError, match="timestamps"):
        leave_last_out(no_time)
    with pytest.raises(DataError, match="timestamps"):
        time_cutoff(no_time, 0.5)


def test_ml100k_canonical_folds(data_root):
    from tastebud.data.movielens import ml100k_folds

    folds = ml100k_folds(data_root, folds=(1,))
    assert folds[0].name == "u1" and len(folds[0].train) == 80_000 and len(folds[0].test) == 20_000
    assert folds[0].report["test_items_unseen_in_train"] > 0  # reported, not dropped
