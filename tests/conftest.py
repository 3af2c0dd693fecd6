from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real data lives beside the checkout (never inside it); the loaders read it through $TASTEBUD_DATA.
os.environ.setdefault("TASTEBUD_DATA", str((REPO.parent / "shared" / "data").resolve()))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# What the real-data tests read, relative to $TASTEBUD_DATA (the layout of docs/data.md).
DATA_FILES = (
    "ml-100k/u.data",
    "ml-100k/u1.base",
    "ml-100k-wiki/movie_wiki.csv",
    "ml-latest-small/ratings.csv",
    "splits/ml-100k_train.csv",
    "splits/ml-latest-small_train.csv",
)
# CI sets these to 1 so that a test whose data or system tool is missing fails there instead of skipping.
REQUIRE_DATA = "TASTEBUD_REQUIRE_DATA"
REQUIRE_SYSTEM = "TASTEBUD_REQUIRE_SYSTEM"
# A comma-separated list of extras ("all" for every one) whose packages must be installed (CI's 3.11 run).
REQUIRE_EXTRAS = "TASTEBUD_REQUIRE_EXTRAS"


def missing(reason: str, *, required_by: str) -> NoReturn:
    """The one rule for absent resources: a newcomer's run skips with `reason`; a run that set
    `required_by` to 1 (CI) fails, so CI can never skip these tests silently."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{reason} ({required_by}=1)", pytrace=False)
    pytest.skip(reason)


def pytest_sessionstart(session: pytest.Session) -> None:
    wanted = [e.strip() for e in os.environ.get(REQUIRE_EXTRAS, "").split(",") if e.strip()]
    if wanted:
        absent = absent_extras(wanted)
        if absent:
            raise pytest.UsageError(f"{REQUIRE_EXTRAS}={','.join(wanted)}: not installed: {'; '.join(absent)}")


def absent_extras(extras: list[str]) -> list[str]:
    """'extra: package' for each package of `extras` (as tastebud's installed metadata declares them)
    that is not installed in this environment."""
    declared = metadata.metadata("tastebud").get_all("Provides-Extra") or []
    if "all" in extras:
        extras = [e for e in declared if e != "all"]
    out = []
    for extra in extras:
        if extra not in declared:
            out.append(f"{extra}: no such extra")
            continue
        for req in metadata.requires("tastebud") or []:
            name, _, marker = req.partition(";")
            if not re.search(rf"extra\s*==\s*['\"]{re.escape(extra)}['\"]", marker):
                continue
            dist = re.match(r"[A-Za-z0-9._-]+", name.strip()).group(0)
            if dist == "tastebud":
                continue
            try:
                metadata.distribution(dist)
            except metadata.PackageNotFoundError:
                out.append(f"{extra}: {dist}")
    return out


@pytest.fixture(scope="session")
def data_root() -> Path:
    """$TASTEBUD_DATA, holding the real data sets; skips (or fails, under TASTEBUD_REQUIRE_DATA=1) without them."""
    root = Path(os.environ["TASTEBUD_DATA"])
    absent = [f for f in DATA_FILES if not (root / f).is_file()]
    if len(absent) == len(DATA_FILES):
        missing(f"real data not found at {root}; set TASTEBUD_DATA to the shared data folder", required_by=REQUIRE_DATA)
    if absent:
        missing(f"real data at {root} lacks {', '.join(absent)}", required_by=REQUIRE_DATA)
    return root


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium for the browser tests (never downloaded); `make system-deps` installs it as root."""
    path = "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        missing(f"{path} not found: install Debian's chromium (apt-get install chromium)", required_by=REQUIRE_SYSTEM)
    return path


@pytest.fixture(scope="session")
def lenskit_python() -> Path:
    """LensKit's own environment, where the benchmarks' LensKit peers run (it pins pandas 2; tastebud
    runs on pandas 3); `make lenskit-env` creates it, $TASTEBUD_LENSKIT_PYTHON points elsewhere."""
    path = Path(os.environ.get("TASTEBUD_LENSKIT_PYTHON", REPO / ".venv-lenskit" / "bin" / "python"))
    if not os.access(path, os.X_OK):
        missing(f"{path} not found: create LensKit's environment with `make lenskit-env`", required_by=REQUIRE_SYSTEM)
    return path


BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser(chromium: str):
    """Debian's chromium driven by Playwright, headless, one for the whole session."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL server's URL from $TASTEBUD_PG_URL (`make test` starts one where PostgreSQL is installed)."""
    url = os.environ.get("TASTEBUD_PG_URL")
    if not url:
        missing(
            "TASTEBUD_PG_URL is not set (start a server with scripts/start_postgres.sh)", required_by=REQUIRE_SYSTEM
        )
    return url


@pytest.fixture(scope="session")
def synth():
    """A small synthetic explicit data set with timestamps, item and user features."""
    from tastebud.data.synthetic import generate

    return generate(n_users=80, n_items=60, n_interactions=2400, random_state=0)


@pytest.fixture(scope="session")
def synth_implicit():
    from tastebud.data.synthetic import generate

    return generate(n_users=80, n_items=60, n_interactions=2400, explicit=False, random_state=0)


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance with 2 CPUs for one test module (the CI machine's size)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
