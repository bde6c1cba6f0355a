"""Which maps a view shows, in display units, with human-readable labels and display ranges.

Units. Channel maps are raw activations (before global pooling). CAMs are raw CAM values
(ReLU(sum_c w_c A_c)), never grad-cam's per-map min-max. LTPA softmax maps sum to 1, so every value
is about 1/(h*w); they are displayed as ``a * h * w``, "multiples of uniform attention" (1 = the
weight every position would get from uniform attention), which keeps the ratio between positions
and between images exact. A^2 gather maps are shown the same way. Exact pair-path maps are signed
logit contributions per position (their mean is the logit, or the self - other difference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .overlays import overlay
from .scales import Scope, check_scope, scope_ranges

if TYPE_CHECKING:  # pragma: no cover
    from ..explain import PairExplanation

__all__ = ["GATE_SYMBOLS", "LTPA_UNITS", "OverlayGrid", "Panel", "assign_ranges", "channel_heading", "display_maps",
           "overlay_grid", "summary_panels"]

LTPA_UNITS = "a·h·w (1 = uniform attention)"
EXACT_UNITS = "logit contribution"

_MODELS = {"apinet": "API-Net", "baseline": "baseline"}
_CAM_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "layercam": "LayerCAM", "eigencam": "Eigen-CAM",
              "hirescam": "HiResCAM", "xgradcam": "XGrad-CAM", "finercam": "Finer-CAM",
              "class_contrast": "class contrast, own class - partner's"}
#: Exact maps (``expl.exact_cams``): kind -> human label.
EXACT_KINDS = {"self": "exact CAM, pair path (own gate)", "other": "exact CAM, partner's gate",
               "contrast": "contrast: own gate - partner's gate"}


@dataclass
class Panel:
    """One displayed pair of maps (image 1, image 2) with its display ranges and units.

    ``title`` is the compact two-line caption the app shows; ``label`` the human-readable figure
    title ("Grad-CAM, pair path"). ``signed`` maps get symmetric ranges and a diverging colormap.
    """

    key: str
    title: str
    map1: np.ndarray
    map2: np.ndarray
    units: str
    overlay1: np.ndarray | None = None  # [H, W, 3] uint8 once rendered
    overlay2: np.ndarray | None = None
    range1: tuple[float, float] = (0.0, 1.0)
    range2: tuple[float, float] = (0.0, 1.0)
    group: str = ""  # model the maps come from ("apinet", "baseline"): the unit of scope "pair"
    label: str = ""
    signed: bool = False

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.title.replace("\n", ", ")


def _model_prefix(model: str) -> str:
    """'' for API-Net (the subject of every figure), 'baseline ' for the baseline."""
    return "" if model == "apinet" else f"{_MODELS.get(model, model)} "


def _last_stage(expl: PairExplanation, model: str) -> str | None:
    for key, a in expl.ltpa.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == model and parts[1] == "pooled" and "the pooled feature" in a.label:
            return parts[2]
    return None


def ltpa_label(expl: PairExplanation, key: str) -> str:
    """``"LTPA, g = gated self feature, last stage"`` for ``"apinet/gated/layer4"``."""
    parts = key.split("/")
    if len(parts) != 3:
        return key.replace("/", " ")
    model, kind, stage = parts
    last = stage == _last_stage(expl, model)
    where = "last stage" if last else stage
    query = {"pooled": "g = pooled feature" if last else f"g = pooled {stage}",
             "gated": "g = gated self feature", "trained": "trained estimator"}.get(kind, kind)
    return f"{_model_prefix(model)}LTPA, {query}, {where}"


def cam_label(key: str, method: str) -> str:
    """``"Grad-CAM, pair path"`` for ``"apinet/pair/gradcam"``."""
    parts = str(key).split("/")
    name = _CAM_NAMES.get(str(method), str(method))
    if len(parts) != 3:
        return name
    model, path = parts[0], parts[1]
    return f"{_model_prefix(model)}{name}, {path} path"


def _channel_label(expl: PairExplanation, name: str, i1: int, i2: int, score: float) -> str:
    what = _score_name(name, expl)
    word = {"g": "gate", "g*x": "g·x", "x": "activation", "W(1+g)x": "contribution W(1+g)x"}[what]
    if name.startswith("apinet_gate") and what not in ("x", "W(1+g)x"):
        sub = GATE_SYMBOLS.get(name[-1], name[-1])
        word = sub if what == "g" else f"{sub}·x"
    # "channels 4 / 889" read as two channels of one image; say which image has which channel
    ch = f"channel {i1}" if i1 == i2 else f"channel {i1} on A, {i2} on B"
    return f"{ch} ({word} {score:.2f})"


#: The gate of image A / B as the app writes it (g₁ is A's gate, g₂ is B's).
GATE_SYMBOLS = {"1": "g₁", "2": "g₂"}


def channel_heading(expl: PairExplanation, name: str, n: int) -> str:
    """The heading of channel set ``name`` when ``n`` of its channels are shown (the stored label
    names the K_MAX channels the explanation kept, not the ``n`` a figure draws)."""
    import re

    headings = {"apinet_gate1": f"API-Net: top-{n} channels of A's gate g₁",
                "apinet_gate2": f"API-Net: top-{n} channels of B's gate g₂",
                "baseline_top": f"Baseline: its own top-{n} channels of each image",
                "baseline_at_apinet": f"Baseline at API-Net's top-{n} channels of g₁"}
    if name in headings:
        return headings[name]
    label = expl.channels[name].label if name in expl.channels else name
    return re.sub(r"top-\d+", f"top-{n}", label)


def _exact_array(record: Any) -> np.ndarray:
    """The display array of an ``expl.exact_cams`` record (an array, or a record with one)."""
    if isinstance(record, np.ndarray):
        return record
    for name in ("raw", "display", "map"):  # feature-map resolution first: overlay() upsamples
        value = getattr(record, name, None)
        if isinstance(value, np.ndarray) and value.ndim == 2:
            return value
    raise ValueError(f"cannot find the display map of exact-map record {type(record).__name__}")


def display_maps(expl: PairExplanation, view: str, *, k: int | None = None,
                 channel_sets: Sequence[str] | None = None, ltpa_keys: Sequence[str] | None = None,
                 cam_keys: Sequence[str] | None = None) -> list[Panel]:
    """The panels of a view (``"channels"``, ``"ltpa"``, ``"cams"``, ``"a2"``, ``"exact"``,
    ``"contrast"``), maps in display units; maps whose record says ``signed`` get ``Panel.signed``."""
    panels: list[Panel] = []
    if view == "channels":
        for name in channel_sets or list(expl.channels):
            c = expl.channels[name]
            n = len(c.indices) if k is None else min(k, len(c.indices))
            for j in range(n):
                second = c.indices2 if c.indices2 is not None else c.indices
                i1, i2 = int(c.indices[j]), int(np.asarray(second)[j])
                ch = f"ch {i1}" if i1 == i2 else f"ch {i1} / {i2}"
                panels.append(Panel(f"{name}/{j}", f"{ch}\n{_score_name(name, expl)} {c.scores[j]:.2f}",
                                    c.maps1[j], c.maps2[j], "activation", group=name,
                                    label=_channel_label(expl, name, i1, i2, float(c.scores[j]))))
    elif view == "ltpa":
        for key in ltpa_keys or list(expl.ltpa):
            a = expl.ltpa[key]
            h, w = a.map1.shape
            factor = float(h * w) if a.normalisation.startswith("softmax") else 1.0
            units = LTPA_UNITS if factor != 1.0 else "attention"
            panels.append(Panel(key, key.replace("/", " "), a.map1 * factor, a.map2 * factor, units,
                                group=key.split("/")[0], label=ltpa_label(expl, key)))
    elif view in ("cams", "contrast"):
        source = expl.cams if view == "cams" else (getattr(expl, "contrast_cams", None) or {})
        for key in (cam_keys if view == "cams" else None) or list(source):
            c = source[key]
            signed = bool(getattr(c, "signed", False))
            units = EXACT_UNITS if signed else f"{c.method} (raw)"
            name = str(key)
            panels.append(Panel(name, name.replace("/", " "), c.map1, c.map2, units, group=name.split("/")[0],
                                label=cam_label(name, c.method), signed=signed))
    elif view == "a2":
        for key, a in expl.a2.items():
            n, h, w = a.gather1.shape
            model, _, stage = key.partition("/")
            panels.append(Panel(key, f"{key} gather (mean)", a.gather1.mean(0) * h * w,
                                a.gather2.mean(0) * h * w, LTPA_UNITS, group=model,
                                label=f"{_model_prefix(model)}A² gather maps (mean), after {stage or model}"))
    elif view == "exact":
        exact = getattr(expl, "exact_cams", None) or {}
        for kind, label in EXACT_KINDS.items():
            if f"1_{kind}" in exact and f"2_{kind}" in exact:
                panels.append(Panel(f"exact/{kind}", label.replace(", ", "\n", 1),
                                    _exact_array(exact[f"1_{kind}"]), _exact_array(exact[f"2_{kind}"]),
                                    EXACT_UNITS, group="apinet", label=label, signed=True))
    else:
        raise ValueError(f"unknown view {view!r}")
    return panels


def _score_name(channel_set: str, expl: PairExplanation) -> str:
    """The name of the value a channel set's ``scores`` hold: g, g*x (``rank_by="gate_x_activation"``)
    or the pooled activation x (baseline sets)."""
    if not channel_set.startswith("apinet"):
        return "x"
    rank_by = (expl.settings or {}).get("rank_by")
    return {"gate_x_activation": "g*x", "contribution": "W(1+g)x"}.get(rank_by, "g")


def summary_panels(expl: PairExplanation) -> list[Panel]:
    """The summary's picks: top gated channel, LTPA (gated, else pooled, last stage), the pair-path
    CAM, the baseline's top channel."""
    picks: list[Panel] = []
    c1 = expl.channels.get("apinet_gate1")
    if c1 is not None:
        c2 = expl.channels["apinet_gate2"]
        i1, i2 = int(c1.indices[0]), int(c2.indices[0])
        label = f"top gated channel: A {i1} (by g₁), B {i2} (by g₂)"
        picks.append(Panel("gate", f"top gated channel\nA {i1} · B {i2}", c1.maps1[0], c2.maps2[0], "activation",
                           group="apinet", label=label))
    for kind in ("apinet/gated/", "apinet/pooled/"):
        keys = [k for k in expl.ltpa if k.startswith(kind)]
        if keys:
            picks.extend(display_maps(expl, "ltpa", ltpa_keys=[keys[-1]]))
            break
    cam_keys = [k for k in expl.cams if k.startswith("apinet/pair/")] or [k for k in expl.cams
                                                                          if k.startswith("apinet/")]
    if cam_keys:
        picks.extend(display_maps(expl, "cams", cam_keys=cam_keys[:1]))
    if "baseline_top" in expl.channels:
        b = expl.channels["baseline_top"]
        i1, i2 = int(b.indices[0]), int(np.asarray(b.indices2)[0])
        which = f"channel {i1}" if i1 == i2 else f"channel A {i1}, B {i2}"
        picks.append(Panel("baseline", f"baseline top channel\nA {i1} · B {i2}", b.maps1[0], b.maps2[0],
                           "activation", group="baseline", label=f"baseline top {which}"))
    return picks


