"""The Dataset tab in Debian Chromium: a click on the map's points sets image A, the next sets B
(Streamlit's own ``on_select`` event of ``st.plotly_chart``, which AppTest cannot send)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.e2e.server import streamlit_app
from tests.e2e.test_browser import CHROMIUM, ROOT, _no_exception, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

_POINT = """(index) => { const gd = document.querySelector('.st-key-dmap .js-plotly-plot');
  if (!gd || !gd._fullLayout) return null;
  const pts = [];  // every image point of the per-class WebGL traces
  for (const t of gd._fullData) if (t.type === 'scattergl' && t.customdata)
    for (let i = 0; i < t.customdata.length; i++) pts.push([Number(t.customdata[i]), t.x[i], t.y[i]]);
  const [row, x, y] = pts[index % pts.length], L = gd._fullLayout, r = gd.getBoundingClientRect();
  return {row: row, x: r.left + L._size.l + L.xaxis.l2p(x), y: r.top + L._size.t + L.yaxis.l2p(y)}; }"""


@pytest.fixture(scope="module")
def atlas_app(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no `chromium` on PATH")
    sys.path.insert(0, str(ROOT))
    from apinet.atlas import build_atlas
    from tests.app_checkpoints import make_app_assets

    assets = make_app_assets(tmp_path_factory.mktemp("atlas-app"))
    out = tmp_path_factory.mktemp("atlas") / "a"
    build_atlas("synthbirds", assets["checkpoints"] / "apinet_synthbirds.safetensors",
                assets["checkpoints"] / "baseline_synthbirds.safetensors", out, limit=40, progress=False)
    env = {**os.environ, "APINET_CHECKPOINT_DIR": str(assets["checkpoints"]), "APINET_RUNS_DIR": str(assets["runs"]),
           "APINET_GALLERY_DIR": str(assets["gallery"]), "APINET_ATLAS_DIR": str(out)}
    with open(tmp_path_factory.mktemp("server") / "streamlit.log", "w+") as log:
        with streamlit_app(env, log, timeout=120) as url:
            yield url, out


def _query(page, key: str) -> str:
    from urllib.parse import parse_qs, urlparse

    return unquote(parse_qs(urlparse(page.url).query)[key][0])


def test_map_clicks_set_a_then_b(atlas_app, browser):
    from apinet.atlas import Atlas

    url, folder = atlas_app
    atlas = Atlas.open(folder)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url + "/?tab=dataset")
    run = wait_ready(page, timeout=180)
    page.locator(".st-key-dmap .js-plotly-plot canvas").first.wait_for(state="attached", timeout=60_000)
    page.wait_for_timeout(800)
    page.locator(".st-key-dmap").scroll_into_view_if_needed()
    first = page.evaluate(_POINT, 3)
    page.mouse.click(first["x"], first["y"])
    run = wait_ready(page, run, timeout=180)
    _no_exception(page)
    assert _query(page, "a") == atlas.column("id")[first["row"]]
    page.wait_for_timeout(800)
    second = page.evaluate(_POINT, 11)
    page.mouse.click(second["x"], second["y"])
    wait_ready(page, run, timeout=180)
    _no_exception(page)
    assert _query(page, "b") == atlas.column("id")[second["row"]]
    assert _query(page, "a") == atlas.column("id")[first["row"]]
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
    from apinet.atlas import Atlas

    url, folder = atlas_app
    atlas = Atlas.open(folder)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url + "/?tab=dataset&dview=confusion")
    run = wait_ready(page, timeout=180)
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
