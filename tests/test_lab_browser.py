"""The lab in a real browser: Playwright driving Debian's chromium (headless, never downloaded).

A uvicorn server runs in a thread on a free loopback port. Screenshots go to ``artifacts/lab/``
(git-ignored) so CI can keep them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from servers import serving

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "lab"


@pytest.fixture(scope="module")
def base_url():
    from tastebud.lab import LabState, create_lab_app

    state = LabState(models=["random", "popular", "bias"], synthetic_size=(120, 80, 3600), data_root="/nonexistent")
    with serving(create_lab_app(state=state)) as url:
        yield url


@pytest.fixture()
def console_errors() -> list[str]:
    """The page's errors; a test that provokes one on purpose removes it, so any other still fails."""
    return []


@pytest.fixture()
def page(browser, base_url, console_errors):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    requests: list[str] = []
    errors = console_errors
    pg.on("request", lambda r: requests.append(r.url))
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.goto(base_url + "/")
    pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
    yield pg
    # nothing but this server was asked for anything, and the page raised no error
    assert all(u.startswith(base_url) or u.startswith("data:") for u in requests), [
        u for u in requests if not u.startswith(base_url)
    ]
    assert not errors, errors
    context.close()


def shot(pg, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def placeholder(pg, u: int, i: int) -> str:
    return pg.get_attribute(f"#cell-{u}-{i}", "placeholder")


def version(pg) -> int:
    return int(pg.get_attribute("#mx-grid", "data-version") or 0)


def wait_version_above(pg, v: int) -> None:
    pg.wait_for_function(f"Number(document.querySelector('#mx-grid').dataset.version) > {v}", timeout=5_000)


def test_matrix_lab_predicted_view_and_live_edit(page):
    pg = page
    # observed view: dashes in the 11 empty cells, the 14 ratings in the others
    assert pg.locator("#mx-grid td.observed").count() == 14
    assert pg.locator("#mx-grid td.missing").count() == 11
    assert placeholder(pg, 2, 0) == "–" and pg.input_value("#cell-0-0") == "5"
    assert pg.locator("#mx-grid td.predicted").count() == 0
    # predicted view: every empty cell shows a number and looks different from observed cells
    pg.click("label[for='mx-view-predicted']")
    assert pg.locator("#mx-grid td.predicted").count() == 11
    before = {
        (u, i): float(placeholder(pg, u, i))
        for u in range(5)
        for i in range(5)
        if pg.input_value(f"#cell-{u}-{i}") == ""
    }
    # predictions stay on the 1-5 scale the ratings use (at the defaults, and clipped to it at any setting)
    assert len(before) == 11 and all(1 <= v <= 5 for v in before.values())
    styles = pg.evaluate(
        "[...['#cell-2-0', '#cell-0-0']].map(s => getComputedStyle(document.querySelector(s)).backgroundColor)"
    )
    assert styles[0] != styles[1]
    # the defaults do not memorise the 14 ratings, and the held-out error arrives beside the fit error
    pg.wait_for_function("document.querySelector('#mx-stats').textContent.includes('held-out error 1')")
    stats = pg.inner_text("#mx-stats")
    fit_error = float(re.search(r"known ratings\): ([\d.]+)", stats).group(1))
    assert fit_error > 0.5, stats
    shot(pg, "matrix-predicted")

    # Carl rates Inception 1: the grid refits and the other predictions move
    v0 = version(pg)
    pg.fill("#cell-2-0", "1")
    wait_version_above(pg, v0)
    assert pg.locator("#mx-grid td.predicted").count() == 10
    after = {key: float(placeholder(pg, *key)) for key in before if key != (2, 0)}
    assert max(abs(after[key] - before[key]) for key in after) > 0.01
    # clearing a rating turns the cell into a prediction
    v1 = version(pg)
    pg.fill("#cell-0-0", "")
    wait_version_above(pg, v1)
    assert "predicted" in pg.get_attribute("#mx-grid td[data-u='0'][data-i='0']", "class")
    # an out-of-range rating is flagged, not used
    pg.fill("#cell-1-3", "9")
    assert pg.get_attribute("#cell-1-3", "aria-invalid") == "true"
    # hover: the cell's row of U and row of I light up, and the sum is spelled out
    pg.hover("#cell-3-0")
    assert pg.locator("#mx-U tr.hl").get_attribute("data-row") == "3"
    assert pg.locator("#mx-I tr.hl").get_attribute("data-row") == "0"
    assert "U·I" in pg.inner_text("#mx-explain")
    shot(pg, "matrix-edited")


def test_matrix_sliders_and_keyboard(page):
    pg = page
    assert pg.locator("#mx-U thead th").count() == 2  # f1, b_u (the default k is 1)
    v0 = version(pg)
    pg.focus("#mx-k")
    pg.keyboard.press("ArrowRight")  # k: 1 -> 2
    wait_version_above(pg, v0)
    pg.wait_for_function("document.querySelectorAll('#mx-U thead th').length === 3")
    assert pg.inner_text("#mx-k-out") == "2"
    v1 = version(pg)
    pg.uncheck("#mx-bias")
    wait_version_above(pg, v1)
    assert pg.locator("#mx-U thead th").count() == 2  # f1, f2, no bias column
    # arrow keys move between cells
    pg.focus("#cell-1-1")
    pg.keyboard.press("ArrowDown")
    assert pg.evaluate("document.activeElement.id") == "cell-2-1"
    # tabs follow the ARIA pattern: arrow keys move between them
    pg.focus("#tab-matrix")
    pg.keyboard.press("ArrowRight")
    assert pg.get_attribute("#tab-explorer", "aria-selected") == "true"
    assert pg.is_visible("#panel-explorer") and not pg.is_visible("#panel-matrix")


def test_real_matrix_view(page):
    pg = page
    pg.wait_for_selector("#rm-svg")
    assert pg.locator("#rm-svg rect.cell.pred").count() == 0
    pg.click("label[for='rm-view-predicted']")
    assert pg.locator("#rm-svg rect.cell.pred").count() > 0
    assert pg.locator("#rm-svg rect.cell.none").count() == 0
    assert "held-out error" in pg.inner_text("#rm-stats")


def test_blend_fills_the_seed_and_the_real_matrix_and_explains_a_cell(page, console_errors):
    pg = page
    # the seed's 14 ratings: the blend cross-fits them, fills the grid and says how little 14 carry
    pg.click("label[for='mx-view-predicted']")
    mf_seed = pg.locator("#mx-grid td.predicted").evaluate_all("(xs) => xs.map((x) => x.dataset.pred)")
    pg.click("label[for='mx-model-blend']")
    pg.wait_for_function("document.querySelector('#mx-notice').textContent.includes('5 folds')", timeout=30_000)
    notice = pg.inner_text("#mx-notice")
    assert "14 known ratings" in notice and "not a model to trust" in notice
    assert pg.locator("#mx-grid td.predicted").count() == 11
    blend_seed = pg.locator("#mx-grid td.predicted").evaluate_all("(xs) => xs.map((x) => x.dataset.pred)")
    assert len(blend_seed) == 11 and blend_seed != mf_seed
    pg.hover("#mx-grid td.predicted input >> nth=0")
    pg.wait_for_selector("#mx-explain table.breakdown")
    assert pg.locator("#mx-explain tbody th").all_inner_texts() == [
        "bias", "itemknn", "userknn", "svd", "svdpp", "intercept"
    ]  # fmt: skip
    # the real matrix: the factorization's fill, then the blend's
    pg.wait_for_selector("#rm-svg")
    pg.click("label[for='rm-view-predicted']")
    fills = "Array.from(document.querySelectorAll('#rm-svg rect.cell.pred')).map((r) => r.getAttribute('fill'))"
    mf = pg.evaluate(fills)
    pg.click("label[for='rm-model-blend']")
    pg.wait_for_function("document.querySelector('#rm-stats').textContent.includes('blend: fit error')", timeout=60_000)
    assert "blend; held-out error" in pg.get_attribute("#rm-svg", "aria-label")
    blend = pg.evaluate(fills)
    assert len(blend) == len(mf) > 0 and blend != mf
    assert pg.locator("#rm-svg rect.cell.none").count() == 0
    stats = pg.inner_text("#rm-stats")
    assert "blend: fit error" in stats and "(factorization" in stats and "svdpp" in stats
    # a clicked cell: every model's prediction and weight, adding up to the cell's value
    assert pg.is_hidden("#rm-explain")
    pg.locator("#rm-svg rect.cell.pred").first.click()
    pg.wait_for_selector("#rm-explain table.breakdown")
    names = pg.locator("#rm-explain tbody th").all_inner_texts()
    assert names == ["bias", "itemknn", "userknn", "svd", "svdpp", "intercept"]
    contrib = [
        float(x.replace("− ", "-").replace("+ ", ""))
        for x in pg.locator("#rm-explain tbody td:nth-child(4)").all_inner_texts()
    ]
    total = float(pg.inner_text("#rm-explain tfoot td:last-child"))
    assert sum(contrib) == pytest.approx(total, abs=0.04)
    weight = float(pg.inner_text("#rm-explain tbody tr:first-child td:nth-child(3)"))
    pred = float(pg.inner_text("#rm-explain tbody tr:first-child td:nth-child(2)"))
    assert weight * pred == pytest.approx(contrib[0], abs=0.02)
    # the keyboard moves the selection too
    first = pg.inner_text("#rm-explain div strong")
    pg.focus("#rm-svg")
    pg.keyboard.press("ArrowDown")
    pg.wait_for_function(f"!document.querySelector('#rm-explain div strong').textContent.startsWith({first!r})")
    assert pg.locator("#rm-explain tbody tr").count() == 6
    checks = [
        ["notice", "#mx-notice", ""],
        ["breakdown", "#rm-explain table.breakdown td", ""],
        ["breakdown caption", "#rm-explain table.breakdown caption", ""],
    ]
    ratios = pg.evaluate(CONTRAST.replace("CHECKS", repr(checks)))
    assert len(ratios) == 3 and min(ratios.values()) >= 4.5, ratios
    shot(pg, "blend")


def test_explorer_shows_recommendations(page):
    pg = page
    pg.click("#tab-explorer")
    assert pg.locator("#ex-history tbody tr").count() > 0
    pg.check("#ex-models-bias")
    pg.click("#ex-go")
    pg.wait_for_selector("#ex-results[data-done='1']", timeout=60_000)
    cols = pg.locator("#ex-results .col")
    assert cols.count() == 2  # popular and bias
    for j in range(2):
        assert cols.nth(j).locator("li").count() == 10
    assert pg.locator("#ex-overlap table").count() == 1
    first = pg.locator("#ex-results .col[data-model='popular'] li").first
    assert first.locator(".why").inner_text().startswith("popular")
    # popular's scores are counts: whole numbers, not "106.000"; bias's are ratings with two decimals
    counts = pg.locator("#ex-results .col[data-model='popular'] li .s").all_inner_texts()
    assert all(re.fullmatch(r"\d[\d,]*", t) for t in counts), counts
    ratings = pg.locator("#ex-results .col[data-model='bias'] li .s").all_inner_texts()
    assert all(re.fullmatch(r"\d\.\d\d", t) for t in ratings), ratings
    shot(pg, "explorer")


def test_new_user_flow(page):
    pg = page
    pg.click("#tab-newuser")
    buttons = pg.locator("#nu-items button")
    picked = []
    for j in range(5):
        buttons.nth(j).click()
        picked.append(buttons.nth(j).get_attribute("data-item"))
        assert buttons.nth(j).get_attribute("aria-pressed") == "true"
    pg.wait_for_selector("#nu-results[data-done='1']", timeout=60_000)
    cols = pg.locator("#nu-results .col")
    assert cols.count() == 3  # random, popular, bias: every model that takes a history
    for j in range(3):
        items = cols.nth(j).locator("li").evaluate_all("els => els.map(e => e.dataset.item)")
        assert len(items) == 10 and not set(items) & set(picked)
    # a sixth pick is refused until one is taken back
    buttons.nth(6).click()
    assert buttons.nth(6).get_attribute("aria-pressed") == "false"
    shot(pg, "new-user")


def test_items_map_and_evaluation(page):
    pg = page
    pg.click("#tab-items")
    pg.wait_for_selector("#it-map circle")
    assert pg.locator("#it-map circle").count() == 80
    # the points fill the map instead of crowding into one corner
    frame = pg.locator("#it-map").bounding_box()
    boxes = [c.bounding_box() for c in pg.locator("#it-map circle").all()]
    span_x = max(b["x"] + b["width"] for b in boxes) - min(b["x"] for b in boxes)
    span_y = max(b["y"] + b["height"] for b in boxes) - min(b["y"] for b in boxes)
    assert span_x > 0.85 * frame["width"] and span_y > 0.85 * frame["height"], (span_x, span_y, frame)
    pg.locator("#it-map circle").nth(5).hover()
    assert pg.is_visible("#tooltip") and pg.inner_text("#tooltip").strip()
    pg.click("#it-go")
    pg.wait_for_selector("#it-results[data-done='1']", timeout=60_000)
    assert pg.locator("#it-results .col[data-model='popular'] li").count() == 10
    shot(pg, "items")
    pg.click("#tab-eval")
    pg.check("#ev-models-random")
    pg.click("#ev-go")
    pg.wait_for_selector("#ev-status[data-done='1']", timeout=60_000)
    assert pg.locator("#ev-precision polyline").count() == 2
    assert pg.locator("#ev-pop polyline").count() == 3  # two models and the held-out reference
    assert pg.locator("#ev-bars .bar-row").count() == 16  # 8 metrics x 2 models
    shot(pg, "evaluation")


def test_explanation_box_waits_for_a_cell(page):
    pg = page
    # no empty grey box under the grid: it appears with content once a cell is hovered
    assert not pg.is_visible("#mx-explain")
    pg.hover("#cell-2-0")
    assert pg.is_visible("#mx-explain")
    text = pg.inner_text("#mx-explain")
    assert "Carl × Inception" in text and "μ" in text


def test_the_grid_is_there_before_any_script(browser, base_url):
    # a screenshot with JavaScript off shows the 14 ratings and the 11 empty cells, not an empty table
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, java_script_enabled=False)
    pg = context.new_page()
    pg.goto(base_url + "/")
    try:
        assert pg.locator("#mx-grid tbody input").count() == 25
        assert pg.locator("#mx-grid td.observed").count() == 14
        assert pg.input_value("#cell-0-0") == "5" and pg.input_value("#cell-2-0") == ""
        assert pg.locator("#mx-grid thead th").all_inner_texts() == [
            "Inception",
            "Arrival",
            "Up",
            "WALL-E",
            "John Wick",
        ]
        box = pg.locator("#mx-grid").bounding_box()
        assert box["height"] > 200  # five rows of cells, drawn
        shot(pg, "matrix-no-javascript")
    finally:
        context.close()


