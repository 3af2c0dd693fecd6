"""bench_dist's CPU count of child processes (a Ray side computes outside the driver)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmods import bench_fixture

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}:\n    pass\n"

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")


bench_dist = bench_fixture("bench_dist", requires="ray")


def test_tree_cpu_counts_live_children_and_those_that_end_between_samples(bench_dist) -> None:
    tree = bench_dist.TreeCPU(interval=0.05)
    try:
        idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        time.sleep(0.3)  # its start-up CPU falls before the measurement
        tree.begin()
        busy = subprocess.Popen([sys.executable, "-c", BURN.format(s=0.6)])
        while busy.poll() is None:  # ends (and is reaped) inside the run: counted up to its last sample
            time.sleep(0.01)
        counted = tree.end()
        idle.kill()
        idle.wait()
    finally:
        tree.close()
    assert 0.4 <= counted <= 1.5, counted


def test_tree_cpu_counts_nothing_without_children(bench_dist) -> None:
    tree = bench_dist.TreeCPU(interval=0.05)
    try:
        tree.begin()
        t = time.process_time()
        while time.process_time() - t < 0.3:  # this process's own CPU is common.cpu_seconds' part
            pass
        assert tree.end() < 0.1
    finally:
        tree.close()


def test_a_stored_part_is_reused_only_while_its_code_is_unchanged(bench_dist, tmp_path, monkeypatch) -> None:
    def run(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    run("init", "-q")
    run("config", "user.email", "t@example.org")
    run("config", "user.name", "t")
    for name in ("model.py", "other.py"):
        (tmp_path / name).write_text("A = 1\n")
    run("add", ".")
    run("commit", "-qm", "first")
    first = run("rev-parse", "HEAD")
    monkeypatch.setattr(bench_dist, "git", run)
    assert bench_dist._current({"commit": first}, ["model.py"])
    assert not bench_dist._current({"commit": first + "+dirty"}, ["model.py"])
    assert not bench_dist._current({"commit": "0" * 40}, ["model.py"])  # not in this history
    assert not bench_dist._current({}, ["model.py"])
    (tmp_path / "other.py").write_text("A = 2\n")
    run("commit", "-qam", "other")
    assert bench_dist._current({"commit": first}, ["model.py"])  # the measured code is the same
    (tmp_path / "model.py").write_text("A = 2\n")
    run("commit", "-qam", "model")
    assert not bench_dist._current({"commit": first}, ["model.py"])
