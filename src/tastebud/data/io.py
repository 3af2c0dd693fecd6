"""Reading tables from CSV / TSV, Parquet and JSON-lines with errors that name file and line."""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from tastebud.core.errors import DataError


def read_table(path: str | os.PathLike[str], sep: str | None = None) -> tuple[pd.DataFrame, int | None]:
    """Read a table; returns (frame, line offset) where offset turns row positions into file lines
    (``None`` for Parquet, which has rows but no lines). Text files may be gzipped (``.gz``).

    Every value is read as text first, so a non-numeric value is reported by ``from_frame`` with
    its line number instead of turning a whole column into strings or NaN. Columns whose every
    value is a plain integer (``"7"``, not ``"007"`` or ``"7.0"``) become int64, so integer ids in
    a CSV are the same ids as in a DataFrame.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a file")
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith((".parquet", ".pq")):
        try:
            return pd.read_parquet(path), None
        except Exception as exc:  # pyarrow raises many types
            raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    if suffixes.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
        return _read_jsonl(path), 1
    return _read_delimited(path, sep), 2


def _open_text(path: Path, newline: str | None = None) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline=newline)
    return open(path, encoding="utf-8", newline=newline)


_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")


def _integers(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns holding only plain integers become int64 (ids, timestamps, integer ratings)."""
    for col in frame.columns:
        values = frame[col]
        if values.dtype != object and not pd.api.types.is_string_dtype(values):
            continue
        text = values.astype(str)
        if len(text) and text.str.fullmatch(_INT.pattern).all():
            frame[col] = text.astype(np.int64)
    return frame


def _read_delimited(path: Path, sep: str | None) -> pd.DataFrame:
    try:
        with _open_text(path, newline="") as fh:
            head = fh.read(65536)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, EOFError) as exc:  # a truncated or fake .gz
        raise DataError(f"{path}: cannot read ({exc})") from None
    if not head.strip():
        raise DataError(f"{path}: the file is empty")
    if sep is None:
        first = head.splitlines()[0]
        sep = "\t" if "\t" in first else ("," if "," in first else (";" if ";" in first else ","))
    expected = None
    try:
        with _open_text(path, newline="") as fh:
            reader = csv.reader(fh, delimiter=sep)
            rows = []
            for line_no, row in enumerate(reader, start=1):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if expected is None:
                    expected = len(row)
                    header = [h.strip() for h in row]
                    if len(set(header)) != len(header):
                        raise DataError(f"{path}: line 1: duplicate column names in header")
                    continue
                if len(row) != expected:
                    raise DataError(f"{path}: line {line_no}: expected {expected} fields, found {len(row)}")
                rows.append((line_no, row))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: header only, no data rows")
    frame = pd.DataFrame([r for _, r in rows], columns=header, dtype=object)
    # line numbers are not contiguous when blank lines were skipped: keep the exact map
    frame.attrs["lines"] = [n for n, _ in rows]
    for col in frame.columns:
        frame[col] = frame[col].str.strip()
    return _integers(frame)


def _read_jsonl(path: Path) -> pd.DataFrame:
    records = []
    lines: list[int] = []
    try:
        with _open_text(path) as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}: line {line_no}: invalid JSON ({exc.msg})") from None
                if not isinstance(rec, dict):
                    raise DataError(f"{path}: line {line_no}: expected a JSON object")
                records.append(rec)
                lines.append(line_no)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except (OSError, EOFError) as exc:  # a truncated or fake .gz
        raise DataError(f"{path}: cannot read ({exc})") from None
    if not records:
        raise DataError(f"{path}: the file is empty")
    frame = pd.DataFrame.from_records(records)
    frame.attrs["lines"] = lines
    return frame


# Column names read as ratings when a file is given without saying which column holds them.
RATING_COLUMNS = ("rating", "score")


def detect_rating_column(columns: list[str] | pd.Index) -> str | None:
    """The column that most likely holds ratings (``rating`` or ``score``, any case), or None.

    A file with a ``rating`` column read as implicit feedback silently throws the ratings away;
    the command line uses this to read them unless told otherwise."""
    by_lower = {str(c).strip().lower(): str(c) for c in columns}
    return next((by_lower[name] for name in RATING_COLUMNS if name in by_lower), None)


def item_features_path(path: str | os.PathLike[str]) -> Path:
    """Where the item features of an interactions file live: ``ratings.csv`` -> ``ratings.items.parquet``.

    Parquet whatever the interactions' format, so list columns (genres, people) stay lists."""
    path = Path(path)
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    return path.with_name(f"{name.rsplit('.', 1)[0] if '.' in name else name}.items.parquet")


def read_item_features(path: str | os.PathLike[str], item: str = "item") -> pd.DataFrame:
    """An item feature table (CSV / TSV, Parquet or JSON-lines) indexed by its ``item`` column."""
    frame, _ = read_table(path)
    if item not in frame.columns:
        raise DataError(f"{path}: no '{item}' column; columns present: {', '.join(map(str, frame.columns))}")
    if frame[item].duplicated().any():
        raise DataError(f"{path}: item {frame[item][frame[item].duplicated()].iloc[0]!r} appears twice")
    return frame.set_index(item)
