"""The Dataset tab in Debian Chromium: the map (a canvas component) shows a hovered image's thumbnail,
a click on a point sets image A and the next sets B; a confusion cell opens its pair (Streamlit's
``on_select`` of ``st.plotly_chart``). AppTest can send neither event."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from playwright.sync_api import expect

from tests.e2e.server import browser_test_assets, serve_assets
from tests.e2e.test_browser import _no_exception, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

@pytest.fixture(scope="module")
def atlas_app(tmp_path_factory):
    from apinet.atlas import build_atlas

    assets = browser_test_assets(tmp_path_factory, "atlas-app")
    out = tmp_path_factory.mktemp("atlas") / "a"
    build_atlas("synthbirds", assets["checkpoints"] / "apinet_synthbirds.safetensors",
                assets["checkpoints"] / "baseline_synthbirds.safetensors", out, limit=40, progress=False)
    server = serve_assets(tmp_path_factory, assets, {"APINET_ATLAS_DIR": str(out)}, timeout=120)
    try:
        yield next(server), out
    finally:
        server.close()


def _query(page, key: str) -> str:
    from urllib.parse import parse_qs, urlparse

    return unquote(parse_qs(urlparse(page.url).query)[key][0])


def _point(page, row: int) -> tuple[float, float, int]:
    """Where atlas image ``row`` is drawn on the page, and the row a click there picks (the nearest
    point within 8 px: another image may lie on top of it)."""
    themap = page.locator(".atlas-map").first
    x, y = themap.evaluate("(el, i) => el.screenOf(i)", row)
    return x, y, themap.evaluate("(el, xy) => el.rowAt(xy[0], xy[1])", [x, y])


def _open(atlas_app, browser, query: str):
    """The atlas the app opened, and a page of the app at ``query`` whose first run has finished."""
    from apinet.atlas import Atlas

    url, folder = atlas_app
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url + query)
    return Atlas.open(folder), page, wait_ready(page, timeout=180)


def test_map_hover_shows_the_thumbnail_and_clicks_set_a_then_b(atlas_app, browser):
    atlas, page, run = _open(atlas_app, browser, "/?tab=dataset")
    themap = page.locator(".atlas-map").first
    expect(themap).to_have_attribute("data-drawn", str(len(atlas)), timeout=60_000)  # every image is a point
    themap.scroll_into_view_if_needed()
    # resting on a point shows its class at once, then its thumbnail, id and both predictions
    x, y, row = _point(page, 3)
    page.mouse.move(x, y)
    tip = page.locator(".atlas-map .tip")
    expect(tip.locator(".name")).to_have_text(atlas.class_names[atlas.labels[row]])
    expect(tip.locator("img")).to_have_attribute("src", re.compile(r"^data:image/webp;base64,"), timeout=30_000)
    expect(tip.locator(".id")).to_have_text(atlas.column("id")[row])
    _no_exception(page)
    page.mouse.click(x, y)
    expect(themap).to_have_attribute("data-a", str(row), timeout=2_000)  # marked in the browser at once
    expect(themap).to_have_attribute("data-confirmed-a", str(row), timeout=60_000)  # and by the page's run
    # A's mined partners, read from the atlas, are drawn
    expect(themap).to_have_attribute("data-intra", str(int(atlas.column("intra")[row])))
    expect(themap).to_have_attribute("data-inter", str(int(atlas.column("inter")[row])))
    run = wait_ready(page, run, timeout=180)
    _no_exception(page)
    assert _query(page, "a") == atlas.column("id")[row]
    assert themap.get_attribute("data-next") == "b"
    x, y, second = _point(page, 11 if row != 11 else 12)
    page.mouse.click(x, y)
    expect(themap).to_have_attribute("data-confirmed-b", str(second), timeout=60_000)
    wait_ready(page, run, timeout=180)
    _no_exception(page)
    assert _query(page, "b") == atlas.column("id")[second]
    assert _query(page, "a") == atlas.column("id")[row]
    page.close()


_CELL = """(key) => { const gd = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
  if (!gd || !gd._fullLayout) return null;
  const t = gd._fullData.filter(t => t.type === 'scatter')[0], L = gd._fullLayout, r = gd.getBoundingClientRect();
  for (let i = 0; i < t.x.length; i++) {
    const c = t.y[i], d = t.x[i];  // the cell: x = predicted, y = true class
    if (Number(c) !== Number(d)) return {c: Number(c), d: Number(d), x: r.left + L._size.l + L.xaxis.l2p(t.x[i]),
                                         y: r.top + L._size.t + L.yaxis.l2p(t.y[i])}; }
  return null; }"""


def test_confusion_cell_click_opens_its_pair(atlas_app, browser):
    atlas, page, run = _open(atlas_app, browser, "/?tab=dataset&dview=confusion")
    page.locator(".st-key-dconf_apinet .js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
    page.locator(".st-key-dconf_apinet").scroll_into_view_if_needed()
    page.wait_for_timeout(800)
    cell = page.evaluate(_CELL, "dconf_apinet")
    assert cell is not None  # random tiny models make mistakes
    page.mouse.click(cell["x"], cell["y"])
    wait_ready(page, run, timeout=180)
    _no_exception(page)
    a, b = atlas.index_of[_query(page, "a")], atlas.index_of[_query(page, "b")]
    assert atlas.labels[a] == cell["c"] and atlas.predictions("apinet")[a] == cell["d"] and atlas.labels[b] == cell["d"]
    page.close()
