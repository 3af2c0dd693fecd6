"""Property-based tests (hypothesis) for the loaders and Interactions: whatever the bytes, a clear
DataError or a correct result; never a crash, never a silently dropped row."""

from __future__ import annotations

import atexit
import csv
import io
import json
import math
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rhelpers import record

from tastebud.core.errors import DataError
from tastebud.data.interactions import Interactions

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
TMP = Path(tempfile.mkdtemp(prefix="tastebud-props-"))
atexit.register(shutil.rmtree, TMP, True)
COUNT = {"cases": 0}


@pytest.fixture(scope="module", autouse=True)
def _tally():
    yield
    record(property_cases=COUNT["cases"])


def _write(name: str, payload: bytes) -> Path:
    path = TMP / name
    path.write_bytes(payload)
    return path


def _check_counts(inter: Interactions, n_rows: int) -> None:
    """Row counts add up: every row read is kept, and the matrix holds every distinct pair."""
    assert inter.summary.rows_read == n_rows == len(inter) == inter.summary.rows_kept
    pairs = len(set(zip(inter.user_idx.tolist(), inter.item_idx.tolist(), strict=True)))
    assert inter.matrix.nnz <= pairs  # explicit zeros may be dropped, nothing else
    assert inter.summary.duplicate_pairs == n_rows - pairs
    assert inter.user_idx.min() >= 0 and inter.user_idx.max() < inter.n_users
    assert inter.item_idx.min() >= 0 and inter.item_idx.max() < inter.n_items


# ---------------------------------------------------------------------------- arbitrary bytes
@SETTINGS
@given(payload=st.binary(max_size=400), rating=st.booleans(), ext=st.sampled_from(["csv", "tsv", "jsonl", "csv.gz"]))
def test_arbitrary_bytes_give_a_data_error_or_a_consistent_result(payload, rating, ext):
    COUNT["cases"] += 1
    path = _write(f"arb.{ext}", payload)
    try:
        inter = Interactions.from_file(path, rating="rating" if rating else None)
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return
    n_lines = payload.count(b"\n") + 1
    assert 0 < len(inter) <= n_lines
    _check_counts(inter, inter.summary.rows_read)


@SETTINGS
@given(
    rows=st.lists(
        st.lists(st.one_of(st.text(max_size=6), st.integers(), st.floats(allow_nan=True)), min_size=1, max_size=4),
        max_size=12,
    )
)
def test_ragged_and_mixed_csv_rows(rows):
    COUNT["cases"] += 1
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["user", "item", "rating"])
    for r in rows:
        writer.writerow(r)
    text = buf.getvalue().replace("\x00", "")
    path = _write("ragged.csv", text.encode("utf-8", "surrogatepass"))
    try:
        inter = Interactions.from_file(path, rating="rating")
    except DataError as exc:
        assert str(exc)
        return
    # a line holding one empty field is a blank line (skipped by rule, like an empty line); every other row counts
    blank = sum(1 for r in rows if len(r) == 1 and not str(r[0]).replace("\x00", "").strip())
    _check_counts(inter, len(rows) - blank)


# ---------------------------------------------------------------------------- well-formed files, exact answers
def _id_text():
    # ids as they survive a text file: no NUL, no surrogates, no leading / trailing whitespace
    return (
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12
        )
        .map(str.strip)
        .filter(bool)
    )


IDS = st.one_of(_id_text(), st.integers(min_value=-(10**30), max_value=10**30))


