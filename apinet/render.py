"""Overlays and publication figures from a :class:`~apinet.explain.PairExplanation` (no model calls).

* :func:`overlay` -- colour-map a map (OpenCV colormap, bilinear upsampling) over an image.
* :func:`scale_for` -- display ranges (vmin, vmax) in real units: per map, shared by the two images
  of a pair, or shared across models; colour bars show these units.
* :func:`overlay_grid` -- every overlay the app shows, re-rendered from the arrays in a few ms when
  a display setting (cmap, alpha, k, scope) changes.
* :func:`pair_figure` / :func:`save_figure` -- matplotlib figures with panel letters, titles and
  colour bars in real units; PDF / SVG keep editable text (``pdf.fonttype=42``,
  ``svg.fonttype="none"``). :class:`FigureSettings` round-trips through JSON so a figure can be
  remade from its settings.

Units. Channel maps are raw activations (before global pooling). CAMs are raw CAM values
(ReLU(sum_c w_c A_c)), never grad-cam's per-map min-max. LTPA softmax maps sum to 1, so every value
is about 1/(h*w); they are displayed as ``a * h * w``, "multiples of uniform attention" (1 = the
weight every position would get from uniform attention), which keeps the ratio between positions
and between images exact. A^2 gather maps are shown the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .explain import PairExplanation

__all__ = [
    "COLORMAPS",
    "VIEWS",
    "FigureSettings",
    "OverlayGrid",
    "Panel",
    "colorize",
    "colormap_lut",
    "display_maps",
    "overlay",
    "overlay_grid",
    "pair_figure",
    "save_figure",
    "scale_for",
]

Scope = Literal["map", "pair", "models"]
#: Views of :func:`pair_figure`.
VIEWS: tuple[str, ...] = ("summary", "channels", "ltpa", "cams", "gates", "a2")
_SCOPES = ("map", "pair", "models")

#: Colormap names accepted everywhere (OpenCV's built-in maps).
COLORMAPS: dict[str, str] = {
    "viridis": "COLORMAP_VIRIDIS", "inferno": "COLORMAP_INFERNO", "magma": "COLORMAP_MAGMA",
    "plasma": "COLORMAP_PLASMA", "cividis": "COLORMAP_CIVIDIS", "jet": "COLORMAP_JET",
    "turbo": "COLORMAP_TURBO", "hot": "COLORMAP_HOT", "parula": "COLORMAP_PARULA",
    "twilight": "COLORMAP_TWILIGHT", "bone": "COLORMAP_BONE", "ocean": "COLORMAP_OCEAN",
}
LTPA_UNITS = "a·h·w (1 = uniform attention)"


# --------------------------------------------------------------------------------------------------
# Overlays
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def colormap_lut(cmap: str) -> np.ndarray:
    """The 256-entry RGB lookup table ``[256, 3] uint8`` of an OpenCV colormap."""
    import cv2

    if cmap not in COLORMAPS:
        raise ValueError(f"unknown cmap {cmap!r}; choose from {', '.join(COLORMAPS)}")
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    bgr = cv2.applyColorMap(ramp, getattr(cv2, COLORMAPS[cmap]))
    lut = bgr[:, 0, ::-1].copy()
    lut.setflags(write=False)
    return lut


def _resize(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    m = np.asarray(m, dtype=np.float32)
    if m.shape == size:
        return m
    return cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def colorize(map_: np.ndarray, *, cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
             size: tuple[int, int] | None = None) -> np.ndarray:
    """Map values to colours: bilinear upsampling to ``size``, clip to [vmin, vmax], LUT -> uint8 RGB."""
    m = _resize(map_, size) if size is not None else np.asarray(map_, dtype=np.float32)
    lo = float(np.min(map_)) if vmin is None else float(vmin)
    hi = float(np.max(map_)) if vmax is None else float(vmax)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    index = np.clip((m - lo) * scale, 0, 255).astype(np.uint8)
    return colormap_lut(cmap)[index]


def overlay(image: np.ndarray, map_: np.ndarray, *, cmap: str = "viridis", alpha: float = 0.5,
            vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Blend ``map_ [h, w]`` (upsampled bilinearly) over ``image [H, W, 3] uint8``.

    ``alpha`` is the weight of the colour map (0: image only, 1: map only). ``vmin`` / ``vmax``
    default to the map's own range.
    """
    import cv2

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    colours = colorize(map_, cmap=cmap, vmin=vmin, vmax=vmax, size=image.shape[:2])
    return cv2.addWeighted(colours, float(alpha), image, 1.0 - float(alpha), 0.0)


