"""Shared plumbing for the benchmark scripts: data location, timing, and BENCHMARKS.md sections.

Each script owns one section of BENCHMARKS.md (between ``<!-- begin:NAME -->`` and
``<!-- end:NAME -->``) and rewrites only that section, so scripts can run in any order.
"""

from __future__ import annotations

import fcntl
import os
import platform
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tastebud.eval.report import markdown_table  # noqa: F401  (re-exported for the scripts)

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TASTEBUD_DATA", str((REPO.parent / "shared" / "data").resolve()))
DATA = Path(os.environ["TASTEBUD_DATA"])
BENCHMARKS_MD = REPO / "BENCHMARKS.md"


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    """``with timer() as t: ...`` then ``t["s"]`` holds the wall seconds."""
    out: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["s"] = time.perf_counter() - start


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of BENCHMARKS.md, under a file lock."""
    BENCHMARKS_MD.touch(exist_ok=True)
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    block = f"{begin}\n{body.strip()}\n\n_Measured {time.strftime('%Y-%m-%d')} on {machine()}._\n{end}"
    with open(BENCHMARKS_MD, "r+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        text = fh.read()
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            text = head + block + tail
        else:
            if not text.strip():
                text = "# Benchmarks\n\nEvery table is written by a script in `benchmarks/`; each runs tastebud and its peers side by side on the same split in one process.\n"
            text = text.rstrip() + "\n\n" + block + "\n"
        tmp = BENCHMARKS_MD.with_suffix(".md.tmp")
        tmp.write_text(text, encoding="utf-8")
        with open(tmp, "rb") as t:
            os.fsync(t.fileno())
        os.replace(tmp, BENCHMARKS_MD)
