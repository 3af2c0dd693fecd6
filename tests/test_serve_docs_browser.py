"""The service's API docs in a real browser, offline: every request that leaves the loopback
interface is aborted, as on a machine without internet (Playwright driving Debian's chromium).
"""

from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np
import pandas as pd
import pytest

import tastebud as tb

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    uvicorn = pytest.importorskip("uvicorn")
    from tastebud.serve.app import ServeConfig, create_app

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(1, 20, 200), "item": rng.integers(100, 130, 200)})
    model = tb.get_model("popular")().fit(tb.Interactions.from_frame(frame.drop_duplicates()))
    folder = model.save(tmp_path_factory.mktemp("docs") / "popular")
    app = create_app(folder, ServeConfig(token="t"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            pytest.fail("the service did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


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