def _range(arrays: Sequence[np.ndarray], percentile: float | None) -> tuple[float, float]:
    if percentile is None:
        return float(min(a.min() for a in arrays)), float(max(a.max() for a in arrays))
    values = np.concatenate([np.ravel(a) for a in arrays])
    return float(np.percentile(values, 100 - percentile)), float(np.percentile(values, percentile))


def scale_for(maps: Any, scope: Scope = "map", *, percentile: float | None = None) -> Any:
    """Display ranges ``(vmin, vmax)`` in the maps' own units (for colour bars).

    ``maps`` may be

    * one map ``[h, w]``: its range;
    * a flat sequence of maps (e.g. the two maps of a pair): ``"pair"`` / ``"models"`` give one
      range spanning them all; ``"map"`` gives a list with each map's own range (a one-element
      sequence gives that map's range directly);
    * a sequence of groups, one per model, each a sequence of maps
      (``[[api1, api2], [base1, base2]]``): a nested list of ranges with the same shape, where
      ``"map"`` = every map its own range, ``"pair"`` = one range per group, ``"models"`` = one range
      over everything.

    ``percentile`` (e.g. 99) uses the [100-p, p] percentiles instead of min / max (robust to a hot
    pixel).
    """
    if scope not in _SCOPES:
        raise ValueError(f"scope must be one of {_SCOPES}, got {scope!r}")
    if isinstance(maps, np.ndarray) and maps.ndim == 2:
        return _range([np.asarray(maps, dtype=np.float32)], percentile)
    if len(maps) == 0:
        raise ValueError("scale_for needs at least one map")
    flat = np.ndim(maps[0]) == 2
    if flat:
        arrays = [np.asarray(m, dtype=np.float32) for m in maps]
        if scope != "map":
            return _range(arrays, percentile)
        ranges = [_range([m], percentile) for m in arrays]
        return ranges[0] if len(ranges) == 1 else ranges
    groups = [[np.asarray(m, dtype=np.float32) for m in g] for g in maps]
    if scope == "map":
        return [[_range([m], percentile) for m in g] for g in groups]
    if scope == "pair":
        return [[_range(g, percentile)] * len(g) for g in groups]
    everything = _range([m for g in groups for m in g], percentile)
    return [[everything] * len(g) for g in groups]


# --------------------------------------------------------------------------------------------------
# Which maps a view shows, in display units
# --------------------------------------------------------------------------------------------------


@dataclass
class Panel:
    """One displayed pair of maps (image 1, image 2) with its display ranges and units."""

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


def display_maps(expl: PairExplanation, view: str, *, k: int | None = None,
                 channel_sets: Sequence[str] | None = None, ltpa_keys: Sequence[str] | None = None,
                 cam_keys: Sequence[str] | None = None) -> list[Panel]:
    """The panels of a view (``"channels"``, ``"ltpa"``, ``"cams"``, ``"a2"``), maps in display units."""
    panels: list[Panel] = []
    if view == "channels":
        for name in channel_sets or list(expl.channels):
            c = expl.channels[name]
            n = len(c.indices) if k is None else min(k, len(c.indices))
            for j in range(n):
                i1, i2 = int(c.indices[j]), int(np.asarray(c.indices2)[j])
                ch = f"ch {i1}" if i1 == i2 else f"ch {i1} / {i2}"
                panels.append(Panel(f"{name}/{j}", f"{ch}\n{_score_name(name, expl)} {c.scores[j]:.2f}",
                                    c.maps1[j], c.maps2[j], "activation", group=name))
    elif view == "ltpa":
        for key in ltpa_keys or list(expl.ltpa):
            a = expl.ltpa[key]
            h, w = a.map1.shape
            factor = float(h * w) if a.normalisation.startswith("softmax") else 1.0
            units = LTPA_UNITS if factor != 1.0 else "attention"
            panels.append(Panel(key, key.replace("/", " "), a.map1 * factor, a.map2 * factor, units,
                                group=key.split("/")[0]))
    elif view == "cams":
        for key in cam_keys or list(expl.cams):
            c = expl.cams[key]
            panels.append(Panel(key, key.replace("/", " "), c.map1, c.map2, f"{c.method} (raw)",
                                group=key.split("/")[0]))
    elif view == "a2":
        for key, a in expl.a2.items():
            n, h, w = a.gather1.shape
            panels.append(Panel(key, f"{key} gather (mean)", a.gather1.mean(0) * h * w,
                                a.gather2.mean(0) * h * w, LTPA_UNITS, group=key.split("/")[0]))
    else:
        raise ValueError(f"unknown view {view!r}")
    return panels


