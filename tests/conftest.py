from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real data lives beside the checkout (never inside it); the loaders read it through $TASTEBUD_DATA.
os.environ.setdefault("TASTEBUD_DATA", str((REPO.parent / "shared" / "data").resolve()))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ["TASTEBUD_DATA"])
    if not (root / "ml-100k" / "u.data").is_file():
        pytest.fail(f"real data not found at {root}; set TASTEBUD_DATA to the shared data folder")
    return root


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
