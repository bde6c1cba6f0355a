"""Figure layout, measured by matplotlib itself: for every view at one- and two-column width, no two
texts overlap, no text leaves the canvas, every font is at least 7 pt, legends sit outside the data,
and colour bars sit under the panels they describe."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.text import Text

from apinet.explain import A2StageMaps, AttentionMap, CamMaps, ChannelMaps, PairExplanation
from apinet.render import (
    FIGURE_WIDTHS, VIEWS, FigureSettings, available_views, multi_pair_figure, pair_figure,
)

SOFTMAX = "softmax over the h*w positions"


def paper_explanation(seed: int = 0, k: int = 5, a2: bool = True, exact: bool = True,
                      names: tuple[str, str] = ("Single-barred Flycatcher", "Plain-breasted Warbler")
                      ) -> PairExplanation:
    """An explanation with the keys, labels and value ranges of a real one (ResNet-size channel
    indices, long class names, API-Net and baseline, test and pair path), no model needed."""
    rng = np.random.default_rng(seed)
    d, h, size = 2048, 14, 224
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    g1, g2 = rng.random(d).astype(np.float32), rng.random(d).astype(np.float32)
    acts = (rng.random((2, d, h, h)) * 6).astype(np.float32)
    i1, i2 = np.argsort(-g1)[:k], np.argsort(-g2)[:k]
    channels = {
        "apinet_gate1": ChannelMaps(i1, g1[i1], acts[0, i1], acts[1, i1], f"API-Net top-{k} channels of g1", "gate"),
        "apinet_gate2": ChannelMaps(i2, g2[i2], acts[0, i2], acts[1, i2], f"API-Net top-{k} channels of g2", "gate"),
        "baseline_top": ChannelMaps(i1, g1[i1] * 9, acts[0, i1] * 2, acts[1, i2] * 2,
                                    f"baseline top-{k} channels (per image)", "x", indices2=i2),
    }
    att = rng.random((2, h, h)).astype(np.float32) ** 4
    att /= att.sum((1, 2), keepdims=True)
    ltpa = {
        "apinet/pooled/layer4": AttentionMap(att[0], att[1], "apinet LTPA layer4, g = x (the pooled feature)", SOFTMAX),
        "apinet/gated/layer4": AttentionMap(att[1], att[0], "apinet LTPA layer4, g = x^self", SOFTMAX),
        "baseline/pooled/layer4": AttentionMap(att[0], att[0], "baseline LTPA layer4, g = x (the pooled feature)",
                                               SOFTMAX),
    }
    cam = (rng.random((3, 2, size, size)) * 0.05).astype(np.float32)
    cams = {f"{m}/{p}/gradcam": CamMaps(cam[i, 0], cam[i, 1], 0, 1, "gradcam", f"{m} gradcam ({p})")
            for i, (m, p) in enumerate((("apinet", "test"), ("apinet", "pair"), ("baseline", "test")))}
    a2maps = {}
    if a2:
        g = rng.random((2, 8, h, h)).astype(np.float32)
        g /= g.sum((2, 3), keepdims=True)
        a2maps["apinet/layer3"] = A2StageMaps(g[0], g[1], g[0], g[1], "apinet A^2 after layer3")
    logits = {key: rng.normal(size=200).astype(np.float32)
              for key in ("1_self", "1_other", "2_self", "2_other", "1_test", "2_test")}
    classes = [f"class {i}" for i in range(200)]
    classes[3], classes[7] = names
    e = PairExplanation(
        image1=image, image2=image[::-1].copy(), class_names=classes, features1=acts[0].mean((1, 2)),
        features2=acts[1].mean((1, 2)), mutual=g1, gate1=g1, gate2=g2, logits=logits, targets=(3, 7),
        p_self1=0.81, p_other1=0.64, p_self2=0.42, p_other2=0.47, rank_term1=0.0, rank_term2=0.1,
        channels=channels, ltpa=ltpa, cams=cams, a2=a2maps, settings={"rank_by": "gate", "k": k})
    if exact:  # signed, as the exact pair-path maps and the class-contrast maps are
        e.exact_cams = {f"{i}_{kind}": (rng.normal(size=(h, h)) * s).astype(np.float32)
                        for i in (1, 2) for kind, s in (("self", 0.5), ("other", 0.4), ("contrast", 0.1))}
        contrast = CamMaps(*(rng.normal(size=(2, size, size)) * 3).astype(np.float32), 3, 7, "class_contrast", "c")
        contrast.signed = True
        e.contrast_cams = {"apinet/pair/class_contrast": contrast, "baseline/test/class_contrast": contrast,
                           "apinet/test/finercam": CamMaps(cam[0, 0], cam[0, 1], 3, 7, "finercam", "f")}
    return e


@pytest.fixture(scope="module")
def paper() -> PairExplanation:
    return paper_explanation()


def _texts(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    FigureCanvasAgg(fig)
    fig.draw_without_rendering()  # the layout and the text extents; nothing rasterised
    renderer = fig.canvas.get_renderer()
    hidden = [t for ax in fig.get_axes() if not ax.axison for t in ax.xaxis.findobj(Text) + ax.yaxis.findobj(Text)]
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and t not in hidden]
    return renderer, [(t, t.get_window_extent(renderer)) for t in texts]


def layout_problems(fig) -> list[str]:
    """Every overlap between two texts, text outside the canvas, font under 7 pt, legend on its data."""
    renderer, texts = _texts(fig)
    canvas = fig.bbox
    problems = []
    for t, box in texts:
        if t.get_fontsize() < 7:
            problems.append(f"{t.get_text()!r} at {t.get_fontsize()} pt")
        if box.x0 < canvas.x0 - 0.5 or box.y0 < canvas.y0 - 0.5 or box.x1 > canvas.x1 + 0.5 or box.y1 > canvas.y1 + 0.5:
            problems.append(f"{t.get_text()!r} clipped: {box} outside {canvas}")
    for (a, ba), (b, bb) in itertools.combinations(texts, 2):
        overlap_x = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
        overlap_y = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
        if overlap_x > 0.5 and overlap_y > 0.5:
            problems.append(f"{a.get_text()!r} overlaps {b.get_text()!r}")
    for ax in fig.get_axes():
        legend = ax.get_legend()
        if legend is not None:
            lb, data = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
            if min(lb.y1, data.y1) - max(lb.y0, data.y0) > 0.5 and min(lb.x1, data.x1) - max(lb.x0, data.x0) > 0.5:
                problems.append("legend on the data")
    return problems


def test_the_checker_sees_overlaps_clipping_and_small_fonts():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1))
    fig.text(0.1, 0.5, "overlapping text", fontsize=8)
    fig.text(0.15, 0.5, "overlapping text", fontsize=8)
    fig.text(0.9, 0.1, "clipped at the edge", fontsize=8)
    fig.text(0.1, 0.1, "tiny", fontsize=5)
    problems = layout_problems(fig)
    assert any("overlaps" in p for p in problems)
    assert any("clipped" in p for p in problems)
    assert any("5" in p and "pt" in p for p in problems)


@pytest.mark.slow
@pytest.mark.parametrize("width", ["single", "double"])
@pytest.mark.parametrize("view", VIEWS)
def test_every_view_fits_the_paper_width_without_overlaps(view, width, paper):
    e = paper
    assert view in {v.slug for v in available_views(e)}
    for scope in ("pair", "map", "models") if width == "single" else ("pair",):
        fig = pair_figure(e, view, FigureSettings(width=width, scope=scope))
        assert fig.get_figwidth() <= FIGURE_WIDTHS[width] + 1e-6
        assert layout_problems(fig) == [], (view, width, scope)


@pytest.mark.slow
@pytest.mark.parametrize("font_size", [8.0, 10.0])
def test_signed_colour_bars_fit_at_larger_fonts(font_size, paper):
    """A narrow symmetric bar at a larger font: its labels never overprint (the three labels give way
    to one centred "±v" when they would not fit)."""
    for view in ("exact", "contrast"):
        for scope in ("pair", "map"):
            fig = pair_figure(paper, view, FigureSettings(width="single", scope=scope, font_size=font_size))
            assert layout_problems(fig) == [], (view, scope, font_size)
            texts = [t.get_text() for t in fig.findobj(Text)]
            plt.close(fig)
            assert any(t.startswith("±") for t in texts) or texts.count("0") >= 1, (view, scope)


@pytest.mark.parametrize("width", ["single", "double", 5.0])
def test_multi_pair_figure_rows_fit(width):
    pairs = [paper_explanation(seed) for seed in range(3)]
    for view in ("summary", "cams", "channels", "exact", "gates"):
        fig = multi_pair_figure(pairs, view, FigureSettings(width=width, scope="models"), names=["a.png / b.png"] * 3)
        assert layout_problems(fig) == [], (view, width)


def test_titles_are_human_readable_and_letters_sit_beside_them():
    e = paper_explanation()
    fig = pair_figure(e, "ltpa", FigureSettings(width="double"))
    renderer, texts = _texts(fig)
    words = " ".join(t.get_text().replace("\n", " ") for t, _ in texts)
    assert "LTPA, g = gated self feature, last stage" in words
    assert "baseline LTPA, g = pooled feature, last stage" in words
    assert "apinet/" not in words and "apinet " not in words  # no internal keys
    cams = " ".join(t.get_text().replace("\n", " ") for t, _ in _texts(pair_figure(e, "cams"))[1])
    assert "Grad-CAM, pair path" in cams and "baseline Grad-CAM, test path" in cams
    contrast = " ".join(t.get_text().replace("\n", " ") for t, _ in _texts(pair_figure(e, "contrast"))[1])
    assert "class contrast, own class - partner's, pair path" in contrast and "Finer-CAM, test path" in contrast
    rows = " ".join(t.get_text().replace("\n", " ") for t, _ in _texts(multi_pair_figure([e, e], "cams"))[1])
    assert rows.count("Grad-CAM, pair path") == 1  # a column title once, where every row has the same one
    assert rows.count("pair 1") == rows.count("pair 2") == 1
    channels = " ".join(t.get_text().replace("\n", " ") for t, _ in _texts(pair_figure(e, "channels"))[1])
    top = int(e.channels["apinet_gate1"].indices[0])
    assert f"channel {top} (g₁ {e.gate1[top]:.2f})" in channels
    # Letter a belongs to the images column, b to the first map: each left of its image, at its top.
    letters = {t.get_text(): (t, box) for t, box in texts if len(t.get_text()) == 1 and t.get_fontweight() == "bold"}
    assert {"a", "b", "c", "d"} <= set(letters)
    for t, box in letters.values():
        image = t.axes.get_window_extent(renderer)
        assert box.x1 <= image.x0 + 1 and box.y1 >= image.y1 - 1 - box.height


def test_one_colour_bar_per_scale_under_its_panels():
    e = paper_explanation()

    def bars(fig):  # colour-bar axes: an image 1 px high and 256 wide
        every = [a for ax in fig.get_axes() for a in (ax, *ax.child_axes)]
        return [ax for ax in every if ax.images and ax.images[0].get_array().shape[:2] == (1, 256)]

    cams = [k for k in e.cams]
    pair = pair_figure(e, "cams", FigureSettings(scope="pair", width="double"))
    assert len(bars(pair)) == len(cams)  # one scale per pair of maps
    models = pair_figure(e, "cams", FigureSettings(scope="models", width="double"))
    assert len(bars(models)) == 1  # one scale for every CAM
    per_map = pair_figure(e, "cams", FigureSettings(scope="map", width="double"))
    assert len(bars(per_map)) == 2 * len(cams)
    # Several pairs (or channel sets) on one "models" scale: still one bar per kind of map.
    rows = multi_pair_figure([e, paper_explanation(1)], "summary", FigureSettings(scope="models"))
    assert len(bars(rows)) == 3  # activation (API-Net and baseline channels), LTPA, CAM
    assert len(bars(multi_pair_figure([e, e], "cams", FigureSettings(scope="pair")))) == 2 * len(cams)
    assert len(bars(pair_figure(e, "channels", FigureSettings(scope="models")))) == 1
    renderer, _ = _texts(pair)
    images = [ax for ax in pair.get_axes() if ax.images]
    for bar in bars(pair):
        b = bar.get_window_extent(renderer)
        above = [ax.get_window_extent(renderer) for ax in images
                 if ax.get_window_extent(renderer).x0 < b.x1 and ax.get_window_extent(renderer).x1 > b.x0]
        assert len(above) == 2 and all(a.y0 >= b.y1 for a in above)  # directly under the two maps it describes


def test_widths_and_fonts_are_validated_and_round_trip():
    s = FigureSettings(width=4.5, view="exact", scope="models")
    assert FigureSettings.from_json(s.to_json()) == s and s.width_inches == 4.5
    assert FigureSettings(width="single").width_inches == 3.3
    with pytest.raises(ValueError, match="width"):
        FigureSettings(width="huge")
    with pytest.raises(ValueError, match="7"):
        FigureSettings(font_size=6)
    with pytest.raises(ValueError, match="diverging"):
        FigureSettings(diverging_cmap="viridis")
