"""apinet.render: overlays, normalisation scopes and figure files (no model involved)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from apinet.explain import AttentionMap, CamMaps, ChannelMaps, PairExplanation
from apinet.render import (
    FigureSettings, colormap_lut, overlay, overlay_grid, pair_figure, save_figure, scale_for,
)


def _fake_explanation(k: int = 3, size: int = 32, h: int = 4) -> PairExplanation:
    rng = np.random.default_rng(0)
    d, c = 16, 4
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    maps = rng.random((2, d, h, h)).astype(np.float32) * 5
    g1, g2 = rng.random(d).astype(np.float32), rng.random(d).astype(np.float32)
    idx = np.argsort(-g1)[:k]
    channels = {
        "apinet_gate1": ChannelMaps(idx, g1[idx], maps[0, idx], maps[1, idx], "API-Net g1", "gate"),
        "apinet_gate2": ChannelMaps(idx, g2[idx], maps[0, idx], maps[1, idx], "API-Net g2", "gate"),
        "baseline_top": ChannelMaps(idx, g1[idx], maps[0, idx] * 3, maps[1, idx] * 3, "baseline", "x"),
    }
    att = rng.random((2, h, h)).astype(np.float32)
    att /= att.sum((1, 2), keepdims=True)
    ltpa = {"apinet/pooled/layer4": AttentionMap(att[0], att[1], "ltpa", "softmax over the h*w positions")}
    cam = rng.random((2, size, size)).astype(np.float32)
    cams = {"apinet/pair/gradcam": CamMaps(cam[0], cam[1], 0, 1, "gradcam", "cam")}
    logits = {key: rng.normal(size=c).astype(np.float32)
              for key in ("1_self", "1_other", "2_self", "2_other", "1_test", "2_test")}
    return PairExplanation(
        image1=image, image2=image[::-1].copy(), class_names=["a", "b", "c", "d"],
        features1=maps[0].mean((1, 2)), features2=maps[1].mean((1, 2)), mutual=g1, gate1=g1, gate2=g2,
        logits=logits, targets=(0, 1), p_self1=0.6, p_other1=0.5, p_self2=0.4, p_other2=0.45,
        rank_term1=0.0, rank_term2=0.1, channels=channels, ltpa=ltpa, cams=cams,
        settings={"ltpa_stages": ["layer4"]})


def test_overlay_alpha_extremes_and_shape():
    image = np.full((20, 30, 3), 100, np.uint8)
    m = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert np.array_equal(overlay(image, m, alpha=0.0), image)
    full = overlay(image, m, alpha=1.0, cmap="viridis")
    lut = colormap_lut("viridis")
    assert full.shape == (20, 30, 3) and full.dtype == np.uint8
    np.testing.assert_array_equal(full[0, 0], lut[0])  # top-left = map minimum
    np.testing.assert_array_equal(full[-1, -1], lut[255])  # bottom-right = map maximum
    # vmax above the map's max: the maximum no longer reaches the top of the colormap
    assert not np.array_equal(overlay(image, m, alpha=1.0, vmin=0, vmax=6)[-1, -1], lut[255])
    with pytest.raises(ValueError):
        overlay(image, m, cmap="nope")


def test_scale_for_scopes():
    a1, a2 = np.array([[0.0, 1.0]]), np.array([[2.0, 5.0]])
    b1, b2 = np.array([[-1.0, 0.5]]), np.array([[0.0, 10.0]])
    assert scale_for(a1) == (0.0, 1.0)
    assert scale_for([a1, a2], "map") == [(0.0, 1.0), (2.0, 5.0)]
    assert scale_for([a1, a2], "pair") == (0.0, 5.0)
    assert scale_for([[a1, a2], [b1, b2]], "map") == [[(0.0, 1.0), (2.0, 5.0)], [(-1.0, 0.5), (0.0, 10.0)]]
    assert scale_for([[a1, a2], [b1, b2]], "pair") == [[(0.0, 5.0)] * 2, [(-1.0, 10.0)] * 2]
    assert scale_for([[a1, a2], [b1, b2]], "models") == [[(-1.0, 10.0)] * 2] * 2
    lo, hi = scale_for(np.arange(101.0).reshape(1, -1), "map", percentile=99)
    assert (lo, hi) == pytest.approx((1.0, 99.0))


def test_overlay_grid_ltpa_in_uniform_units_and_pair_scope():
    e = _fake_explanation()
    grid = overlay_grid(e, "ltpa", scope="pair")
    p = grid.panels[0]
    np.testing.assert_allclose(p.map1.mean(), 1.0, rtol=1e-5)  # a*h*w averages to 1
    assert p.range1 == p.range2 == (min(p.map1.min(), p.map2.min()), max(p.map1.max(), p.map2.max()))
    ch = overlay_grid(e, "channels", k=2, scope="models")
    assert len(ch.panels) == 6 and len({pp.range1 for pp in ch.panels}) == 1
    assert ch.panels[0].overlay1.shape == (32, 32, 3)


@pytest.mark.parametrize("fmt", ["pdf", "svg", "png"])
def test_figure_files_open(tmp_path, fmt):
    e = _fake_explanation()
    settings = FigureSettings(view="summary", k=2, dpi=60, cmap="inferno")
    path = save_figure(pair_figure(e, None, settings), tmp_path / f"fig.{fmt}", dpi=60, settings=settings)
    data = path.read_bytes()
    if fmt == "pdf":
        assert data.startswith(b"%PDF")
    elif fmt == "svg":
        root = ET.fromstring(data)
        assert any(el.tag.endswith("text") for el in root.iter())  # editable text, not paths
    else:
        with Image.open(path) as im:
            assert im.size[0] > 100 and im.mode in ("RGB", "RGBA")
    again = FigureSettings.from_json((tmp_path / f"fig.{fmt}.settings.json").read_text())
    assert again == settings


def test_every_view_renders_and_settings_round_trip():
    e = _fake_explanation()
    for view in ("channels", "ltpa", "cams", "gates"):
        fig = pair_figure(e, view, FigureSettings(k=2, scope="map"))
        assert len(fig.axes) >= 2
    s = FigureSettings(view="cams", scope="models", percentile=99.0, cam_keys=["apinet/pair/gradcam"])
    assert FigureSettings.from_json(s.to_json()) == s
    assert json.loads(s.to_json())["scope"] == "models"
    with pytest.raises(ValueError):
        FigureSettings(scope="everything")


# --- one scope implementation, signed maps, the view vocabulary --------------------------------------


def test_scale_for_and_panel_ranges_are_one_implementation():
    from apinet.render import Panel, assign_ranges, scope_ranges

    a1, a2 = np.array([[0.0, 1.0]]), np.array([[2.0, 5.0]])
    b1, b2 = np.array([[-1.0, 0.5]]), np.array([[0.0, 10.0]])
    for scope in ("map", "pair", "models"):
        panels = [Panel("a", "a", a1, a2, "activation"), Panel("b", "b", b1, b2, "activation")]
        assign_ranges(panels, scope)
        assert [[p.range1, p.range2] for p in panels] == scale_for([[a1, a2], [b1, b2]], scope)
    # "models" shares a range between maps of the same units only (never activations with attention)
    panels = [Panel("a", "a", a1, a2, "activation"), Panel("b", "b", b1, b2, "a·h·w")]
    assign_ranges(panels, "models")
    assert panels[0].range1 == (0.0, 5.0) and panels[1].range1 == (-1.0, 10.0)
    assert scope_ranges([[a1, a2], [b1, b2]], "models", units=["x", "x"]) == [[(-1.0, 10.0)] * 2] * 2
    with pytest.raises(ValueError):
        scope_ranges([[a1]], "everything")


def test_signed_scale_is_symmetric_in_every_scope():
    from apinet.render import signed_scale

    a1, a2 = np.array([[-1.0, 3.0]]), np.array([[-4.0, 0.5]])
    b1, b2 = np.array([[0.25, 0.125]]), np.array([[-0.375, 0.0]])  # exact in float32
    assert signed_scale(a1) == (-3.0, 3.0)
    assert signed_scale([a1, a2], "map") == [(-3.0, 3.0), (-4.0, 4.0)]
    assert signed_scale([a1, a2], "pair") == (-4.0, 4.0)
    assert signed_scale([[a1, a2], [b1, b2]], "pair") == [[(-4.0, 4.0)] * 2, [(-0.375, 0.375)] * 2]
    assert signed_scale([[a1, a2], [b1, b2]], "models") == [[(-4.0, 4.0)] * 2] * 2
    lo, hi = signed_scale(np.linspace(-100, 50, 151).reshape(1, -1), percentile=50)
    assert lo == -hi and hi == pytest.approx(np.percentile(np.abs(np.linspace(-100, 50, 151)), 50))
    assert signed_scale(np.zeros((2, 2))) == (-1.0, 1.0)  # an all-zero map still puts 0 at the centre


def test_zero_maps_to_the_centre_of_a_diverging_colormap():
    from apinet.render import DIVERGING_COLORMAPS, colorize

    for name in DIVERGING_COLORMAPS:
        lut = colormap_lut(name)
        np.testing.assert_array_equal(lut[127], lut[128])  # both middle entries are the neutral centre
        assert tuple(lut[127]) == (247, 247, 247)
        for m in (1.0, 3.7, 1e-6):
            rgb = colorize(np.array([[-m, 0.0, m]], np.float32), cmap=name, vmin=-m, vmax=m)
            np.testing.assert_array_equal(rgb[0, 1], lut[127])
            np.testing.assert_array_equal(rgb[0, 0], lut[0])
            np.testing.assert_array_equal(rgb[0, 2], lut[255])
        assert lut[0, 2] > lut[0, 0] and lut[255, 0] > lut[255, 2]  # negative blue-ish, positive red-ish


def test_signed_panels_get_symmetric_ranges_and_the_diverging_colormap():
    e = _fake_explanation()
    contrast = np.zeros((32, 32), np.float32)
    contrast[:16] = -2.0
    contrast[16:, :16] = 0.5  # zero on the bottom-right quarter
    e.exact_cams = {"1_contrast": contrast, "2_contrast": contrast * 0.25,
                    "1_self": contrast + 1, "2_self": contrast - 1}
    for scope in ("map", "pair", "models"):
        grid = overlay_grid(e, "exact", scope=scope, alpha=1.0, cmap="viridis")
        assert [p.key for p in grid.panels] == ["exact/self", "exact/contrast"]
        for p in grid.panels:
            assert p.signed and p.range1[0] == -p.range1[1] and p.range2[0] == -p.range2[1]
        c = grid.panels[1]
        np.testing.assert_array_equal(c.overlay1[-1, -1], colormap_lut("RdBu_r")[127])  # 0 is neutral
        np.testing.assert_array_equal(c.overlay2[-1, -1], colormap_lut("RdBu_r")[127])
    pair = overlay_grid(e, "exact", scope="pair").panels[1]
    assert pair.range1 == pair.range2 == (-2.0, 2.0)
    per_map = overlay_grid(e, "exact", scope="map").panels[1]
    assert per_map.range2 == (-0.5, 0.5)


def test_view_vocabulary():
    from apinet.render import VIEW_LIST, VIEWS, available_views, get_view

    assert VIEWS == tuple(v.slug for v in VIEW_LIST)
    assert VIEWS[:6] == ("summary", "channels", "ltpa", "cams", "gates", "a2")
    assert all(v.label and v.label != v.slug for v in VIEW_LIST)
    e = _fake_explanation()
    assert [v.slug for v in available_views(e)] == ["summary", "channels", "ltpa", "cams", "gates"]
    e.exact_cams = {"1_self": np.zeros((2, 2), np.float32), "2_self": np.zeros((2, 2), np.float32)}
    assert "exact" in [v.slug for v in available_views(e)]
    assert get_view("cams").needs == "cams"
    with pytest.raises(ValueError, match="summary, channels"):
        get_view("nope")


def test_hostile_class_names_are_drawn_as_literal_text():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    e = _fake_explanation()
    e.class_names = [r"$\frac{a}{", "<b>bold</b>", "$x^2$", "d"]
    fig = pair_figure(e, "cams", FigureSettings(width="single"))
    FigureCanvasAgg(fig)
    fig.canvas.draw()  # an unparsable mathtext string would raise here
    texts = " ".join(t.get_text() for t in fig.findobj(Text))
    assert r"$\frac{a}{" in texts.replace("\n", "") and "<b>bold</b>" in texts.replace("\n", " ")