def _score_name(channel_set: str, expl: PairExplanation) -> str:
    """The name of the value a channel set's ``scores`` hold: g, g*x (``rank_by="gate_x_activation"``)
    or the pooled activation x (baseline sets)."""
    if not channel_set.startswith("apinet"):
        return "x"
    return "g*x" if (expl.settings or {}).get("rank_by") == "gate_x_activation" else "g"


def _assign_ranges(panels: list[Panel], scope: Scope, percentile: float | None) -> None:
    if scope == "map":
        for p in panels:
            p.range1, p.range2 = _range([p.map1], percentile), _range([p.map2], percentile)
    elif scope == "pair":
        for p in panels:
            p.range1 = p.range2 = _range([p.map1, p.map2], percentile)
    elif scope == "models":
        # Shared by every panel with the same units (never mixes activations with attention).
        by_units: dict[str, list[Panel]] = {}
        for p in panels:
            by_units.setdefault(p.units, []).append(p)
        for group in by_units.values():
            r = _range([m for p in group for m in (p.map1, p.map2)], percentile)
            for p in group:
                p.range1 = p.range2 = r
    else:
        raise ValueError(f"scope must be one of {_SCOPES}, got {scope!r}")


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
                 **select: Any) -> OverlayGrid:
    """Overlays of every panel of ``view`` on both images, with ranges for the colour bars."""
    panels = display_maps(expl, view, k=k, **select)
    _assign_ranges(panels, scope, percentile)
    for p in panels:
        p.overlay1 = overlay(expl.image1, p.map1, cmap=cmap, alpha=alpha, vmin=p.range1[0], vmax=p.range1[1])
        p.overlay2 = overlay(expl.image2, p.map2, cmap=cmap, alpha=alpha, vmin=p.range2[0], vmax=p.range2[1])
    return OverlayGrid(view=view, panels=panels, cmap=cmap, alpha=alpha, scope=scope)


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


@dataclass
class FigureSettings:
    """Everything that decides how a figure looks; ``to_json`` / ``from_json`` reproduce it."""

    view: str = "summary"  # one of VIEWS
    cmap: str = "viridis"
    alpha: float = 0.5
    scope: str = "pair"  # map | pair | models
    k: int = 5
    dpi: int = 300
    panel_inches: float = 1.15  # side of one image panel
    font_size: float = 7.0
    font_family: str = "DejaVu Sans"
    panel_letters: bool = True
    titles: bool = True
    colorbars: bool = True
    percentile: float | None = None
    title: str | None = None
    channel_sets: list[str] = field(default_factory=lambda: ["apinet_gate1", "apinet_gate2", "baseline_top"])
    ltpa_keys: list[str] | None = None  # None: all
    cam_keys: list[str] | None = None  # None: all

    def __post_init__(self) -> None:
        if self.scope not in _SCOPES:
            raise ValueError(f"scope must be one of {_SCOPES}, got {self.scope!r}")
        colormap_lut(self.cmap)  # validates the name
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> FigureSettings:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown figure settings {unknown}")
        return cls(**data)


def _mpl_cmap(name: str):
    from matplotlib.colors import ListedColormap

    return ListedColormap(colormap_lut(name) / 255.0, name=f"cv2_{name}")


def _colorbar(fig, ax, vrange: tuple[float, float], settings: FigureSettings, units: str | None = None) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    lo, hi = vrange
    if hi <= lo:
        hi = lo + 1e-12
    sm = ScalarMappable(norm=Normalize(lo, hi), cmap=_mpl_cmap(settings.cmap))
    cb = fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.02, aspect=15)
    cb.ax.tick_params(labelsize=settings.font_size - 2, length=2, pad=1)
    cb.ax.yaxis.get_offset_text().set_fontsize(settings.font_size - 2)
    if units:
        cb.set_label(units, fontsize=settings.font_size - 2, labelpad=1)


