"""A fresh clone's `make test`: real-data tests skip with a reason without the data and fail under CI's
TASTEBUD_REQUIRE_DATA=1; the package metadata says which Pythons are supported; models whose extra is
missing are reported as such, not as a crash."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUPPORTED = ("3.11", "3.12", "3.13")
# One real-data test of the default suite: it reads ml-100k through the `data_root` fixture.
REAL_DATA_TEST = "tests/test_splits.py::test_ml100k_canonical_folds"
PYPROJECT_TEST = "tests/test_fresh_clone.py::test_pyproject_declares_supported_pythons_and_an_spdx_license"


def _pytest(env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASTEBUD_REQUIRE_")}
    env.update(env_extra, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")  # a quicker start; these runs need no plugin
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_real_data_test_skips_with_one_line_reason_when_data_is_absent(tmp_path):
    r = _pytest({"TASTEBUD_DATA": str(tmp_path)}, REAL_DATA_TEST)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 skipped" in r.stdout and "passed" not in r.stdout
    reason = [line for line in r.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(reason) == 1
    assert f"real data not found at {tmp_path}; set TASTEBUD_DATA" in reason[0]


def test_real_data_test_fails_when_ci_requires_the_data(tmp_path):
    r = _pytest({"TASTEBUD_DATA": str(tmp_path), "TASTEBUD_REQUIRE_DATA": "1"}, REAL_DATA_TEST)
    assert r.returncode == 1, r.stdout + r.stderr  # an error in the fixture: the run fails
    assert "1 error" in r.stdout and "skipped" not in r.stdout
    assert "real data not found at" in r.stdout and "TASTEBUD_REQUIRE_DATA=1" in r.stdout


def test_partial_data_folder_names_what_is_missing(tmp_path):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t1\t5\t0\n")
    r = _pytest({"TASTEBUD_DATA": str(tmp_path)}, REAL_DATA_TEST)
    assert r.returncode == 0 and "1 skipped" in r.stdout, r.stdout + r.stderr
    assert f"real data at {tmp_path} lacks ml-100k/u1.base" in r.stdout


def test_system_tool_skips_without_and_fails_when_ci_requires_it(tmp_path):
    # PostgreSQL stands for the system tools: the test module asks conftest's `postgres_url` fixture
    env = {"TASTEBUD_DATA": str(tmp_path), "TASTEBUD_PG_URL": ""}
    skipped = _pytest(env, "tests/test_postgres.py")
    assert skipped.returncode == 0 and "skipped" in skipped.stdout, skipped.stdout + skipped.stderr
    assert "TASTEBUD_PG_URL is not set" in skipped.stdout
    failed = _pytest({**env, "TASTEBUD_REQUIRE_SYSTEM": "1"}, "tests/test_postgres.py")
    assert failed.returncode == 1 and "2 errors" in failed.stdout, failed.stdout + failed.stderr
    assert "skipped" not in failed.stdout
    assert "TASTEBUD_REQUIRE_SYSTEM=1" in failed.stdout


def test_required_extras_must_be_installed(tmp_path):
    """CI's 3.11 run names the extras it installed, so a torch or Ray test can never skip there silently."""
    r = _pytest({"TASTEBUD_REQUIRE_EXTRAS": "no-such-extra"}, "--collect-only", PYPROJECT_TEST)
    assert r.returncode != 0
    assert "TASTEBUD_REQUIRE_EXTRAS=no-such-extra: not installed: no-such-extra: no such extra" in r.stdout + r.stderr
    ok = _pytest({"TASTEBUD_REQUIRE_EXTRAS": "test"}, "--collect-only", PYPROJECT_TEST)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_pyproject_declares_supported_pythons_and_an_spdx_license():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"  # the SPDX string; a TOML table is deprecated
    assert project["requires-python"] == f">={SUPPORTED[0]}"
    listed = {
        c.rsplit(" :: ", 1)[1] for c in project["classifiers"] if c.startswith("Programming Language :: Python :: 3.")
    }
    assert listed == set(SUPPORTED)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in SUPPORTED


def test_models_of_a_missing_extra_are_unknown_models_not_crashes():
    """Without torch (Python 3.12 and 3.13 here), every registered name either loads or says which extra to install."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # as if torch were not installed
        import tastebud as tb
        for name in tb.list_models():
            try:
                tb.get_model(name)
            except tb.UnknownModelError as exc:
                assert "pip install tastebud[" in str(exc), exc
                print("missing", name)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert {"missing sasrec", "missing two_tower", "missing neumf"} <= set(r.stdout.splitlines())


@pytest.mark.parametrize("var", ["TASTEBUD_REQUIRE_DATA", "TASTEBUD_REQUIRE_SYSTEM"])
def test_ci_requires_data_and_system_tools(var):
    assert f"{var}=1" in (REPO / ".ci" / "run").read_text()
