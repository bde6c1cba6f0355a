"""Publication figures of one pair (:func:`pair_figure`) or several pairs as rows (:func:`multi_pair_figure`).

Sized for a paper: ``FigureSettings.width`` is ``"single"`` (3.3 in, one column), ``"double"`` (6.9 in,
two columns) or inches; panels wrap into more rows rather than shrink below a readable size, and
every text is at least 7 pt. PDF / SVG keep editable text (``pdf.fonttype=42``, ``svg.fonttype="none"``);
:class:`FigureSettings` round-trips through JSON so a figure can be remade from its settings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _layout as L
from .notes import RELU6_FIGURE_NOTE, channel_set_clips
from .overlays import colormap_lut, is_diverging
from .panels import Panel, assign_ranges, channel_heading, display_maps, render_overlays, summary_panels
from .scales import check_scope
from .views import get_view

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..explain import PairExplanation

__all__ = ["BACKGROUNDS", "background_rc", "FIGURE_WIDTHS", "MIN_FONT_SIZE", "PRESETS", "SLIDE_SIZE", "FigureSettings",
           "multi_pair_figure", "pair_figure", "save_figure"]

#: Named figure widths in inches: one column and two columns of a two-column paper, a 16:9 slide.
FIGURE_WIDTHS: dict[str, float] = {"single": 3.3, "double": 6.9, "slide": 13.333}
#: A 16:9 slide (PowerPoint / Keynote / Beamer "widescreen"), inches: ``width="slide"`` figures are this size.
SLIDE_SIZE = (13.333, 7.5)
#: Figure backgrounds: white (print), transparent (PNG / SVG / PDF over any slide), dark (dark slides).
BACKGROUNDS = ("white", "transparent", "dark")
#: Named starting points for FigureSettings (:meth:`FigureSettings.preset`).
PRESETS: dict[str, dict[str, Any]] = {
    "single": {"width": "single", "font_size": 7.0},
    "double": {"width": "double", "font_size": 7.0},
    "slide": {"width": "slide", "font_size": 12.0, "panel_inches": 2.6},
}
_DARK = {"figure.facecolor": "#0e1117", "axes.facecolor": "#0e1117", "savefig.facecolor": "#0e1117",
         "text.color": "#f0f2f6", "axes.labelcolor": "#f0f2f6", "axes.edgecolor": "#c9d1d9",
         "xtick.color": "#c9d1d9", "ytick.color": "#c9d1d9", "legend.labelcolor": "#f0f2f6"}
_CLEAR = {"figure.facecolor": (1, 1, 1, 0), "axes.facecolor": (1, 1, 1, 0), "savefig.facecolor": (1, 1, 1, 0)}
#: The smallest font size a figure may use, in points (at the figure's printed size).
MIN_FONT_SIZE = 7.0


def background_rc(background: str) -> dict[str, Any]:
    """The matplotlib rc parameters of a figure background (one of :data:`BACKGROUNDS`)."""
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
    return dict(_DARK if background == "dark" else _CLEAR if background == "transparent" else {})


def parse_width(width: str | float) -> float:
    """Inches of ``"single"``, ``"double"`` or a number (2 to 20)."""
    if isinstance(width, str) and width in FIGURE_WIDTHS:
        return FIGURE_WIDTHS[width]
    try:
        inches = float(width)
    except (TypeError, ValueError):
        raise ValueError(f"width must be 'single', 'double' or inches, got {width!r}") from None
    if not 2.0 <= inches <= 20.0:
        raise ValueError(f"width must be from 2 to 20 inches, got {width!r}")
    return inches


@dataclass
class FigureSettings:
    """Everything that decides how a figure looks; ``to_json`` / ``from_json`` reproduce it."""

    view: str = "summary"  # one of VIEWS
    cmap: str = "viridis"
    alpha: float = 0.5
    scope: str = "pair"  # map | pair | models
    k: int = 5
    dpi: int = 300
    panel_inches: float = 1.4  # the largest side of one image panel (few panels never blow up)
    font_size: float = 7.0  # points, at least MIN_FONT_SIZE
    font_family: str = "DejaVu Sans"
    panel_letters: bool = True
    titles: bool = True
    colorbars: bool = True
    percentile: float | None = None
    title: str | None = None
    channel_sets: list[str] = field(default_factory=lambda: ["apinet_gate1", "apinet_gate2", "baseline_top"])
    ltpa_keys: list[str] | None = None  # None: all
    cam_keys: list[str] | None = None  # None: all
    width: str | float = "double"  # "single" (3.3 in), "double" (6.9 in) or inches: the figure's largest width
    diverging_cmap: str = "RdBu_r"  # for signed maps (centred at 0, symmetric limits)
    background: str = "white"  # one of BACKGROUNDS

    def __post_init__(self) -> None:
        check_scope(self.scope)
        colormap_lut(self.cmap)  # validates the name
        if not is_diverging(self.diverging_cmap):
            raise ValueError(f"diverging_cmap must be a diverging colormap, got {self.diverging_cmap!r}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not self.font_size >= MIN_FONT_SIZE:
            raise ValueError(f"font_size must be at least {MIN_FONT_SIZE} pt, got {self.font_size}")
        if not 0.3 <= self.panel_inches <= 10:
            raise ValueError(f"panel_inches must be from 0.3 to 10, got {self.panel_inches}")
        parse_width(self.width)
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> FigureSettings:
        """Settings of a named preset (:data:`PRESETS`: ``single``, ``double``, ``slide``) with overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def is_slide(self) -> bool:
        return self.width == "slide"

    def rc(self) -> dict[str, Any]:
        """The matplotlib rc parameters of these settings (font, background, text colours)."""
        return {"font.size": self.font_size, "font.family": self.font_family, **background_rc(self.background)}

    @property
    def width_inches(self) -> float:
        return parse_width(self.width)

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


