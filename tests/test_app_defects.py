"""Issue #24 in the app: top-5 lists five per model, no internal names, every tab setting in the shared
link (and kept while another tab is open), the match tab starts on the object with a fitted scale, the
export tab's slide size, backgrounds, one-map files and visited pairs. AppTest on the tiny checkpoints."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.app_helpers import tab_context
from tests.test_app_pair_views import SIBLINGS, _app, _captions, _expl, _ok, _open

pytestmark = pytest.mark.slow


def _charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_top5_lists_exactly_five_classes_per_model(env):
    at = _open(_app(*SIBLINGS).run(), "Predictions")
    e = _expl(at, env)
    bars = [c for c in _charts(at) if "top-5" in json.dumps(c.get("layout", {}).get("title", ""), ensure_ascii=False)]
    assert len(bars) == 4  # A and B, API-Net and baseline
    for chart in bars:
        assert len(chart["data"]) == 1 and len(chart["data"][0]["y"]) == 5
    # the API-Net chart of A lists API-Net's own top 5 of A, in order
    a_apinet = next(c for c in bars if "Image A · API-Net" in json.dumps(c["layout"]["title"], ensure_ascii=False))
    top = [int(i) for i in e.top_classes("1_test", 5)[0]]
    assert [y.removesuffix(" ★") for y in a_apinet["data"][0]["y"]] == [e.class_names[i] for i in top]


def test_top_k_tab_shows_no_internal_names(env):
    at = _open(_app(*SIBLINGS).run(), "Top-k channels")
    text = " ".join(m.value for m in at.markdown) + " ".join(_captions(at))
    assert "indices2" not in text and "indices for image" not in text
    assert "ranked separately" in text


#: (tab label, widget kind, key, value, URL text)
TAB_SETTINGS = [
    ("Why A, not B", "toggle", "contrast_outline", True, "1"),
    ("Exact maps", "toggle", "exact_outline", True, "1"),
    ("Top-k channels", "toggle", "large_maps", True, "1"),
    ("Mutual & gates", "radio", "vec_order", "channel index", "channel index"),
    ("Where does it match?", "toggle", "match_reverse", True, "1"),
    ("Export", "radio", "export_width", "slide", "slide"),
    ("Export", "radio", "export_bg", "transparent", "transparent"),
    ("Export", "select_slider", "export_font", 12.0, "12"),
    ("Export", "select_slider", "export_dpi", 600, "600"),
    ("Export", "selectbox", "export_view", "gates", "gates"),
]


@pytest.mark.parametrize("tab, kind, key, value, text", TAB_SETTINGS, ids=[s[2] for s in TAB_SETTINGS])
def test_tab_settings_travel_in_the_link_and_survive_other_tabs(env, tab, kind, key, value, text):
    at = _open(_app(*SIBLINGS).run(), tab)
    getattr(at, kind)(key=key).set_value(value)
    at.run()
    _ok(at)
    assert at.query_params[key] == text
    _open(at, "Predictions")  # a tab that does not draw the widget
    assert at.query_params[key] == text and at.session_state[key] == value
    # the link opens the same setting in a new session
    from app.tabs import by_slug

    fresh = _app()
    fresh.query_params.update({k: at.query_params[k] for k in at.query_params})
    fresh.query_params["tab"] = next(t.slug for t in __import__("app.tabs", fromlist=["TABS"]).TABS if t.label == tab)
    fresh.run()
    _ok(fresh)
    assert fresh.session_state[key] == value
    assert getattr(fresh, kind)(key=key).value == value
    assert by_slug(fresh.query_params["tab"]).label == tab


def test_match_cell_travels_in_the_link_and_starts_on_the_object(env):
    from apinet.explain import start_cell

    at = _open(_app(*SIBLINGS).run(), "Where does it match?")
    e = _expl(at, env)
    h, w = e.unit_features1.shape[:2]
    start = start_cell(e, 1)
    assert (at.session_state.match_row, at.session_state.match_col) == start
    raw = e.exact_cams["1_self"].raw
    assert float(raw[start]) == pytest.approx(float(np.max(raw)))  # where A's own logit gets most
    text = " ".join(_captions(at))
    from apinet.explain import correspondence_map

    sim = correspondence_map(e, 1, *start).similarity
    lo, hi = float(sim.min()), float(sim.max())
    if lo >= 0:
        assert f"Colour scale fitted to this map: {lo:.3f} to {hi:.3f}" in text
    else:
        top = max(abs(lo), abs(hi))
        assert f"Colour scale fitted to this map: {-top:.3f} to {top:.3f}" in text
    cell = ((start[0] + 1) % h, (start[1] + 2) % w)
    at.slider(key="match_row").set_value(cell[0])
    at.slider(key="match_col").set_value(cell[1])
    at.run()
    _ok(at)
    assert (at.query_params["match_row"], at.query_params["match_col"]) == (str(cell[0]), str(cell[1]))
    fresh = _app()
    fresh.query_params.update({k: at.query_params[k] for k in at.query_params})
    fresh.run()
    _ok(fresh)
    assert (fresh.session_state.match_row, fresh.session_state.match_col) == cell


def test_bad_tab_settings_in_a_link_fall_back_to_defaults(env):
    at = _app(*SIBLINGS)
    at.query_params.update({"export_width": "poster", "export_font": "3", "vec_order": "random", "match_row": "-1",
                            "large_maps": "yes", "tab": "export"})
    at.run()
    _ok(at)
    s = at.session_state
    assert s.export_width == "single" and s.export_font == 7.0 and s.vec_order == "sorted by g₁" if "vec_order" in s \
        else s.export_width == "single"
    assert at.radio(key="export_width").value == "single"
    assert at.select_slider(key="export_font").value == 7.0


def test_export_offers_visited_pairs_slides_backgrounds_and_one_map(env):
    from app.tabs import export

    at = _app(*SIBLINGS).run()
    _ok(at)
    at.session_state["b"] = "g:test_0005_streaked-warbler"  # a second pair, visited in this session
    at.run()
    _ok(at)
    _open(at, "Export")
    options = at.multiselect(key="export_pairs").options
    visited = [o for o in options if o.startswith("Visited: ")]
    assert len(visited) == 1 and "test_0001_golden-crowned-finch" in visited[0]  # the first pair, not the one on screen
    assert at.multiselect(key="export_pairs").value[0] == visited[0]
    at.button(key="export_multi_make").click()
    at.run()
    _ok(at)
    assert any("Last multi-pair figure: 2 pairs" in c for c in _captions(at))  # the current and the visited pair
    # sizes, background and one map as its own file
    assert "16:9 slide (13.3 × 7.5 in)" in at.radio(key="export_width").options
    assert at.radio(key="export_bg").options == ["white", "transparent", "dark"]
    e = _expl(at, env)
    ctx = tab_context(env, at, e)
    slide = Image.open(io.BytesIO(export.figure_bytes(ctx, "gates", "png", 50, width="slide", font_size=12.0)))
    assert abs(slide.size[0] / slide.size[1] - 16 / 9) < 0.01
    clear = Image.open(io.BytesIO(export.figure_bytes(ctx, "summary", "png", 50, background="transparent")))
    assert clear.convert("RGBA").getpixel((0, 0))[3] == 0
    keys = at.selectbox(key="export_panel").options
    assert keys
    one = Image.open(io.BytesIO(export.panel_bytes(ctx, "summary", "gate", 2, "png", 100, width="single")))
    assert one.size[0] <= 332
