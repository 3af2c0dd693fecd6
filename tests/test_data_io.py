"""Reading interactions from files: every format, and errors that name the file and the line."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from tastebud.core.errors import DataError
from tastebud.data.interactions import Interactions
from tastebud.data.io import read_table

CSV = "user,item,rating,timestamp\nu1,i1,4,100\nu1,i2,5,200\nu2,i1,3,150\n"


def load(path, **kw):
    kw.setdefault("rating", "rating")
    kw.setdefault("time", "timestamp")
    return Interactions.from_file(path, "user", "item", **kw)


def check(d: Interactions) -> None:
    assert (len(d), d.n_users, d.n_items) == (3, 2, 2)
    f = d.to_frame()
    assert list(f["user"]) == ["u1", "u1", "u2"] and list(f["item"]) == ["i1", "i2", "i1"]
    np.testing.assert_array_equal(d.values, [4, 5, 3])
    np.testing.assert_array_equal(d.timestamps, [100, 200, 150])


def test_csv_tsv_semicolon(tmp_path):
    (tmp_path / "a.csv").write_text(CSV)
    (tmp_path / "a.tsv").write_text(CSV.replace(",", "\t"))
    (tmp_path / "a.txt").write_text(CSV.replace(",", ";"))
    for name in ("a.csv", "a.tsv", "a.txt"):
        check(load(tmp_path / name))
    (tmp_path / "b.csv").write_text(CSV.replace(",", "|"))
    check(load(tmp_path / "b.csv", sep="|"))


def test_csv_with_crlf_blank_lines_and_spaces(tmp_path):
    text = "user, item ,rating,timestamp\r\nu1, i1,4,100\r\n\r\nu1,i2 , 5,200\r\nu2,i1,3,150\r\n"
    (tmp_path / "a.csv").write_text(text, newline="")
    check(load(tmp_path / "a.csv"))


def test_parquet_and_jsonl(tmp_path):
    frame = pd.DataFrame(
        {
            "user": ["u1", "u1", "u2"],
            "item": ["i1", "i2", "i1"],
            "rating": [4.0, 5.0, 3.0],
            "timestamp": [100, 200, 150],
        }
    )
    frame.to_parquet(tmp_path / "a.parquet")
    check(load(tmp_path / "a.parquet"))
    lines = [json.dumps(r) for r in frame.to_dict("records")]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    check(load(tmp_path / "a.jsonl"))
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as fh:
        fh.write("\n".join(lines))
    check(load(tmp_path / "a.jsonl.gz"))


def test_implicit_file_without_rating(tmp_path):
    (tmp_path / "a.csv").write_text("user,item\n1,10\n1,11\n2,10\n")
    d = Interactions.from_file(tmp_path / "a.csv", "user", "item")
    assert not d.explicit and (d.values == 1).all() and d.users.is_int
    assert d.users.lookup([1, "2"]).tolist() == [0, 1]


@pytest.mark.parametrize(
    "text, match",
    [
        (
            "user,item,rating,timestamp\nu1,i1,4,100\nu1,i2,five,200\n",
            r"a\.csv: line 3: column 'rating' needs a finite number, got 'five'",
        ),
        ("user,item,rating,timestamp\nu1,i1,4,100\nu1,i2,nan,200\n", r"line 3: column 'rating' needs a finite number"),
        ("user,item,rating,timestamp\nu1,i1,inf,100\n", r"line 2: column 'rating' needs a finite number"),
        ("user,item,rating,timestamp\nu1,i1,4,100\nu1,i2,,200\n", r"line 3: column 'rating' needs a finite number"),
        ("user,item,rating,timestamp\nu1,i1,4,100\n\n\nu1,i2,4\n", r"line 5: expected 4 fields, found 3"),
        ("user,item,rating,timestamp\nu1,i1,4,100\n,i2,4,100\n", r"line 3: empty value in column 'user'"),
        (
            "user,item,rating,timestamp\nu1,i1,4,100\nu2,i2,4,later\n",
            r"line 3: column 'timestamp' needs a finite number",
        ),
        (
            "user,item,rating,timestamp\nu1,i1,7,100\n",
            r"line 2: rating 7 in column 'rating' is outside the declared scale 1..5",
        ),
        ("user,item,timestamp\nu1,i1,100\n", r"missing column\(s\) 'rating' \(rating\)"),
        ("user,item,rating,timestamp\n", r"header only, no data rows"),
        ("", r"the file is empty"),
        ("user,user,rating\n1,2,3\n", r"line 1: duplicate column names"),
    ],
)
def test_bad_csv_named_by_file_and_line(tmp_path, text, match):
    (tmp_path / "a.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        load(tmp_path / "a.csv", scale=(1, 5))


def test_bad_jsonl_lines(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"user": "u1", "item": "i1", "rating": 4, "timestamp": 1}\n\n{"user": "u2", "item": \n')
    with pytest.raises(DataError, match=r"a\.jsonl: line 3: invalid JSON"):
        load(f)
    f.write_text('{"user": "u1", "item": "i1", "rating": 4, "timestamp": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"line 2: expected a JSON object"):
        load(f)
    f.write_text(
        '{"user": "u1", "item": "i1", "rating": 4, "timestamp": 1}\n\n{"user": "u2", "item": "i1", "rating": "x", "timestamp": 2}\n'
    )
    with pytest.raises(DataError, match=r"line 3: column 'rating' needs a finite number, got 'x'"):
        load(f)
    f.write_text(
        '{"user": "u1", "item": "i1", "rating": 4, "timestamp": 1}\n{"user": "u2", "rating": 3, "timestamp": 2}\n'
    )
    with pytest.raises(DataError, match=r"line 2: empty value in column 'item'"):
        load(f)


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="is a folder"):
        load(tmp_path)
    (tmp_path / "a.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load(tmp_path / "a.parquet")
    (tmp_path / "l.csv").write_bytes("user,item\nus\xe9r,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        Interactions.from_file(tmp_path / "l.csv")


def test_parquet_errors_name_rows(tmp_path):
    pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "rating": [4.0, float("nan")]}).to_parquet(
        tmp_path / "a.parquet"
    )
    with pytest.raises(DataError, match=r"a\.parquet: row 1: column 'rating' needs a finite number"):
        Interactions.from_file(tmp_path / "a.parquet", rating="rating")


def test_read_table_keeps_text_until_validation(tmp_path):
    (tmp_path / "a.csv").write_text("user,item\n007,1\n7,2\n")
    frame, offset = read_table(tmp_path / "a.csv")
    assert offset == 2 and list(frame["user"]) == ["007", "7"] and frame.attrs["lines"] == [2, 3]


@pytest.mark.parametrize("policy, expected", [("last", 2.0), ("sum", 7.0), ("mean", 3.5)])
def test_duplicates_in_a_file(tmp_path, policy, expected):
    (tmp_path / "a.csv").write_text("user,item,rating,timestamp\nu1,i1,5,300\nu1,i1,2,400\nu2,i1,3,100\n")
    d = load(tmp_path / "a.csv", duplicates=policy)
    assert d.summary.duplicate_pairs == 1 and d.summary.duplicate_policy == policy
    assert d.summary.rows_read == d.summary.rows_kept == 3 and len(d) == 3
    assert d.matrix.nnz == 2 and d.matrix[0, 0] == pytest.approx(expected)
    assert d.info()["duplicate_pairs"] == 1
    with pytest.raises(DataError, match="1 duplicate"):
        load(tmp_path / "a.csv", duplicates="error")