def _letter(ax, index: int, settings: FigureSettings) -> None:
    if settings.panel_letters:
        ax.text(-0.08, 1.02, chr(ord("a") + index), transform=ax.transAxes, fontsize=settings.font_size + 2,
                fontweight="bold", va="bottom", ha="right")


def _image_axis(ax, image: np.ndarray, title: str | None, settings: FigureSettings) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title and settings.titles:
        ax.set_title(title, fontsize=settings.font_size, pad=2)


def _new_figure(rows: int, cols: int, settings: FigureSettings, extra_width: float = 0.0):
    from matplotlib.figure import Figure

    width = settings.panel_inches * cols * (1.25 if settings.colorbars else 1.0) + extra_width
    height = settings.panel_inches * rows * 1.25 + (0.3 if settings.title else 0.0)
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    if settings.title:
        fig.suptitle(settings.title, fontsize=settings.font_size + 1)
    return fig, axes


def _names(expl: PairExplanation) -> tuple[str, str]:
    n = expl.class_names
    return n[expl.targets[0]], n[expl.targets[1]]


def _draw_pair_rows(fig, axes, expl: PairExplanation, panels: list[Panel], settings: FigureSettings) -> None:
    """Column 0: the two images; column j: panel j's overlays on image 1 (row 0) and image 2 (row 1)."""
    name1, name2 = _names(expl)
    _image_axis(axes[0, 0], expl.image1, f"image 1\n{name1}", settings)
    _image_axis(axes[1, 0], expl.image2, f"image 2\n{name2}", settings)
    _letter(axes[0, 0], 0, settings)
    for j, p in enumerate(panels, start=1):
        _image_axis(axes[0, j], p.overlay1, p.title, settings)
        _image_axis(axes[1, j], p.overlay2, None, settings)
        _letter(axes[0, j], j, settings)
        if settings.colorbars:
            if p.range1 == p.range2:
                _colorbar(fig, [axes[0, j], axes[1, j]], p.range1, settings, p.units)
            else:
                _colorbar(fig, axes[0, j], p.range1, settings)
                _colorbar(fig, axes[1, j], p.range2, settings, p.units)


def _grid_figure(expl: PairExplanation, panels: list[Panel], settings: FigureSettings, columns_are: str):
    """Images in column 0; one column per panel; row 1 = image 1, row 2 = image 2."""
    fig, axes = _new_figure(2, len(panels) + 1, settings)
    _draw_pair_rows(fig, axes, expl, panels, settings)
    return fig


def _channels_figure(expl: PairExplanation, settings: FigureSettings):
    sets = [s for s in settings.channel_sets if s in expl.channels]
    if not sets:
        raise ValueError(f"none of the channel sets {settings.channel_sets} are in this explanation")
    grids = {s: overlay_grid(expl, "channels", cmap=settings.cmap, alpha=settings.alpha, k=settings.k,
                             scope=settings.scope, percentile=settings.percentile, channel_sets=[s]).panels
             for s in sets}
    if settings.scope == "models":  # one range across every set
        everything = [p for ps in grids.values() for p in ps]
        _assign_ranges(everything, "models", settings.percentile)
        for p in everything:
            p.overlay1 = overlay(expl.image1, p.map1, cmap=settings.cmap, alpha=settings.alpha, vmin=p.range1[0],
                                 vmax=p.range1[1])
            p.overlay2 = overlay(expl.image2, p.map2, cmap=settings.cmap, alpha=settings.alpha, vmin=p.range2[0],
                                 vmax=p.range2[1])
    cols = 1 + max(len(ps) for ps in grids.values())
    fig, axes = _new_figure(2 * len(sets), cols, settings)
    name1, name2 = _names(expl)
    for si, s in enumerate(sets):
        r = 2 * si
        _image_axis(axes[r, 0], expl.image1, f"{expl.channels[s].label}\nimage 1: {name1}", settings)
        _image_axis(axes[r + 1, 0], expl.image2, f"image 2: {name2}", settings)
        _letter(axes[r, 0], si, settings)
        for j in range(1, cols):
            if j > len(grids[s]):
                axes[r, j].axis("off")
                axes[r + 1, j].axis("off")
                continue
            p = grids[s][j - 1]
            _image_axis(axes[r, j], p.overlay1, p.title, settings)
            _image_axis(axes[r + 1, j], p.overlay2, None, settings)
            if settings.colorbars:
                if p.range1 == p.range2:
                    _colorbar(fig, [axes[r, j], axes[r + 1, j]], p.range1, settings, "activation")
                else:
                    _colorbar(fig, axes[r, j], p.range1, settings)
                    _colorbar(fig, axes[r + 1, j], p.range2, settings, "activation")
    return fig


