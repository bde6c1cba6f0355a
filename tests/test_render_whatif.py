"""apinet.render.whatif: the before / after figure and the occluded image as the model saw it."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from apinet import APINet
from apinet.explain.whatif import HalfGates, Occlude, SetGate, SwapGates, WhatIfPair
from apinet.render.whatif import baseline_colour, describe_intervention, occluded_image, whatif_figure


def test_occluded_image_fills_exactly_the_cells():
    image = np.full((8, 12, 3), 200, np.uint8)
    mask = np.zeros((2, 3), bool)
    mask[1, 2] = True
    out = occluded_image(image, mask, (128, 127, 126))
    assert (out[4:, 8:] == [128, 127, 126]).all() and (out[:4] == 200).all() and (out[:, :8] == 200).all()
    assert (image == 200).all() and (occluded_image(image, None) == image).all()
    expl = SimpleNamespace(settings={"preprocess": {"mean": [0.485, 0.456, 0.406]}})
    assert baseline_colour(expl) == (124, 116, 104)
    assert baseline_colour(SimpleNamespace(settings={})) == (128, 128, 128)


def test_describe_intervention_in_plain_words():
    assert describe_intervention(HalfGates()) == "every gate set to 0.5 (no attention)"
    assert describe_intervention(SwapGates()) == "gates swapped (A gets g₂, B gets g₁)"
    assert describe_intervention(SetGate(2, 17, 0.0)) == "B's gate of channel 17 set to 0"
    assert describe_intervention(Occlude(1, frozenset({(0, 0), (1, 1)}), (14, 14))).startswith(
        "2 of 196 cells of A hidden")
    assert describe_intervention(Occlude(2, frozenset(), (14, 14))) == "every cell of B shown again"


@pytest.mark.parametrize("width", ["single", "double"])
def test_whatif_figure_draws_the_logit_gaps_and_the_changes(width):
    torch.manual_seed(0)
    model = APINet("resnet18", num_classes=4, output_stride=16).eval()
    pair = WhatIfPair(model, (0, 2), inputs=torch.randn(2, 3, 64, 64))
    result = pair.run([Occlude(1, frozenset({(0, 0)}), (4, 4)), HalfGates()])
    expl = SimpleNamespace(image1=np.zeros((64, 64, 3), np.uint8), image2=np.zeros((64, 64, 3), np.uint8),
                           settings={})
    fig = whatif_figure(expl, result, width=width)
    gaps, changes, text, *images = fig.axes
    heights = [p.get_height() for p in gaps.patches]
    b, a = result.before, result.after
    assert heights == pytest.approx([b.logit_gap(1), b.logit_gap(2), a.logit_gap(1), a.logit_gap(2)])
    assert heights[2] == heights[3] == 0.0  # gates 0.5: self and other logits coincide
    keys = ((1, "self"), (1, "other"), (2, "self"), (2, "other"))
    assert [p.get_height() for p in changes.patches] == pytest.approx([a.logit(i, k) - b.logit(i, k) for i, k in keys])
    assert (np.asarray(images[1].images[0].get_array())[:16, :16] == 128).all()  # the occluded cell, as the model saw it
    assert "1 of 16 cells of A hidden" in text.texts[0].get_text()
    assert fig.get_figwidth() == pytest.approx(3.3 if width == "single" else 6.9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="at least 7"):
        whatif_figure(expl, result, font_size=5)


def test_whatif_figure_takes_the_export_background():
    """White, transparent or dark like the other figures (the Export tab's choice), with light text on dark."""
    from matplotlib.colors import to_rgba

    torch.manual_seed(0)
    model = APINet("resnet18", num_classes=4, output_stride=16).eval()
    result = WhatIfPair(model, (0, 2), inputs=torch.randn(2, 3, 64, 64)).run([SwapGates()])
    expl = SimpleNamespace(image1=np.zeros((64, 64, 3), np.uint8), image2=np.zeros((64, 64, 3), np.uint8),
                           settings={})
    white, clear, dark = (whatif_figure(expl, result, background=b) for b in ("white", "transparent", "dark"))
    assert to_rgba(white.get_facecolor()) == to_rgba("white")
    assert to_rgba(clear.get_facecolor())[3] == 0 and to_rgba(clear.axes[0].get_facecolor())[3] == 0
    assert to_rgba(dark.get_facecolor()) == to_rgba("#0e1117")
    text = dark.axes[2].texts[0]  # the lines under the charts
    assert to_rgba(text.get_color()) == to_rgba("#f0f2f6")
    assert to_rgba(white.axes[2].texts[0].get_color()) == to_rgba("black")
    with pytest.raises(ValueError, match="background must be one of white, transparent, dark"):
        whatif_figure(expl, result, background="blue")
