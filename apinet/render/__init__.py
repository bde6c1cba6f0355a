"""Overlays and publication figures from a :class:`~apinet.explain.PairExplanation` (no model calls).

* :mod:`.scales` -- :func:`scale_for` / :func:`signed_scale` / :func:`scope_ranges`: display ranges
  (vmin, vmax) in real units per map, shared by the two images of a pair, or shared across models;
  signed maps get symmetric limits. The one implementation of the scopes.
* :mod:`.overlays` -- :func:`colormap_lut`, :func:`colorize`, :func:`overlay`: colour-map a map
  (OpenCV or diverging colormap, bilinear upsampling) over an image.
* :mod:`.views` -- :class:`View`, :data:`VIEW_LIST`, :data:`VIEWS`: the one vocabulary of views
  (slug, human label, the data a view needs) shared by figures, the CLI and the app.
* :mod:`.panels` -- :class:`Panel`, :func:`display_maps`, :func:`overlay_grid`: which maps a view
  shows, in display units, with human-readable labels; every overlay the app shows, re-rendered from
  the arrays in a few ms when a display setting (cmap, alpha, k, scope) changes.
* :mod:`.figures` -- :func:`pair_figure`, :func:`multi_pair_figure`, :func:`save_figure`,
  :class:`FigureSettings`: matplotlib figures for one- or two-column papers, panel letters beside the
  titles, colour bars in real units under the panels they describe; PDF / SVG keep editable text;
  presets for a paper column and a 16:9 slide; white, transparent or dark backgrounds.
* :mod:`.single` -- :func:`panel_figure`: one map of one image as its own file.

Units. Channel maps are raw activations (before global pooling). CAMs are raw CAM values
(ReLU(sum_c w_c A_c)), never grad-cam's per-map min-max. LTPA softmax maps sum to 1, so every value
is about 1/(h*w); they are displayed as ``a * h * w``, "multiples of uniform attention" (1 = the
weight every position would get from uniform attention), which keeps the ratio between positions
and between images exact. A^2 gather maps are shown the same way.
"""

from __future__ import annotations

from .figures import (
    BACKGROUNDS, FIGURE_WIDTHS, MIN_FONT_SIZE, PRESETS, SLIDE_SIZE, FigureSettings, multi_pair_figure, pair_figure,
    save_figure,
)
from .single import panel_choices, panel_figure
from .overlays import COLORMAPS, DIVERGING_COLORMAPS, colorize, colormap_lut, is_diverging, overlay
from .panels import LTPA_UNITS, OverlayGrid, Panel, assign_ranges, display_maps, overlay_grid
from .scales import SCOPES, Scope, scale_for, scope_ranges, signed_scale
from .views import VIEW_LIST, VIEWS, View, available_views, get_view

__all__ = [
    "BACKGROUNDS",
    "COLORMAPS",
    "DIVERGING_COLORMAPS",
    "FIGURE_WIDTHS",
    "LTPA_UNITS",
    "MIN_FONT_SIZE",
    "PRESETS",
    "SLIDE_SIZE",
    "SCOPES",
    "VIEWS",
    "VIEW_LIST",
    "FigureSettings",
    "OverlayGrid",
    "Panel",
    "Scope",
    "View",
    "assign_ranges",
    "available_views",
    "colorize",
    "colormap_lut",
    "display_maps",
    "get_view",
    "is_diverging",
    "multi_pair_figure",
    "overlay",
    "overlay_grid",
    "pair_figure",
    "panel_choices",
    "panel_figure",
    "save_figure",
    "scale_for",
    "scope_ranges",
    "signed_scale",
]