# --------------------------------------------------------------------------------------------------
# Sections: what each view shows
# --------------------------------------------------------------------------------------------------


def _panels(expl: PairExplanation, view: str, settings: FigureSettings,
            channel_set: str | None = None) -> list[Panel]:
    if view == "summary":
        return summary_panels(expl)
    if view == "channels":
        return display_maps(expl, "channels", k=settings.k, channel_sets=[channel_set])
    select = {"ltpa": {"ltpa_keys": settings.ltpa_keys}, "cams": {"cam_keys": settings.cam_keys}}.get(view, {})
    return display_maps(expl, view, **select)


def _channel_sets(expl: PairExplanation, settings: FigureSettings) -> list[str]:
    sets = [s for s in settings.channel_sets if s in expl.channels]
    if not sets:
        raise ValueError(f"none of the channel sets {settings.channel_sets} are in this explanation")
    return sets


def _channel_heading(expl: PairExplanation, channel_set: str, n: int) -> str:
    """A channel set's heading for ``n`` shown channels, with the ReLU6 note when its model's trunk is an
    EfficientNet-Lite."""
    label = channel_heading(expl, channel_set, n)
    return f"{label} · {RELU6_FIGURE_NOTE}" if channel_set_clips(expl, channel_set) else label


def _finish(expl: PairExplanation, sections: list[L.Section], settings: FigureSettings) -> None:
    """Ranges per scope (``models`` across every section) and overlays; same-units panels adjacent
    under ``models`` so that one bar can sit under all of them."""
    everything = [p for s in sections for p in s.panels]
    if settings.scope == "models":
        order = list(dict.fromkeys((p.units, p.signed) for p in everything))
        for s in sections:
            s.panels.sort(key=lambda p: order.index((p.units, p.signed)))
    assign_ranges(everything, settings.scope, settings.percentile)
    for s in sections:
        render_overlays(s.expl, s.panels, settings.cmap, settings.alpha, settings.diverging_cmap)


def _map_figure(sections: list[L.Section], settings: FigureSettings, letter_per_column: bool,
                bars: PairExplanation | None = None) -> Figure:
    width = settings.width_inches
    cols, side = L.plan_columns(max(1 + len(s.panels) for s in sections), settings)
    blocks = L.blocks_of(sections, cols, letter_per_column)
    if settings.scope == "models":
        L.share_bars(blocks)
    heights = [L.block_height(b, side, settings) for b in blocks]
    used = min(width, cols * (side + L.COLUMN_GAP) + L.EDGE)
    if bars is not None:
        heights.append(L.bars_height(settings)[0])
        used = width if L.bars_height(settings)[1] is False else used
    fig, subs = L.new_figure(used, heights, settings)
    for sf, block in zip(subs, blocks):
        L.draw_block(sf, block, side, cols, settings)
    if bars is not None:
        n = sum(1 for b in blocks for x in b.letters if x)
        L.draw_bars(subs[-1], bars, settings, (chr(ord("a") + n), chr(ord("a") + n + 1)))
    L.fit_height(fig)
    return fig


def pair_figure(expl: PairExplanation, view: str | None = None,
                settings: FigureSettings | None = None) -> Figure:
    """A publication figure of one view of ``expl`` (``view`` overrides ``settings.view``)."""
    settings = settings or FigureSettings()
    view = get_view(view or settings.view).slug
    return _slide_sized(lambda s: _pair_figure(expl, view, s), settings)


