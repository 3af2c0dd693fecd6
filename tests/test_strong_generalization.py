"""Strong generalisation (Liang et al. 2018): the held-out-users split, the capped recall and the
fold-in evaluation, on cases small enough to work by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import tastebud as tb
from tastebud.core.base import Recommender
from tastebud.core.errors import ConfigError, DataError, NotSupportedError
from tastebud.data.splits import FoldIn, StrongSplit, strong_generalization
from tastebud.data.synthetic import generate
from tastebud.eval import metrics as M
from tastebud.eval.strong import evaluate_fold_in

# ------------------------------------------------------------------ the split


def hand_data() -> tb.Interactions:
    """u0, u1: 5 items; u2: 10 items; u3: 5 items plus 'z', which nobody else has;
    t0..t3: 4 items each (below min_interactions=5, so always training users)."""
    rows = [("u0", i) for i in "abcde"] + [("u1", i) for i in "abcde"]
    rows += [("u2", i) for i in "abcdefghij"] + [("u3", i) for i in "abcdez"]
    rows += [("t0", i) for i in "abcd"] + [("t1", i) for i in "efgh"] + [("t2", i) for i in "ijab"]
    rows += [("t3", i) for i in "cdef"]
    return tb.Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item"]))


def items_by_user(data: tb.Interactions) -> dict[str, set[str]]:
    frame = data.to_frame()
    return {u: set(g["item"]) for u, g in frame.groupby("user")}


def test_split_known_answers_by_hand():
    data = hand_data()
    split = strong_generalization(data, heldout_users=2, fold_in=0.8, validation=True, random_state=3)
    assert isinstance(split, StrongSplit) and split.validation is not None
    assert set(items_by_user(split.train)) == {"t0", "t1", "t2", "t3"}  # only the four small users train
    assert len(split.train) == 16
    test_users = set(items_by_user(split.test.fold_in))
    val_users = set(items_by_user(split.validation.fold_in))
    assert len(test_users) == len(val_users) == 2 and test_users | val_users == {"u0", "u1", "u2", "u3"}
    full = items_by_user(data)
    for part in (split.test, split.validation):
        folded, target = items_by_user(part.fold_in), items_by_user(part.target)
        for user in folded:
            kept = full[user] - {"z"}  # 'z' is on no training user's list: dropped, as in the paper
            assert folded[user] | target[user] == kept and not folded[user] & target[user]
            assert len(target[user]) == math.floor(0.2 * len(kept))  # 5 -> 1 target, 10 -> 2
        assert len(part.users) == 2
    assert split.report["heldout_events_on_unseen_items"] == 1
    assert split.report["train_users"] == 4 and split.report["test_users"] == 2
    # every part keeps the full vocabularies
    assert split.test.target.items is data.items and split.train.users is data.users


def test_split_is_deterministic_and_seeded():
    data = generate(n_users=60, n_items=40, n_interactions=1500, explicit=False, random_state=0)
    a = strong_generalization(data, heldout_users=0.2, random_state=1)
    b = strong_generalization(data, heldout_users=0.2, random_state=1)
    c = strong_generalization(data, heldout_users=0.2, random_state=2)
    assert a.test.target.to_frame().equals(b.test.target.to_frame())
    assert not a.test.target.to_frame().equals(c.test.target.to_frame())
    assert a.report["test_users"] == a.report["validation_users"] == 12  # 20% of 60 users each
    train_users = set(np.unique(a.train.user_idx))
    for part in (a.test, a.validation):
        assert not train_users & set(np.unique(part.fold_in.user_idx))
    assert not set(np.unique(a.test.fold_in.user_idx)) & set(np.unique(a.validation.fold_in.user_idx))
    no_val = strong_generalization(data, heldout_users=5, validation=False)
    assert no_val.validation is None and no_val.report["test_users"] == 5


def test_split_refuses_bad_arguments():
    data = hand_data()
    with pytest.raises(ConfigError, match="fold_in"):
        strong_generalization(data, heldout_users=1, fold_in=1.0)
    with pytest.raises(ConfigError, match="heldout_users"):
        strong_generalization(data, heldout_users=1.5)
    with pytest.raises(DataError, match="lower heldout_users"):
        strong_generalization(data, heldout_users=3)  # 2 x 3 held out, but only 4 users are eligible


# ------------------------------------------------------------------ the capped recall


def test_recall_capped_known_answers():
    # user 0: 5 relevant, list [0, 9]: 1 hit in 2 -> Liang's recall 1/min(2, 5) = 0.5 (plain recall 0.2)
    # user 1: 1 relevant, list [3, 4]: 1 hit -> 1/min(2, 1) = 1
    # user 2: nothing relevant -> 0
    rec = np.array([[0, 9], [3, 4], [1, 2]])
    rel = sp.csr_matrix(([1.0] * 6, ([0, 0, 0, 0, 0, 1], [0, 1, 2, 3, 4, 4])), shape=(3, 10))
    np.testing.assert_allclose(M.recall_capped_at_k(rec, rel), [0.5, 1.0, 0.0])
    np.testing.assert_allclose(M.recall_at_k(rec, rel), [0.2, 1.0, 0.0])
    np.testing.assert_allclose(M.recall_capped_at_k(rec, rel, k=1), [1.0, 0.0, 0.0])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 8))
def test_recall_capped_matches_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    n_users, n_items = int(rng.integers(1, 6)), int(rng.integers(1, 12))
    rec = np.full((n_users, k), -1, np.int64)
    for u in range(n_users):
        length = int(rng.integers(0, min(k, n_items) + 1))
        rec[u, :length] = rng.permutation(n_items)[:length]
    dense = rng.random((n_users, n_items)) < rng.random()
    want = []
    for u in range(n_users):
        relevant = set(np.flatnonzero(dense[u]).tolist())
        hits = sum(int(i) in relevant for i in rec[u] if i >= 0)
        want.append(hits / min(k, len(relevant)) if relevant else 0.0)
    got = M.recall_capped_at_k(rec, sp.csr_matrix(dense.astype(np.float32)), k)
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ------------------------------------------------------------------ the fold-in evaluation


class LowestIndexFirst(Recommender):
    """A stand-in that ranks items by their index whatever the history (so lists are known)."""

    supports_history = True

    def _fit(self, data):
        pass

    def _score_history(self, item_idx, values):
        return -np.arange(self.n_items, dtype=np.float32)


def hand_fold_in() -> tuple[tb.Interactions, FoldIn]:
    """Training user t has every item; held-out users A, B, C are folded in.

    A: history {i0, i1}, targets {i2, i5} -> list [i2, i3, i4, i5, ...]: hits at ranks 1 and 4.
    B: history {i0}, target {i7} -> list [i1, ..., i7]: the hit at rank 7.
    C: history {i3}, no target: not evaluated.
    """
    items = [f"i{j}" for j in range(8)]

    def frame(pairs):
        return pd.DataFrame(pairs, columns=["user", "item"])

    full = tb.Interactions.from_frame(frame([("t", i) for i in items] + [("A", "i0"), ("B", "i0"), ("C", "i0")]))
    vocab = {"users": full.users, "items": full.items}
    fold_in = tb.Interactions.from_frame(frame([("A", "i0"), ("A", "i1"), ("B", "i0"), ("C", "i3")]), **vocab)
    target = tb.Interactions.from_frame(frame([("A", "i2"), ("A", "i5"), ("B", "i7")]), **vocab)
    train = full.subset(np.arange(len(items)))
    return train, FoldIn(fold_in, target, "hand")


def test_evaluate_fold_in_known_answers():
    train, part = hand_fold_in()
    model = LowestIndexFirst().fit(train)
    got = evaluate_fold_in(model, part, ["ndcg@2", "recall_capped@2", "recall_capped@4", "recall@4", "hit_rate@6"])
    log2 = math.log2
    ndcg_a = 1 / (1 + 1 / log2(3))  # hit at rank 1 of 2, two targets
    ndcg_b = 0.0
    assert got["users"] == 2
    assert got["ndcg@2"] == pytest.approx((ndcg_a + ndcg_b) / 2)
    assert got["recall_capped@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert got["recall_capped@4"] == pytest.approx((2 / 2 + 0) / 2)
    assert got["recall@4"] == pytest.approx((1.0 + 0) / 2)
    assert got["hit_rate@6"] == pytest.approx((1 + 0) / 2)  # B's hit is at rank 7


def test_evaluate_fold_in_needs_history_support_and_good_labels():
    train, part = hand_fold_in()

    class NoHistory(LowestIndexFirst):
        supports_history = False

    with pytest.raises(NotSupportedError, match="supports_history"):
        evaluate_fold_in(NoHistory().fit(train), part)
    with pytest.raises(ConfigError, match="NAME@K"):
        evaluate_fold_in(LowestIndexFirst().fit(train), part, ["ndcg"])


def test_evaluate_takes_a_strong_split():
    data = generate(n_users=60, n_items=40, n_interactions=1500, explicit=False, random_state=0)
    split = strong_generalization(data, heldout_users=10, random_state=0)
    table = tb.evaluate({"ease": tb.get_model("ease")(reg=50.0)}, split, k=20, metrics=("ndcg", "recall_capped"))
    assert table.loc[0, "users"] == split.report["test_users"]
    direct = evaluate_fold_in(tb.get_model("ease")(reg=50.0).fit(split.train), split.test, ["ndcg@20"])
    assert table.loc[0, "ndcg@20"] == pytest.approx(direct["ndcg@20"])
    assert 0 < table.loc[0, "recall_capped@20"] <= 1
    with pytest.raises(NotSupportedError, match="bpr"):
        tb.evaluate({"bpr": tb.get_model("bpr")()}, split)
