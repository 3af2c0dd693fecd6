"""The service's API docs in a real browser, offline: every request that leaves the loopback
interface is aborted, as on a machine without internet (Playwright driving Debian's chromium).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tastebud as tb
from servers import serving

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    from tastebud.serve.app import ServeConfig, create_app

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(1, 20, 200), "item": rng.integers(100, 130, 200)})
    model = tb.get_model("popular")().fit(tb.Interactions.from_frame(frame.drop_duplicates()))
    folder = model.save(tmp_path_factory.mktemp("docs") / "popular")
    with serving(create_app(folder, ServeConfig(token="t"))) as url:
        yield url


def _offline_page(browser, base_url):
    """A page whose requests to anything but the service are aborted; returns (page, aborted, errors)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    aborted: list[str] = []
    errors: list[str] = []

    def route(r):
        url = r.request.url
        if url.startswith(base_url) or url.startswith("data:"):
            r.continue_()
        else:
            aborted.append(url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, aborted, errors


def test_swagger_docs_work_offline(browser, base_url):
    page, aborted, errors = _offline_page(browser, base_url)
    page.goto(base_url + "/docs")
    # the operations list is rendered from /openapi.json by Swagger UI's own (served) script
    page.get_by_text("/users/{user_id}/recommendations").first.wait_for(timeout=20_000)
    text = page.inner_text("body")
    for path in ("/recommendations", "/predict", "/events", "/items/{item_id}/similar"):
        assert path in text
    assert not aborted, aborted  # nothing was even asked of the internet
    assert not errors, errors
    page.context.close()


def test_redoc_works_offline(browser, base_url):
    page, aborted, errors = _offline_page(browser, base_url)
    page.goto(base_url + "/redoc")
    page.get_by_text("/users/{user_id}/recommendations").first.wait_for(timeout=20_000)
    assert not aborted, aborted
    assert not errors, errors
    page.context.close()