def _slide_sized(make, settings: FigureSettings) -> Figure:
    """``make(settings)``; for a slide, exactly :data:`SLIDE_SIZE`: laid out narrower until it is no
    taller than the slide (maps shrink, text does not), then placed on the 16:9 page."""
    from dataclasses import replace

    fig = make(settings)
    if not settings.is_slide:
        return fig
    current = settings
    for _ in range(10):
        height = fig.get_figheight()
        if height <= SLIDE_SIZE[1] + 1e-3:
            break
        r = min(0.95, (SLIDE_SIZE[1] / height) ** 2)
        # Maps shrink with a narrower layout (summary: the bar charts set the width) or with a smaller
        # panel side (many columns); take whichever is shorter.
        tries = []
        if current.width_inches * r >= 4.0:
            tries.append(replace(current, width=round(current.width_inches * r, 3)))
        if current.panel_inches * r >= 0.4:
            tries.append(replace(current, panel_inches=current.panel_inches * r))
        if not tries:
            break
        made = [(make(t), t) for t in tries]
        shortest, shorter_settings = min(made, key=lambda m: m[0].get_figheight())
        if shortest.get_figheight() >= height - 5e-3:
            break  # the text sets the height now: smaller maps no longer make the figure shorter
        fig, current = shortest, shorter_settings
    taller = fig.get_figheight()
    fig.set_size_inches(*SLIDE_SIZE)  # a small overshoot: the maps give way (they keep their aspect)
    if taller > SLIDE_SIZE[1] + 1e-3 and not L.texts_inside(fig):
        fig.set_size_inches(SLIDE_SIZE[0], taller)  # too much to fit one slide: taller, nothing cut off
    return fig


def _pair_figure(expl: PairExplanation, view: str, settings: FigureSettings) -> Figure:
    from matplotlib import rc_context

    with rc_context(settings.rc()):
        if view == "gates":
            fig, subs = L.new_figure(settings.width_inches, [L.bars_height(settings)[0]], settings)
            L.draw_bars(subs[0], expl, settings, ("a", "b"))
            L.fit_height(fig)
            return fig
        if view == "channels":
            sections = []
            for s in _channel_sets(expl, settings):
                panels = _panels(expl, view, settings, s)
                sections.append(L.Section(expl, panels, heading=_channel_heading(expl, s, len(panels))))
        else:
            sections = [L.Section(expl, _panels(expl, view, settings))]
            if not sections[0].panels:
                raise ValueError(f"this explanation has no {view} maps")
        _finish(expl, sections, settings)
        return _map_figure(sections, settings, letter_per_column=len(sections) == 1,
                           bars=expl if view == "summary" else None)


def multi_pair_figure(expls: Sequence[PairExplanation], view: str | None = None,
                      settings: FigureSettings | None = None, names: Sequence[str] | None = None) -> Figure:
    """Several pairs as rows of one figure: per pair its two images and the maps of ``view`` (for
    ``channels``: the first of ``settings.channel_sets`` each pair has), one letter per pair, column
    titles drawn once where every row has the same one. ``names``: a heading per pair (e.g. file
    names). Scope ``models`` puts every pair on one scale per kind of map (rows comparable)."""
    settings = settings or FigureSettings()
    view = get_view(view or settings.view).slug
    return _slide_sized(lambda s: _multi_pair_figure(expls, view, s, names), settings)


def _multi_pair_figure(expls: Sequence[PairExplanation], view: str, settings: FigureSettings,
                       names: Sequence[str] | None) -> Figure:
    from matplotlib import rc_context

    if not expls:
        raise ValueError("multi_pair_figure needs at least one explanation")
    if names is not None and len(names) != len(expls):
        raise ValueError(f"{len(names)} names for {len(expls)} pairs")
    headings = [f"pair {i}" + (f": {names[i - 1]}" if names else "") for i in range(1, len(expls) + 1)]
    letters = [chr(ord("a") + i) for i in range(len(expls))]
    with rc_context(settings.rc()):
        if view == "gates":
            height = L.bars_height(settings)[0] + L.line_height(settings) + 0.1
            fig, subs = L.new_figure(settings.width_inches, [height] * len(expls), settings)
            for i, (sf, e) in enumerate(zip(subs, expls)):
                L.draw_bars(sf, e, settings, (f"{letters[i]}1", f"{letters[i]}2"), heading=headings[i])
            L.fit_height(fig)
            return fig
        sections = []
        for i, e in enumerate(expls):
            channel_set = _channel_sets(e, settings)[0] if view == "channels" else None
            panels = _panels(e, view, settings, channel_set)
            if not panels:
                raise ValueError(f"pair {i + 1} has no {view} maps")
            clips = channel_set is not None and channel_set_clips(e, channel_set)
            heading = headings[i] + (f" · {RELU6_FIGURE_NOTE}" if clips else "")
            sections.append(L.Section(e, panels, heading=heading, letter=letters[i]))
        _finish(expls[0], sections, settings)
        for prev, s in zip(sections, sections[1:]):  # a column title only where it changes
            s.titles = [j >= len(prev.panels) or p.label != prev.panels[j].label for j, p in enumerate(s.panels)]
        return _map_figure(sections, settings, letter_per_column=False)


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


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
    from .._io import atomic_write

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