CONTRAST = """
(() => {
  const lum = (c) => {
    const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map((v) => v / 255)
      .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const bg = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor;
      if (c && !c.startsWith("rgba(0, 0, 0, 0)") && c !== "transparent") return c;
    }
    return "rgb(255, 255, 255)";
  };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const out = {};
  for (const [name, sel, pseudo] of CHECKS) {
    const el = document.querySelector(sel);
    out[name] = ratio(getComputedStyle(el, pseudo || null).color, bg(el));
  }
  return out;
})()
"""


def test_text_contrast_meets_wcag_aa(page):
    pg = page
    pg.click("label[for='mx-view-predicted']")
    pg.wait_for_selector("#mx-grid td.predicted")
    checks = [
        ["lead text", "#panel-matrix .lead", ""],
        ["help text", "#mx-help", ""],
        ["observed rating", "#mx-grid td.observed input", ""],
        ["predicted rating", "#mx-grid td.predicted input", "::placeholder"],
        ["fitted value", "#mx-grid td.observed .fit", ""],
        ["tab", "#tab-explorer", ""],
        ["selected tab", "#tab-matrix", ""],
        ["button", "#ex-go", ""],
        ["secondary button", "#mx-reset", ""],
        ["selected view", "label[for='mx-view-predicted']", ""],
        ["unselected view", "label[for='mx-view-observed']", ""],
    ]
    ratios = pg.evaluate(CONTRAST.replace("CHECKS", repr(checks)))
    low = {k: round(v, 2) for k, v in ratios.items() if v < 4.5}
    assert not low, f"text below the WCAG AA contrast ratio of 4.5: {low}"
