"""Issue #24 for figure authors: titles that match their columns and never split a number, summary and
gates panels that name A and B, a 16:9 slide preset, one map per file, transparent and dark figures."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from matplotlib.text import Text

from apinet.explain import ChannelMaps
from apinet.render import (
    SLIDE_SIZE, FigureSettings, display_maps, multi_pair_figure, pair_figure, panel_choices, panel_figure,
    save_figure,
)
from apinet.render._layout import image_title, short_units
from apinet.render.panels import channel_heading
from tests.test_figures_layout import _texts, layout_problems, paper_explanation


def _words(fig) -> list[str]:
    return [t.get_text() for t, _ in _texts(fig)[1]]


def _tokens(text: str) -> set[str]:
    out = set()
    for token in text.split():
        out.add(token)
        out.update(re.findall(r"[^-]*-|[^-]+$", token))  # "Double-barred" may break after its hyphen
    return out


def _with_channels(e, a_idx, b_idx):
    """``e`` with a baseline set whose channels differ between A and B (``a_idx`` / ``b_idx``)."""
    base = e.channels["baseline_top"]
    e.channels["baseline_top"] = ChannelMaps(np.asarray(a_idx), np.linspace(1.82, 1.5, len(a_idx)), base.maps1[:len(a_idx)],
                                             base.maps2[:len(b_idx)], base.label, "x", indices2=np.asarray(b_idx))
    return e


def test_channel_figure_heading_counts_the_columns_it_shows():
    e = paper_explanation(k=10)  # the explanation keeps 10; its stored labels say "top-10"
    for k in (3, 5):
        words = " ".join(w.replace("\n", " ") for w in _words(pair_figure(e, "channels", FigureSettings(k=k))))
        assert f"API-Net: top-{k} channels of A's gate g₁" in words
        assert f"API-Net: top-{k} channels of B's gate g₂" in words
        assert f"Baseline: its own top-{k} channels of each image" in words
        assert "top-10" not in words


def test_single_column_k3_titles_break_only_between_words():
    """k = 3, one column: "channel 4 on A, 889 on B (activation 1.82)" wraps, but never as "88" / "9"
    or "activatio" / "n"."""
    e = _with_channels(paper_explanation(k=5, names=("Golden Double-barred Finch", "Plain-breasted Warbler")),
                       [4, 17, 1203], [889, 4, 56])
    settings = FigureSettings(width="single", k=3)
    fig = pair_figure(e, "channels", settings)
    assert layout_problems(fig) == []
    sources = [p.label for p in display_maps(e, "channels", k=3)] + [image_title(e, 1), image_title(e, 2)]
    sources += [channel_heading(e, s, 3) for s in e.channels] + [short_units("activation")]
    vocabulary = set().union(*(_tokens(s) for s in sources))
    wrapped = [w for w in _words(fig) if "\n" in w]
    assert wrapped, "nothing wrapped: the test would not see a bad break"
    for text in wrapped:
        broken = _tokens(text) - vocabulary
        assert not broken, (text, broken)
    assert any("889 on B" in w.replace("\n", " ") for w in _words(fig))


def test_summary_and_gates_name_a_and_b_and_both_gates_top_channels():
    e = paper_explanation()
    i1, i2 = int(e.channels["apinet_gate1"].indices[0]), int(e.channels["apinet_gate2"].indices[0])
    words = [w.replace("\n", " ") for w in _words(pair_figure(e, "summary", FigureSettings(width="double")))]
    text = " | ".join(words)
    assert f"top gated channel: A {i1} (by g₁), B {i2} (by g₂)" in text
    assert "image 1" not in text and "image 2" not in text
    assert "A: Single-barred Flycatcher" in text and "B: Plain-breasted Warbler" in text
    assert "A self" in text and "B other" in text
    gates = pair_figure(e, "gates", FigureSettings(width="double", k=5))
    ticks = {t.get_text() for ax in gates.get_axes() for t in ax.get_xticklabels()}
    top1 = {str(int(c)) for c in e.channels["apinet_gate1"].indices[:5]}
    top2 = {str(int(c)) for c in e.channels["apinet_gate2"].indices[:5]}
    assert top1 <= ticks and top2 <= ticks  # both images' top channels, not g₁'s only
    labels = " ".join(_words(gates))
    assert "g₁ (A's gate)" in labels and "g₂ (B's gate)" in labels
    assert layout_problems(gates) == [] and layout_problems(pair_figure(e, "gates", FigureSettings(width="single"))) == []


@pytest.mark.parametrize("view", ["summary", "channels", "cams", "gates"])
def test_slide_preset_is_16_by_9_and_fits(view):
    e = paper_explanation()
    settings = FigureSettings.preset("slide")
    if view == "channels":  # a slide holds two channel sets at k = 3 (three at k = 5 need a page)
        settings = FigureSettings.preset("slide", k=3, channel_sets=["apinet_gate1", "baseline_top"])
    fig = pair_figure(e, view, settings)
    assert fig.get_size_inches() == pytest.approx(SLIDE_SIZE, abs=1e-3)
    assert layout_problems(fig) == []
    assert min(t.get_fontsize() for t, _ in _texts(fig)[1]) >= 12
    if view in ("channels", "gates"):  # two pairs' summaries at 14 pt need more than one slide's height
        rows = multi_pair_figure([e, paper_explanation(1)], view, settings)
        assert rows.get_size_inches() == pytest.approx(SLIDE_SIZE, abs=1e-3)
    with pytest.raises(ValueError, match="preset"):
        FigureSettings.preset("poster")


def _png(fig) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    save_figure(fig, buf, dpi=60, format="png")
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGBA"))


def test_transparent_and_dark_backgrounds():
    e = paper_explanation()
    clear = _png(pair_figure(e, "summary", FigureSettings(background="transparent")))
    assert clear[0, 0, 3] == 0 and clear[-1, -1, 3] == 0  # the page shows through
    assert clear[..., 3].max() == 255  # the maps do not
    dark_fig = pair_figure(e, "summary", FigureSettings(background="dark"))
    dark = _png(dark_fig)
    assert dark[0, 0, 3] == 255 and dark[0, 0, :3].max() < 40  # a dark page
    from matplotlib.colors import to_rgb

    colours = [to_rgb(t.get_color()) for t in dark_fig.findobj(Text) if t.get_text().strip()]
    assert colours and min(sum(c) / 3 for c in colours) > 0.7  # every text light on it
    white = _png(pair_figure(e, "summary", FigureSettings()))
    assert tuple(white[0, 0]) == (255, 255, 255, 255)
    with pytest.raises(ValueError, match="background"):
        FigureSettings(background="blue")
    assert FigureSettings.from_json(FigureSettings(background="dark").to_json()).background == "dark"


def test_one_map_as_its_own_figure_matches_the_full_figure():
    e = paper_explanation()
    settings = FigureSettings(width="single", k=3)
    keys = [k for k, _ in panel_choices(e, "channels", settings)]
    assert keys[:3] == ["apinet_gate1/0", "apinet_gate1/1", "apinet_gate1/2"] and len(keys) == 9
    fig = panel_figure(e, "channels", "apinet_gate1/0", 2, settings)
    images = [ax for ax in fig.get_axes() if ax.images and ax.images[0].get_array().shape[0] > 1]
    assert len(images) == 1  # one map, image B
    shown = images[0].images[0].get_array()
    grid = {p.key: p for p in display_maps(e, "channels", k=3, channel_sets=["apinet_gate1"])}
    assert shown.shape == grid["apinet_gate1/0"].map2.shape[:2] + (3,) or shown.shape[:2] == e.image2.shape[:2]
    title = " ".join(_words(fig)).replace("\n", " ")
    top = int(e.channels["apinet_gate1"].indices[0])
    assert "B: Plain-breasted Warbler" in title and f"channel {top}" in title
    assert layout_problems(fig) == []
    assert fig.get_figwidth() <= 3.3 + 1e-6
    with pytest.raises(ValueError, match="no map"):
        panel_figure(e, "channels", "nope/0", 1, settings)
    with pytest.raises(ValueError, match="bar chart"):
        panel_figure(e, "gates", "x", 1, settings)
    slide = panel_figure(e, "cams", "apinet/pair/gradcam", 1, FigureSettings.preset("slide"))
    assert slide.get_size_inches() == pytest.approx(SLIDE_SIZE, abs=1e-3)
