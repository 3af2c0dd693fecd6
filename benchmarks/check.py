"""List the BENCHMARKS.md sections that no longer describe the code (``make bench-check``).

Each section records the commit it measured and the paths it measures
(``<!-- measured: commit=SHA paths=a,b -->``, written by ``common.write_section``). A section is
stale when it records no commit, when it was measured with uncommitted changes (``+dirty``), when
its commit is not in this clone's history, or when any measured path changed between that commit
and HEAD. Exit status 0 when every section is current, 1 otherwise (each stale section on a line).

    python benchmarks/check.py [--file BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_SECTION = re.compile(r"<!-- begin:(?P<name>[\w.-]+) -->(?P<body>.*?)<!-- end:(?P=name) -->", re.S)
_STAMP = re.compile(r"<!-- measured: commit=(?P<commit>\S+) paths=(?P<paths>\S*) -->")


@dataclass
class Verdict:
    section: str
    stale: bool
    why: str


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def check_section(name: str, body: str, repo: Path = REPO) -> Verdict:
    """Whether one section's figures still describe HEAD's code, and why not."""
    stamp = _STAMP.search(body)
    if stamp is None:
        return Verdict(name, True, "records no commit (written before sections were stamped); rerun its script")
    commit, paths = stamp["commit"], [p for p in stamp["paths"].split(",") if p]
    if commit.endswith("+dirty"):
        return Verdict(name, True, f"measured with uncommitted changes on {commit[:12]}; commit, then rerun")
    if _git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        return Verdict(name, True, f"commit {commit[:12]} is not in this clone's history")
    if not paths:
        return Verdict(name, True, "records no measured paths")
    changed = _git(repo, "diff", "--name-only", commit, "HEAD", "--", *paths)
    if changed.returncode != 0:
        return Verdict(name, True, f"git diff failed: {changed.stderr.strip()}")
    files = changed.stdout.split()
    if files:
        shown = ", ".join(files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")
        return Verdict(name, True, f"measured code changed since {commit[:12]}: {shown}")
    return Verdict(name, False, f"current (measured at {commit[:12]})")


def check(text: str, repo: Path = REPO) -> list[Verdict]:
    """A verdict for every section of a BENCHMARKS.md text, in order."""
    return [check_section(m["name"], m["body"], repo) for m in _SECTION.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    try:
        text = args.file.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"bench-check: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    verdicts = check(text)
    stale = [v for v in verdicts if v.stale]
    for v in verdicts:
        print(f"{'STALE' if v.stale else 'ok   '} {v.section}: {v.why}")
    print(f"{len(stale)} of {len(verdicts)} sections stale")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
