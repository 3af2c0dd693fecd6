"""Shared plumbing for the benchmark scripts: data location, timing, and BENCHMARKS.md sections.

Each script owns one section of BENCHMARKS.md (between ``<!-- begin:NAME -->`` and
``<!-- end:NAME -->``) and rewrites only that section, so scripts can run in any order.

Every section records the commit it measured and the source paths it measures
(``<!-- measured: commit=... paths=... -->``); ``benchmarks/check.py`` (``make bench-check``) lists
the sections whose measured code changed since, so no table outlives the code it describes.

Timings follow one protocol (:func:`interleave`): the sides run in turn, A B A B ..., after a
warm-up that is timed and reported on its own row and excluded from the rest; at least five pairs;
the median with min-max of wall and CPU seconds, with each side's thread count stated.
"""

from __future__ import annotations

import fcntl
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


# What every section measures besides its own script and model files: the shared layers a change
# to which can move any figure (ranking, evaluation, data loading and splits).
COMMON_PATHS = (
    "benchmarks/common.py",
    "src/tastebud/core",
    "src/tastebud/eval",
    "src/tastebud/data",
    "src/tastebud/kernels/topk.py",  # the engine of core/ranking.py
)


def git(*args: str) -> str:
    """Output of a git command in the repository ('' when git or the repository is unavailable)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.stdout.strip()


def measured_commit(paths: Sequence[str]) -> str:
    """The commit the code was at when this script started, with ``+dirty`` when any measured path
    differed from it then, or when HEAD has moved since (a long run must not stamp a later commit)."""
    head = git("rev-parse", "HEAD") or "unknown"
    if head == "unknown":
        return head
    if (
        head != _START_HEAD
        or git("status", "--porcelain", "--", *paths)
        or any(p == "." or any(d == p or d.startswith(p.rstrip("/") + "/") for d in _START_DIRTY) for p in paths)
    ):
        return _START_HEAD + "+dirty"
    return head


# What the repository looked like when this script started: the code a run measures.
_START_HEAD = git("rev-parse", "HEAD") or "unknown"
_START_DIRTY = [line[3:] for line in git("status", "--porcelain").splitlines()]


def section_paths(script: str, measures: Sequence[str]) -> list[str]:
    """The repository paths a section measures: the script, its models, and :data:`COMMON_PATHS`."""
    own = os.path.relpath(Path(script).resolve(), REPO)
    return sorted({own, *COMMON_PATHS, *measures})


def write_section(name: str, body: str, measures: Sequence[str] = (), script: str | None = None) -> None:
    """Replace (or append) the section ``name`` of BENCHMARKS.md, under a file lock.

    ``measures`` lists the repository paths (files or folders) whose code the section measures,
    beyond the calling script and :data:`COMMON_PATHS`; the section records them with the commit.
    """
    BENCHMARKS_MD.touch(exist_ok=True)
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    paths = section_paths(script or sys.argv[0], measures)
    commit = measured_commit(paths)
    stamp = f"<!-- measured: commit={commit} paths={','.join(paths)} -->"
    block = (
        f"{begin}\n{stamp}\n{body.strip()}\n\n"
        f"_Measured {time.strftime('%Y-%m-%d')} at commit {commit[:12]} on {machine()}._\n{end}"
    )
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


# ---------------------------------------------------------------------------- timing protocol
@dataclass
class Timing:
    """Wall and CPU seconds of one side: the warm-up apart, then one entry per counted run."""

    threads: str
    warmup_wall: list[float] = field(default_factory=list)
    warmup_cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)


def cpu_seconds() -> float:
    """User + system CPU of this process (every thread) and of its finished children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def interleave(sides: dict[str, tuple[Callable[[], Any], str]], pairs: int = 5, warmup: int = 1) -> dict[str, Timing]:
    """Run each side ``warmup`` times, then ``pairs`` rounds in turn (A B A B ...).

    ``sides`` maps a label to ``(run, threads)``: ``run()`` does the timed work (its return value is
    kept in ``results``), ``threads`` says how many threads that side uses, for the table. The
    warm-up (compilation, caches) is timed and kept apart, never mixed into the counted runs.
    """
    if pairs < 1:
        raise ValueError("pairs must be >= 1")
    out = {label: Timing(threads) for label, (_, threads) in sides.items()}
    for phase, rounds in (("warmup", warmup), ("count", pairs)):
        for _ in range(rounds):
            for label, (run, _) in sides.items():
                c0, w0 = cpu_seconds(), time.perf_counter()
                result = run()
                wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
                t = out[label]
                if phase == "warmup":
                    t.warmup_wall.append(wall)
                    t.warmup_cpu.append(cpu)
                else:
                    t.wall.append(wall)
                    t.cpu.append(cpu)
                    t.results.append(result)
    return out


def spread(values: Sequence[float], digits: int = 2) -> str:
    """``median (min-max)`` of a list of numbers."""
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def timing_rows(timings: dict[str, Timing], baseline: str | None = None) -> list[dict[str, Any]]:
    """Table rows for :func:`interleave`'s result; ``baseline`` adds the per-pair ratio against that side."""
    rows = []
    for label, t in timings.items():
        row: dict[str, Any] = {
            "side": label,
            "threads": t.threads,
            "warm-up wall s": spread(t.warmup_wall),
            "wall s, median (min-max)": spread(t.wall),
            "CPU s, median (min-max)": spread(t.cpu),
            "runs": len(t.wall),
        }
        if baseline is not None:
            base = timings[baseline].wall
            ratios = [a / b for a, b in zip(t.wall, base, strict=False) if b > 0]
            row[f"wall / {baseline}, per pair"] = spread(ratios)
        rows.append(row)
    return rows


def thread_counts() -> str:
    """The thread pools this process runs with (BLAS, numba, torch), for a table's caption."""
    parts = []
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            parts.append(f"{pool.get('internal_api')} {pool.get('num_threads')}")
    except ImportError:
        pass
    try:
        import numba

        parts.append(f"numba {numba.get_num_threads()}")
    except ImportError:
        pass
    if "torch" in sys.modules:
        parts.append(f"torch {sys.modules['torch'].get_num_threads()}")
    return ", ".join(parts) or "unknown"
