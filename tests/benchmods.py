"""The scripts of benchmarks/ as modules, for the tests of their logic (``from benchmods import bench_fixture``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def bench_fixture(*modules: str, requires: str | None = None) -> Callable[..., Any]:
    """A module-scoped fixture giving the named benchmarks/ module (a tuple for several), imported
    with benchmarks/ on ``sys.path`` as the scripts run; skipped when the extra ``requires`` names
    is missing (CI installs every extra, so nothing skips there)."""

    @pytest.fixture(scope="module")
    def fixture() -> Any:
        if requires:
            pytest.importorskip(requires)
        sys.path.insert(0, str(BENCH))
        try:
            found = tuple(importlib.import_module(name) for name in modules)
            yield found[0] if len(found) == 1 else found
        finally:
            sys.path.remove(str(BENCH))

    return fixture
