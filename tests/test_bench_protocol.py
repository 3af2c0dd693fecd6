"""The benchmark protocol's plumbing: section stamps, the staleness check, interleaved timing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmods import BENCH, bench_fixture

bench_modules = bench_fixture("common", "check")
bench_implicit = bench_fixture("bench_implicit")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@example.org")
    _git(tmp_path, "config", "user.name", "t")
    (tmp_path / "model.py").write_text("A = 1\n")
    (tmp_path / "other.py").write_text("B = 1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "first")
    return tmp_path


def _section(commit: str, paths: str = "model.py") -> str:
    return f"<!-- begin:x -->\n<!-- measured: commit={commit} paths={paths} -->\n| a |\n<!-- end:x -->\n"


def test_a_section_is_current_until_its_measured_code_changes(bench_modules, repo: Path) -> None:
    _, check = bench_modules
    head = _git(repo, "rev-parse", "HEAD")
    assert [v.stale for v in check.check(_section(head), repo)] == [False]
    (repo / "other.py").write_text("B = 2\n")  # not measured: still current
    _git(repo, "commit", "-qam", "other")
    assert [v.stale for v in check.check(_section(head), repo)] == [False]
    (repo / "model.py").write_text("A = 2\n")
    _git(repo, "commit", "-qam", "model")
    (verdict,) = check.check(_section(head), repo)
    assert verdict.stale and "model.py" in verdict.why


def test_unstamped_dirty_and_unknown_commits_are_stale(bench_modules, repo: Path) -> None:
    _, check = bench_modules
    head = _git(repo, "rev-parse", "HEAD")
    text = "<!-- begin:old -->\n| a |\n<!-- end:old -->\n" + _section(head + "+dirty") + _section("f" * 40)
    verdicts = check.check(text, repo)
    assert [v.stale for v in verdicts] == [True, True, True]
    assert "no commit" in verdicts[0].why and "uncommitted" in verdicts[1].why and "history" in verdicts[2].why


def test_write_section_stamps_commit_and_paths(bench_modules, tmp_path: Path, monkeypatch) -> None:
    common, check = bench_modules
    target = tmp_path / "BENCHMARKS.md"
    monkeypatch.setattr(common, "BENCHMARKS_MD", target)
    common.write_section("demo", "| a |\n|---|\n| 1 |", measures=["src/tastebud/models/ease.py"], script=__file__)
    text = target.read_text()
    stamp = check._STAMP.search(text)
    assert stamp is not None
    assert stamp["commit"].split("+")[0] == _git(BENCH.parent, "rev-parse", "HEAD")
    paths = stamp["paths"].split(",")
    assert "src/tastebud/models/ease.py" in paths and "tests/test_bench_protocol.py" in paths
    assert "src/tastebud/core" in paths  # the shared layers are always measured
    common.write_section("demo", "| b |", script=__file__)  # rewrites, never appends a second copy
    assert target.read_text().count("<!-- begin:demo -->") == 1


def test_interleave_alternates_sides_and_keeps_warmup_apart(bench_modules) -> None:
    common, _ = bench_modules
    calls: list[str] = []
    timings = common.interleave(
        {"a": (lambda: calls.append("a") or 1, "1 thread"), "b": (lambda: calls.append("b") or 2, "2 threads")},
        pairs=3,
        warmup=1,
    )
    assert calls == ["a", "b"] * 4
    assert len(timings["a"].warmup_wall) == 1 and len(timings["a"].wall) == 3
    assert timings["b"].results == [2, 2, 2]
    rows = common.timing_rows(timings, baseline="b")
    assert rows[0]["threads"] == "1 thread" and rows[0]["runs"] == 3
    assert "wall / b, per pair" in rows[0]
    assert common.spread([3.0, 1.0, 2.0]) == "2.00 (1.00-3.00)"


def test_a_run_that_outlives_its_commit_is_stamped_dirty(bench_modules, monkeypatch) -> None:
    """The stamp names the code the run started on: if HEAD moved meanwhile, the figures are not HEAD's."""
    common, _ = bench_modules
    monkeypatch.setattr(common, "_START_HEAD", "0" * 40)
    monkeypatch.setattr(common, "_START_DIRTY", [])
    assert common.measured_commit(["src/tastebud/core"]) == "0" * 40 + "+dirty"
    monkeypatch.setattr(common, "_START_HEAD", common.git("rev-parse", "HEAD"))
    monkeypatch.setattr(common, "_START_DIRTY", ["src/tastebud/core/base.py"])
    assert common.measured_commit(["src/tastebud/core"]).endswith("+dirty")
    assert not common.measured_commit(["docs/no-such-folder"]).endswith("+dirty")


def test_reused_speed_rows_must_name_their_commit_and_its_code_must_be_unchanged(
    bench_implicit, tmp_path: Path
) -> None:
    """bench_implicit --reuse-speed: rows measured at an earlier commit are kept only while the code
    they time is the same; the committed rows pass, rows without a commit or from the first commit do not."""
    import json

    bench = bench_implicit
    rows, commit = bench.reused_speed(str(BENCH / "implicit_speed.json"))
    assert {r["library"] for r in rows} == {"implicit", "tastebud"}
    assert f"measured at commit {commit[:12]} and reused" in bench.render_speed(rows, commit)
    bad = tmp_path / "rows.json"
    bad.write_text(json.dumps([{k: v for k, v in r.items() if k != "measured_at"} for r in rows]))
    with pytest.raises(SystemExit, match="must name the one commit"):
        bench.reused_speed(str(bad))
    first = _git(BENCH.parent, "rev-list", "--max-parents=0", "HEAD").split()[0]
    bad.write_text(json.dumps([{**r, "measured_at": first} for r in rows]))
    with pytest.raises(SystemExit, match="changed since"):
        bench.reused_speed(str(bad))
