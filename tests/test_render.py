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
