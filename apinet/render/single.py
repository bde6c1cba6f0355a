"""One map as its own figure (per-panel export): a single overlay of image A or B, its title and its
colour bar, at the ranges the full figure of that view gives it (so the file matches the figure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _layout as L
from .figures import FigureSettings, _channel_sets, _finish, _panels, _slide_sized
from .panels import Panel, channel_heading
from .views import get_view

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..explain import PairExplanation

__all__ = ["panel_choices", "panel_figure"]


def _view_panels(expl: PairExplanation, view: str, settings: FigureSettings) -> list[tuple[str, Panel]]:
    """``(heading, panel)`` of every map of ``view``, ranges and overlays as in :func:`pair_figure`."""
    view = get_view(view).slug
    if view == "gates":
        raise ValueError("the gates view is a bar chart, not maps: export it as a whole figure")
    if view == "channels":
        sections = [L.Section(expl, _panels(expl, view, settings, s)) for s in _channel_sets(expl, settings)]
        headings = [channel_heading(expl, s, len(sec.panels))
                    for s, sec in zip(_channel_sets(expl, settings), sections)]
    else:
        sections, headings = [L.Section(expl, _panels(expl, view, settings))], [""]
    _finish(expl, sections, settings)
    return [(h, p) for h, sec in zip(headings, sections) for p in sec.panels]


def panel_choices(expl: PairExplanation, view: str, settings: FigureSettings | None = None) -> list[tuple[str, str]]:
    """``(panel key, human label)`` of every map ``view`` shows (each exists for image A and B)."""
    settings = settings or FigureSettings()
    return [(p.key, f"{h}: {p.label}" if h else p.label) for h, p in _view_panels(expl, view, settings)]


def panel_figure(expl: PairExplanation, view: str, key: str, image: int,
                 settings: FigureSettings | None = None) -> Figure:
    """Map ``key`` of ``view`` on image ``image`` (1 = A, 2 = B) as a figure of its own: title, the
    overlay, a colour bar in real units. Width: ``settings.width`` (a slide gives a 16:9 page)."""
    if image not in (1, 2):
        raise ValueError(f"image must be 1 (A) or 2 (B), got {image!r}")
    settings = settings or FigureSettings()
    return _slide_sized(lambda s: _panel_figure(expl, view, key, image, s), settings)


def _panel_figure(expl: PairExplanation, view: str, key: str, image: int, settings: FigureSettings) -> Figure:
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    found = {p.key: p for _, p in _view_panels(expl, view, settings)}
    if key not in found:
        raise ValueError(f"no map {key!r} in view {view!r}; choose one of {', '.join(found)}")
    p = found[key]
    tag = "AB"[image - 1]
    title = f"{tag}: {expl.class_names[expl.targets[image - 1]]} · {p.label}"
    side = min(settings.width_inches - L.EDGE, max(settings.panel_inches * 2, 2.0))
    with rc_context(settings.rc()):
        lh = L.line_height(settings)
        wrapped = L.wrap(title, side, settings)
        units = L.wrap(L.short_units(p.units), side, settings) if settings.colorbars else ""
        bar = (L.BAR_THICKNESS + (1 + L.n_lines(units)) * lh + 0.1) if settings.colorbars else 0.0
        fig = Figure(figsize=(side + L.EDGE, side + L.n_lines(wrapped) * lh + bar + 0.2), dpi=100,
                     layout="constrained")
        fig.get_layout_engine().set(w_pad=3 / 72, h_pad=3 / 72, wspace=0.0, hspace=0.0)
        rows = [side, L.BAR_THICKNESS] if settings.colorbars else [side]
        grid = fig.add_gridspec(len(rows), 1, height_ratios=rows)
        ax = fig.add_subplot(grid[0, 0])
        L._image_axis(ax, p.overlay1 if image == 1 else p.overlay2)
        if settings.titles:
            ax.set_title(wrapped, fontsize=settings.font_size, pad=2, parse_math=False)
        if settings.colorbars:
            cell = fig.add_subplot(grid[1, 0])
            cell.axis("off")
            cax = cell.inset_axes((0.06, 0.0, 0.88, 1.0))
            cmap = settings.diverging_cmap if p.signed else settings.cmap
            L.colour_bar(fig, cax, p.range1 if image == 1 else p.range2, p.units, cmap, p.signed, settings,
                         side * 0.88)
        L.fit_height(fig)
    return fig