def _summary_figure(expl: PairExplanation, settings: FigureSettings):
    """Images, top gated channel, LTPA, pair-path CAM, baseline top channel; gate and score bars."""
    picks: list[Panel] = []
    c1 = expl.channels.get("apinet_gate1")
    if c1 is not None:
        c2 = expl.channels["apinet_gate2"]
        picks.append(Panel("gate", f"top gated channel\nch {c1.indices[0]} / {c2.indices[0]}",
                           c1.maps1[0], c2.maps2[0], "activation", group="apinet"))
    for key in ("apinet/gated/", "apinet/pooled/"):
        keys = [k for k in expl.ltpa if k.startswith(key)]
        if keys:
            picks.extend(display_maps(expl, "ltpa", ltpa_keys=[keys[-1]]))
            break
    cam_keys = [k for k in expl.cams if k.startswith("apinet/pair/")] or [k for k in expl.cams
                                                                          if k.startswith("apinet/")]
    if cam_keys:
        picks.extend(display_maps(expl, "cams", cam_keys=cam_keys[:1]))
    if "baseline_top" in expl.channels:
        b = expl.channels["baseline_top"]
        picks.append(Panel("baseline", f"baseline top channel\nch {b.indices[0]} / {b.indices2[0]}",
                           b.maps1[0], b.maps2[0], "activation", group="baseline"))
    _assign_ranges(picks, settings.scope, settings.percentile)
    for p in picks:
        p.overlay1 = overlay(expl.image1, p.map1, cmap=settings.cmap, alpha=settings.alpha, vmin=p.range1[0],
                             vmax=p.range1[1])
        p.overlay2 = overlay(expl.image2, p.map2, cmap=settings.cmap, alpha=settings.alpha, vmin=p.range2[0],
                             vmax=p.range2[1])
    from matplotlib.figure import Figure

    cols = len(picks) + 1
    width = settings.panel_inches * cols * (1.25 if settings.colorbars else 1.0)
    fig = Figure(figsize=(width, settings.panel_inches * 2.5 + 1.3), dpi=100, layout="constrained")
    grid = fig.add_gridspec(3, cols, height_ratios=[1, 1, 0.9])
    axes = np.array([[fig.add_subplot(grid[r, c]) for c in range(cols)] for r in range(2)])
    _draw_pair_rows(fig, axes, expl, picks, settings)
    half = max(1, cols // 2)
    bars = fig.add_subplot(grid[2, :half])
    _gate_bars(bars, expl, settings)
    _letter(bars, len(picks) + 1, settings)
    scores = fig.add_subplot(grid[2, half:])
    _score_bars(scores, expl, settings)
    _letter(scores, len(picks) + 2, settings)
    if settings.title:
        fig.suptitle(settings.title, fontsize=settings.font_size + 1)
    return fig


def _gates_figure(expl: PairExplanation, settings: FigureSettings):
    """Gate values at the top-k channels of g1 and the self / other scores of both images."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(settings.panel_inches * 5, settings.panel_inches * 1.8), dpi=100, layout="constrained")
    left, right = fig.subplots(1, 2)
    _gate_bars(left, expl, settings)
    _score_bars(right, expl, settings)
    _letter(left, 0, settings)
    _letter(right, 1, settings)
    if settings.title:
        fig.suptitle(settings.title, fontsize=settings.font_size + 1)
    return fig


def _style_axis(ax, settings: FigureSettings) -> None:
    ax.tick_params(labelsize=settings.font_size - 1, length=2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _gate_bars(ax, expl: PairExplanation, settings: FigureSettings) -> None:
    c = expl.channels.get("apinet_gate1")
    idx = c.indices[: settings.k] if c is not None else np.asarray(expl.gate_order1)[: settings.k]
    pos = np.arange(len(idx))
    ax.bar(pos - 0.2, expl.gate1[idx], 0.4, label="g1", color="#1b6ca8")
    ax.bar(pos + 0.2, expl.gate2[idx], 0.4, label="g2", color="#e07b39")
    ax.set_xticks(pos, [str(i) for i in idx])
    by_act = (expl.settings or {}).get("rank_by") == "gate_x_activation"
    ax.set_xlabel(f"channel (top-k of {'g1*x1' if by_act else 'g1'})", fontsize=settings.font_size)
    ax.set_ylabel("gate value", fontsize=settings.font_size)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=settings.font_size - 1, frameon=False)
    _style_axis(ax, settings)


def _score_bars(ax, expl: PairExplanation, settings: FigureSettings) -> None:
    values = [expl.p_self1, expl.p_other1, expl.p_self2, expl.p_other2]
    labels = ["img1 self", "img1 other", "img2 self", "img2 other"]
    ax.bar(np.arange(4), values, color=["#1b6ca8", "#8fb8d8", "#e07b39", "#f0bd9c"])
    ax.set_xticks(np.arange(4), labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel("p(reference class)", fontsize=settings.font_size)
    ax.set_title(f"ranking terms {expl.rank_term1:.3f} / {expl.rank_term2:.3f}", fontsize=settings.font_size)
    _style_axis(ax, settings)


def pair_figure(expl: PairExplanation, view: str | None = None, settings: FigureSettings | None = None) -> Figure:
    """A publication figure of one view of ``expl`` (``view`` overrides ``settings.view``)."""
    from matplotlib import rc_context

    settings = settings or FigureSettings()
    view = view or settings.view
    with rc_context({"font.size": settings.font_size, "font.family": settings.font_family}):
        if view == "channels":
            return _channels_figure(expl, settings)
        if view == "summary":
            return _summary_figure(expl, settings)
        if view == "gates":
            return _gates_figure(expl, settings)
        if view in ("ltpa", "cams", "a2"):
            select = {"ltpa": {"ltpa_keys": settings.ltpa_keys}, "cams": {"cam_keys": settings.cam_keys},
                      "a2": {}}[view]
            grid = overlay_grid(expl, view, cmap=settings.cmap, alpha=settings.alpha, scope=settings.scope,
                                percentile=settings.percentile, **select)
            if not grid.panels:
                raise ValueError(f"this explanation has no {view} maps")
            return _grid_figure(expl, grid.panels, settings, view)
    raise ValueError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")


def save_figure(fig: Figure, path: Any, dpi: int = 300, *, format: str | None = None,
                settings: FigureSettings | None = None) -> Any:
    """Save as PDF / SVG (editable text) or PNG (at ``dpi``).

    ``path`` is a file path (format from its suffix) or a binary file object (pass ``format``).
    With ``settings``, ``<path>.settings.json`` is written beside a file path, so the figure can be
    remade from it.
    """
    from matplotlib import rc_context

    is_path = isinstance(path, (str, Path))
    fmt = (format or (Path(path).suffix.lstrip(".") if is_path else "")).lower()
    if fmt not in ("pdf", "svg", "png"):
        raise ValueError(f"figure format must be pdf, svg or png, got {fmt or path!r}")
    def write(target: Any) -> None:
        with rc_context({"svg.fonttype": "none", "pdf.fonttype": 42, "ps.fonttype": 42}):
            fig.savefig(target, format=fmt, dpi=dpi, metadata=_metadata(fmt))

    if not is_path:
        write(path)
        return path
    from ._io import atomic_write

    path = Path(path)
    atomic_write(path, write)  # a crash or a full disk never leaves a half-written figure
    if settings is not None:
        text = settings.to_json() + "\n"
        atomic_write(path.with_suffix(path.suffix + ".settings.json"), lambda tmp: tmp.write_text(text))
    return path


def _metadata(fmt: str) -> dict[str, Any]:
    # Reproducible files: no creation date in PDF / SVG.
    if fmt == "pdf":
        return {"Creator": "API-Net Explorer", "CreationDate": None}
    if fmt == "svg":
        return {"Creator": "API-Net Explorer", "Date": None}
    return {"Software": "API-Net Explorer"}
