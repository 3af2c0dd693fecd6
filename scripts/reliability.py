"""`make reliability`: the fault, fuzz, property and security tests plus a short load run, bounded in
time and count, loopback only. Prints one table; exits non-zero if anything was lost, any 5xx was
seen, any request failed, or any test failed.

    .venv/bin/python scripts/reliability.py [--load-seconds 8] [--no-load]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_tests(log: Path, timeout: int) -> tuple[int, str]:
    env = dict(os.environ, TASTEBUD_RELIABILITY_LOG=str(log))
    env.setdefault("TASTEBUD_DATA", str((REPO.parent / "shared" / "data").resolve()))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/reliability"]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"tests/reliability did not finish within {timeout} s"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, "\n".join(lines[-25:] if proc.returncode else lines[-1:])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--load-seconds", type=int, default=8)
    ap.add_argument("--no-load", action="store_true")
    ap.add_argument("--timeout", type=int, default=600, help="Limit for the test run, in seconds.")
    args = ap.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tastebud-reliability-") as tmp:
        log = Path(tmp) / "counts.jsonl"
        rc, summary = run_tests(log, args.timeout)
        totals: dict[str, int] = {}
        if log.exists():
            for line in log.read_text().splitlines():
                for key, value in json.loads(line).items():
                    totals[key] = totals.get(key, 0) + value
        load = None
        if not args.no_load and not _wrk_at_hand():
            print("load run skipped: wrk is not installed (apt-get install wrk, or `make system-deps` as root)")
        elif not args.no_load:
            sys.path.insert(0, str(REPO / "benchmarks"))
            from bench_load import run_load

            load_dir = Path(tmp) / "load"
            load_dir.mkdir()
            load = run_load(load_dir, duration=args.load_seconds, connections=8, n_users=500, n_items=200,
                            n_interactions=8000)  # fmt: skip
    failed_tests = _failed_count(summary) if rc else 0
    events_acked = totals.get("events_acked", 0) + (load["events_stored"] if load else 0)
    events_lost = totals.get("events_lost", 0) + (load["events_lost"] if load else 0)
    sent = load["requests"] if load else 0
    failed = load["errors"] if load else 0
    rows = [
        ("faults injected / survived", totals.get("faults_injected", 0), totals.get("faults_survived", 0),
         totals.get("faults_injected", 0) != totals.get("faults_survived", 0) or not totals.get("faults_injected")),
        ("fuzz cases tried / 5xx found", totals.get("fuzz_cases", 0), totals.get("fuzz_5xx", 0),
         totals.get("fuzz_5xx", 0) > 0 or not totals.get("fuzz_cases")),
        ("events acknowledged / lost", events_acked, events_lost, events_lost > 0 or not events_acked),
        ("requests sent / failed", sent, failed, failed > 0 or (load is not None and sent == 0)),
        ("property cases tried / tests failed", totals.get("property_cases", 0), failed_tests, failed_tests > 0),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"\n{'check'.ljust(width)} | {'count':>8} | {'bad':>6} | verdict")
    print(f"{'-' * width}-|-{'-' * 8}-|-{'-' * 6}-|--------")
    for label, count, bad, wrong in rows:
        print(f"{label.ljust(width)} | {count:>8} | {bad:>6} | {'FAIL' if wrong else 'ok'}")
    ok = rc == 0 and not any(r[3] for r in rows)
    last = summary.splitlines()[-1] if summary else ""
    print(f"tests/reliability: {last}")
    if load:
        print(
            f"load: {load['rps']:.0f} requests/s, p50 {load['p50_ms']:.1f} ms, p95 {load['p95_ms']:.1f} ms, "
            f"p99 {load['p99_ms']:.1f} ms over {load['duration_s']:.0f} s with {load['reloads']} hot reloads "
            "(for information; BENCHMARKS.md has the full run)"
        )
    print(f"total {time.monotonic() - start:.0f} s")
    if rc:
        print(summary, file=sys.stderr)
    return 0 if ok else 1


def _wrk_at_hand() -> bool:
    """wrk is installed, or can be (root), or must be (TASTEBUD_REQUIRE_SYSTEM=1: bench_load then fails)."""
    return bool(shutil.which("wrk")) or os.geteuid() == 0 or os.environ.get("TASTEBUD_REQUIRE_SYSTEM") == "1"


def _failed_count(summary: str) -> int:
    import re

    m = re.search(r"(\d+) failed", summary)
    return int(m.group(1)) if m else 1


if __name__ == "__main__":
    raise SystemExit(main())
