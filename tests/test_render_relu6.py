"""Issue #22: channel maps of an EfficientNet-Lite trunk clip at 6 (ReLU6); figures and the app's
channel view say so, and only for such trunks."""

from __future__ import annotations

import pytest

from apinet.render import FigureSettings, multi_pair_figure, pair_figure
from apinet.render.notes import RELU6_FIGURE_NOTE, clips_at_six, relu6_caption
from tests.test_render import _fake_explanation

LITE = {"architecture": "apinet", "backbone": "efficientnet_lite0"}
RESNET = {"architecture": "baseline", "backbone": "resnet18"}


def _expl(apinet_cfg, baseline_cfg):
    e = _fake_explanation()
    e.settings = {**e.settings, "apinet": apinet_cfg, "baseline": baseline_cfg}
    return e


def _headings(fig) -> list[str]:
    """The left titles of the figure's axes (block headings and panel letters), wrapped lines joined."""
    titles = [" ".join(ax.get_title(loc="left").split()) for ax in fig.get_axes()]
    return [t for t in titles if len(t) > 2]  # drop panel letters ("a", "b1")


def test_clips_at_six_reads_the_backbone():
    assert clips_at_six(LITE) and clips_at_six({"backbone": "efficientnet_lite2"})
    assert not clips_at_six(RESNET) and not clips_at_six(None) and not clips_at_six({"class": "APINet"})


def test_caption_names_only_the_models_that_clip():
    sets = ["apinet_gate1", "apinet_gate2", "baseline_top"]
    both = relu6_caption(_expl(LITE, {**LITE, "architecture": "baseline"}), sets)
    assert both.startswith("API-Net's and the baseline's trunk is an EfficientNet-Lite") and "clip at 6" in both
    assert relu6_caption(_expl(LITE, RESNET), sets).startswith("API-Net's trunk is an EfficientNet-Lite")
    assert relu6_caption(_expl(RESNET, LITE), sets).startswith("The baseline's trunk")
    assert relu6_caption(_expl(RESNET, LITE), ["apinet_gate1"]) is None  # the baseline's maps are not shown
    assert relu6_caption(_expl(RESNET, RESNET), sets) is None
    assert relu6_caption(_fake_explanation(), sets) is None  # no model config recorded: say nothing


def test_channel_figure_headings_carry_the_note_for_lite_only():
    from apinet.render.panels import channel_heading

    lite = _expl(LITE, RESNET)
    plain = [channel_heading(lite, name, 2) for name in ("apinet_gate1", "apinet_gate2", "baseline_top")]
    fig = pair_figure(lite, "channels", FigureSettings(k=2, scope="map"))
    assert _headings(fig) == [f"{plain[0]} · {RELU6_FIGURE_NOTE}", f"{plain[1]} · {RELU6_FIGURE_NOTE}", plain[2]]
    fig = pair_figure(_expl(RESNET, RESNET), "channels", FigureSettings(k=2, scope="map"))
    assert _headings(fig) == plain
    # several pairs: the heading of each pair row
    fig = multi_pair_figure([_expl(LITE, RESNET), _expl(RESNET, RESNET)], "channels", FigureSettings(k=2),
                            names=["x", "y"])
    assert _headings(fig) == [f"pair 1: x · {RELU6_FIGURE_NOTE}", "pair 2: y"]
    # other views are unchanged
    fig = pair_figure(_expl(LITE, LITE), "cams", FigureSettings(scope="map"))
    assert not any("ReLU6" in t for t in _headings(fig))


def _channels_tab(backbone: str) -> None:
    from types import SimpleNamespace

    from app.tabs import channels
    from app.tabs.common import Context, DisplaySettings
    from tests.test_render import _fake_explanation

    e = _fake_explanation()
    e.settings = {**e.settings, "apinet": {"backbone": backbone}, "baseline": {"backbone": "resnet18"}}
    e.baseline_features1, e.baseline_features2 = e.features1 * 3, e.features2 * 3
    settings = DisplaySettings(k=2, cmap="viridis", alpha=0.5, scope="pair", stage="layer4", cam="gradcam")
    channels.draw(Context(e, settings, SimpleNamespace(), SimpleNamespace(), SimpleNamespace(), SimpleNamespace()))


@pytest.mark.parametrize("backbone, shown", [("efficientnet_lite0", True), ("resnet18", False)])
def test_channels_tab_caption_says_maps_clip_at_six(backbone, shown):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_channels_tab, args=(backbone,)).run(timeout=60)
    assert not at.exception
    captions = [c.value for c in at.caption]
    note = [c for c in captions if "ReLU6" in c]
    if shown:
        assert note == ["API-Net's trunk is an EfficientNet-Lite: its activations pass through ReLU6, so these "
                        "channel maps clip at 6. A strong channel's peak is then a flat plateau at 6, not one point."]
    else:
        assert note == [] and any(c.startswith("Captions: channel index") for c in captions)