def assign_ranges(panels: list[Panel], scope: Scope, percentile: float | None = None) -> None:
    """Set every panel's ``range1`` / ``range2`` per the scope (:func:`~apinet.render.scope_ranges`:
    one panel is one group; ``"models"`` shares a range between panels with the same units)."""
    check_scope(scope)
    if not panels:
        return
    ranges = scope_ranges([[p.map1, p.map2] for p in panels], scope, percentile=percentile,
                          units=[p.units for p in panels], signed=[p.signed for p in panels])
    for p, (r1, r2) in zip(panels, ranges):
        p.range1, p.range2 = r1, r2


def render_overlays(expl: PairExplanation, panels: list[Panel], cmap: str, alpha: float,
                    diverging_cmap: str = "RdBu_r") -> None:
    """Fill every panel's overlays at its ranges (signed panels in ``diverging_cmap``)."""
    for p in panels:
        c = diverging_cmap if p.signed else cmap
        p.overlay1 = overlay(expl.image1, p.map1, cmap=c, alpha=alpha, vmin=p.range1[0], vmax=p.range1[1])
        p.overlay2 = overlay(expl.image2, p.map2, cmap=c, alpha=alpha, vmin=p.range2[0], vmax=p.range2[1])


@dataclass
class OverlayGrid:
    """Rendered overlays of one view: what the app shows, recomputed without a model."""

    view: str
    panels: list[Panel]
    cmap: str
    alpha: float
    scope: str


def overlay_grid(expl: PairExplanation, view: str = "channels", *, cmap: str = "viridis", alpha: float = 0.5,
                 k: int | None = None, scope: Scope = "pair", percentile: float | None = None,
                 diverging_cmap: str = "RdBu_r", **select: Any) -> OverlayGrid:
    """Overlays of every panel of ``view`` on both images, with ranges for the colour bars."""
    panels = summary_panels(expl) if view == "summary" else display_maps(expl, view, k=k, **select)
    assign_ranges(panels, scope, percentile)
    render_overlays(expl, panels, cmap, alpha, diverging_cmap)
    return OverlayGrid(view=view, panels=panels, cmap=cmap, alpha=alpha, scope=scope)