def _expected_ids(values: list) -> list:
    """How a text column comes back: int64 when every value is a plain integer, else text."""
    text = [str(v) for v in values]
    if all(_INT.fullmatch(t) for t in text):
        return [int(t) for t in text]
    return text


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(IDS, IDS, st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: round(x, 3))),
        min_size=1,
        max_size=25,
    ),
    fmt=st.sampled_from(["csv", "tsv", "jsonl"]),
)
def test_unicode_and_huge_ids_round_trip_with_every_row_kept(rows, fmt):
    COUNT["cases"] += 1
    if fmt == "jsonl":
        payload = "".join(json.dumps({"user": str(u), "item": str(i), "rating": r}) + "\n" for u, i, r in rows)
        path = _write("ids.jsonl", payload.encode())
    else:
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",")
        writer.writerow(["user", "item", "rating"])
        writer.writerows([(str(u), str(i), repr(r)) for u, i, r in rows])
        path = _write(f"ids.{fmt}", buf.getvalue().encode())
    inter = Interactions.from_file(path, rating="rating")
    _check_counts(inter, len(rows))
    if fmt == "jsonl":  # JSON keeps strings as strings
        users = [str(u) for u, _, _ in rows]
        items = [str(i) for _, i, _ in rows]
    else:
        users = _expected_ids([u for u, _, _ in rows])
        items = _expected_ids([i for _, i, _ in rows])
    got_users = [inter.users.ids[k] for k in inter.user_idx]
    got_items = [inter.items.ids[k] for k in inter.item_idx]
    assert [v.item() if hasattr(v, "item") else v for v in got_users] == users
    assert [v.item() if hasattr(v, "item") else v for v in got_items] == items
    np.testing.assert_allclose(inter.values, [r for _, _, r in rows])
    # the matrix keeps the last rating of each (user, item) pair (duplicates="last")
    last = {}
    for u, i, r in zip(users, items, [r for _, _, r in rows], strict=True):
        last[(u, i)] = r
    m = inter.matrix.toarray()
    for (u, i), r in last.items():
        assert m[inter.users.lookup([u])[0], inter.items.lookup([i])[0]] == pytest.approx(r, rel=1e-6, abs=1e-6)


@SETTINGS
@given(
    good=st.lists(st.floats(min_value=1, max_value=5), min_size=1, max_size=10),
    bad=st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "", "five", "1e999", "0x10", "None"]),
    pos=st.integers(min_value=0, max_value=10),
)
def test_non_finite_or_non_numeric_ratings_are_a_data_error_naming_the_line(good, bad, pos):
    COUNT["cases"] += 1
    values = [repr(v) for v in good]
    pos = min(pos, len(values))
    values.insert(pos, bad)
    lines = ["user,item,rating"] + [f"u{j},i{j},{v}" for j, v in enumerate(values)]
    path = _write("bad.csv", ("\n".join(lines) + "\n").encode())
    with pytest.raises(DataError) as err:
        Interactions.from_file(path, rating="rating")
    assert "rating" in str(err.value) and f"line {pos + 2}" in str(err.value)


@SETTINGS
@given(
    users=st.lists(
        st.one_of(st.integers(), st.text(max_size=5), st.floats(), st.none(), st.booleans()), min_size=1, max_size=15
    ),
    ratings=st.one_of(st.none(), st.lists(st.floats(), min_size=15, max_size=15)),
)
@example(users=[1, 2], ratings=[1.0] + [1e300] * 14)  # finite in float64, inf in float32: found by this test
def test_from_frame_with_mixed_types_errors_or_keeps_every_row(users, ratings):
    COUNT["cases"] += 1
    n = len(users)
    frame = pd.DataFrame({"user": pd.Series(users, dtype=object), "item": [f"i{j % 4}" for j in range(n)]})
    if ratings is not None:
        frame["rating"] = ratings[:n]
    try:
        inter = Interactions.from_frame(frame, rating="rating" if ratings is not None else None)
    except DataError as exc:
        assert str(exc)
        return
    _check_counts(inter, n)
    if inter.values is not None:
        assert np.isfinite(inter.values).all(), "a non-finite rating got in"
    assert not any(u is None or (isinstance(u, float) and math.isnan(u)) for u in inter.users.ids.tolist())


@pytest.mark.parametrize(
    "name,payload",
    [
        ("empty.csv", b""),
        ("blank.csv", b"\n\n  \n"),
        ("header.csv", b"user,item,rating\n"),
        ("empty.jsonl", b""),
        ("empty.csv.gz", b""),
        ("bom.csv", b"\xef\xbb\xbf"),
        ("latin1.csv", "user,item\nJos\xe9,1\n".encode("latin-1")),
    ],
)
def test_empty_and_undecodable_files_are_a_data_error(name, payload):
    path = _write(name, payload)
    with pytest.raises(DataError, match=re.escape(str(path))):
        Interactions.from_file(path)


def test_interactions_from_frame_exact_small_case():
    frame = pd.DataFrame({"user": ["ü", "ü", "😀", "ü"], "item": [10**20, 1, 1, 10**20], "r": [1.0, 2.0, 3.0, 4.0]})
    frame["item"] = frame["item"].astype(object)
    inter = Interactions.from_frame(frame, rating="r")
    assert len(inter) == 4 and inter.summary.duplicate_pairs == 1
    m = inter.matrix.toarray()
    assert m[inter.users.lookup(["ü"])[0], inter.items.lookup([10**20])[0]] == 4.0  # last wins
    assert m.sum() == 4.0 + 2.0 + 3.0
