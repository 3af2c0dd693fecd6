"""Fuzz the HTTP API from its own OpenAPI document (schemathesis, positive and negative cases):
no 5xx ever, and every 4xx carries a message."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from rhelpers import AUTH, TOKEN, build_registry, record

from tastebud.serve.app import ServeConfig, create_app

MAX_EXAMPLES = 30
_tmp = Path(tempfile.mkdtemp(prefix="tastebud-fuzz-"))
atexit.register(shutil.rmtree, _tmp, True)
APP = create_app(build_registry(_tmp / "reg"), ServeConfig(token=TOKEN, events=str(_tmp / "events.db")))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
COUNTS = {"cases": 0, "5xx": 0, "silent_4xx": 0}


@pytest.fixture(scope="module", autouse=True)
def _tally():
    yield
    record(fuzz_cases=COUNTS["cases"], fuzz_5xx=COUNTS["5xx"])


def _message(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        msg = body.get("error") or body.get("detail")
        return msg if isinstance(msg, str) else ""
    return ""


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)
def test_api_never_5xx_and_4xx_say_why(case):
    response = case.call(headers=AUTH)
    COUNTS["cases"] += 1
    status = response.status_code
    if status >= 500:
        COUNTS["5xx"] += 1
    assert status < 500, f"{case.method} {case.formatted_path} -> {status}: {response.text[:300]}"
    if 400 <= status < 500:
        assert _message(response), (
            f"{case.method} {case.formatted_path} -> {status} without a message: {response.text[:300]}"
        )
