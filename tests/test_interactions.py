"""`Interactions.from_frame`: validation with clear errors, duplicate policies, and properties that
must hold for any ids (hypothesis): counts add up and ids survive the round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tastebud.core.errors import DataError
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions

FAST = settings(max_examples=50, deadline=None)


def frame(**cols):
    base = {"user": ["a", "a", "b"], "item": ["x", "y", "x"], "rating": [4.0, 5.0, 3.0], "t": [1, 2, 3]}
    base.update(cols)
    return pd.DataFrame(base)


@pytest.mark.parametrize(
    "df, kw, match",
    [
        (
            frame(),
            {"rating": "stars"},
            r"missing column\(s\) 'stars' \(rating\); columns present: user, item, rating, t",
        ),
        (frame(), {"user": "who", "time": "when"}, r"'who' \(user\), 'when' \(time\)"),
        (frame().iloc[:0], {}, "no interactions"),
        (frame(rating=[4.0, float("nan"), 3.0]), {}, r"row 1: column 'rating' needs a finite number, got nan"),
        (frame(rating=[4.0, float("inf"), 3.0]), {}, r"row 1: column 'rating' needs a finite number, got inf"),
        (frame(rating=["4", "four", "3"]), {}, r"row 1: column 'rating' needs a finite number, got 'four'"),
        (frame(rating=[True, False, True]), {}, "must be numeric, got booleans"),
        (
            frame(rating=[4.0, 6.0, 3.0]),
            {"scale": (1, 5)},
            r"row 1: rating 6 in column 'rating' is outside the declared scale 1..5",
        ),
        (frame(rating=[0.0, 5.0, 3.0]), {"scale": (0.5, 5)}, r"row 0: rating 0 .* outside the declared scale 0.5..5"),
        (frame(user=["a", None, "b"]), {}, r"row 1: empty value in column 'user'"),
        (frame(item=["x", "  ", "y"]), {}, r"row 1: empty value in column 'item'"),
        (frame(t=[1, "later", 3]), {}, r"row 1: column 't' needs a finite number"),
        (frame(user=[1.5, 2.0, 3.0]), {}, "user ids must be integers or strings"),
        (frame(), {"duplicates": "first"}, "duplicates must be one of last, sum, mean, error"),
    ],
)
def test_validation_errors(df, kw, match):
    kw = {"rating": "rating", "time": "t", **kw}
    user = kw.pop("user", "user")
    with pytest.raises(DataError, match=match):
        Interactions.from_frame(df, user, "item", **kw)


def test_not_a_frame_and_line_offset():
    with pytest.raises(DataError, match="expected a pandas DataFrame, got dict"):
        Interactions.from_frame({"user": [1]})
    with pytest.raises(DataError, match=r"f.csv: line 3: column 'rating'"):
        Interactions.from_frame(frame(rating=[1, "x", 2]), rating="rating", source="f.csv", line_offset=2)


def test_datetime_timestamps():
    df = frame(t=pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"]))
    d = Interactions.from_frame(df, rating="rating", time="t")
    assert d.timestamps.tolist() == [1577836800, 1577923200, 1578009600]
    df.loc[1, "t"] = pd.NaT
    with pytest.raises(DataError, match=r"row 1: empty value in column 't'"):
        Interactions.from_frame(df, rating="rating", time="t")


@pytest.mark.parametrize(
    "policy, want",
    [
        ("last", {("a", "x"): 1.0, ("b", "x"): 3.0}),
        ("sum", {("a", "x"): 6.0, ("b", "x"): 3.0}),
        ("mean", {("a", "x"): 2.0, ("b", "x"): 3.0}),
    ],
)
def test_duplicate_policies(policy, want):
    # (a, x) three times; "last" means latest by time: t=9 carries 1.0 although it is not the last row
    df = pd.DataFrame(
        {"user": ["a", "a", "b", "a"], "item": ["x", "x", "x", "x"], "rating": [2.0, 1.0, 3.0, 3.0], "t": [5, 9, 1, 7]}
    )
    d = Interactions.from_frame(df, rating="rating", time="t", duplicates=policy)
    assert d.summary.duplicate_pairs == 2 and d.summary.duplicate_policy == policy
    assert len(d) == 4 and d.matrix.nnz == 2
    got = {(d.users.ids[u], d.items.ids[i]): d.matrix[u, i] for u, i in zip(*d.matrix.nonzero(), strict=False)}
    assert got == pytest.approx(want)
    with pytest.raises(DataError, match="2 duplicate"):
        Interactions.from_frame(df, rating="rating", time="t", duplicates="error")


def test_given_vocabulary():
    users, items = IdMap(["a", "b", "c"], "user"), IdMap(["x", "y", "z"], "item")
    d = Interactions.from_frame(frame(), rating="rating", users=users, items=items)
    assert d.n_users == 3 and d.n_items == 3 and d.users is users
    with pytest.raises(DataError, match=r"row 2: item id 'q' is not in the given vocabulary"):
        Interactions.from_frame(frame(item=["x", "y", "q"]), users=users, items=items)


def test_feature_tables_are_checked():
    with pytest.raises(DataError, match="duplicate item ids"):
        Interactions.from_frame(frame(), item_features=pd.DataFrame({"g": [1, 2]}, index=["x", "x"]))
    with pytest.raises(DataError, match="item_features is empty"):
        Interactions.from_frame(frame(), item_features=pd.DataFrame())


# ------------------------------------------------------------------------------ properties

ids_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=8
).filter(lambda s: s.strip() != "")
ids_int = st.integers(-(2**63), 2**63 - 1)
ids_huge = st.integers(2**63, 2**80)


@st.composite
def events(draw):
    kind = draw(st.sampled_from(["text", "int", "huge"]))
    pool_strategy = {"text": ids_text, "int": ids_int, "huge": ids_huge}[kind]
    users = draw(st.lists(pool_strategy, min_size=1, max_size=6, unique_by=str))
    items = draw(st.lists(pool_strategy, min_size=1, max_size=6, unique_by=str))
    n = draw(st.integers(1, 30))
    rows = draw(
        st.lists(
            st.tuples(st.sampled_from(users), st.sampled_from(items), st.integers(1, 5), st.integers(0, 10**9)),
            min_size=n,
            max_size=n,
        )
    )
    return pd.DataFrame(rows, columns=["user", "item", "rating", "t"]).astype({"user": object, "item": object})


@FAST
@given(df=events(), policy=st.sampled_from(["last", "sum", "mean"]))
def test_counts_add_up_and_ids_round_trip(df, policy):
    d = Interactions.from_frame(df, rating="rating", time="t", duplicates=policy)
    s = d.summary
    assert s.rows_read == s.rows_kept == len(df) == len(d)
    distinct = len({(str(u), str(i)) for u, i in zip(df["user"], df["item"], strict=False)})
    assert d.matrix.nnz + s.duplicate_pairs == len(df) and d.matrix.nnz == distinct
    # external ids come back exactly (text as text; integers as integers or, beyond int64, text)
    back = d.to_frame()
    for col in ("user", "item"):
        assert [str(v) for v in back[col]] == [str(v) for v in df[col]]
    vocab = d.users
    assert vocab.lookup(df["user"].tolist()).tolist() == d.user_idx.tolist()
    assert all(isinstance(v.item(), (str, int)) for v in vocab.ids[:3])
    # the matrix sums agree with the policy
    total = float(d.matrix.sum())
    if policy == "sum":
        assert total == pytest.approx(float(df["rating"].sum()))
    else:
        assert 1 * d.matrix.nnz <= total <= 5 * d.matrix.nnz


@FAST
@given(df=events())
def test_subset_keeps_vocabulary_and_counts(df):
    d = Interactions.from_frame(df, rating="rating", time="t")
    mask = np.arange(len(d)) % 2 == 0
    a, b = d.subset(mask), d.subset(~mask)
    assert a.users is d.users and b.items is d.items
    assert len(a) + len(b) == len(d)
    assert a.matrix.shape == b.matrix.shape == d.matrix.shape
