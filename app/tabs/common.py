"""What every tab shares: the context it draws from, display settings, colours, legends and map grids.

Nothing here runs a model: every view reads the cached :class:`apinet.explain.PairExplanation` and
draws it with :mod:`apinet.render`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from app import config
from app.text import html_text, md
from app.theme import A_COLOUR, B_COLOUR  # re-exported: the tabs' one palette lives in app.theme

__all__ = ["A_COLOUR", "B_COLOUR", "Context", "DisplaySettings", "attention_section", "class_name", "colorbar", "fmt_num",
           "latex_text", "legend", "ltpa_numbers", "overlay_grid", "panel_row", "range_text", "render_api",
           "scope_caption", "selected_points"]



@dataclass(frozen=True)
class DisplaySettings:
    k: int
    cmap: str
    alpha: float
    scope: str
    stage: str
    cam: str
    clip: float = 100.0  # colour scales span the [100-clip, clip] percentiles; 100 = min / max (no clipping)

    @property
    def percentile(self) -> float | None:
        """The ``percentile`` keyword of apinet.render's range computation (None: no clipping)."""
        return None if self.clip >= 100.0 else float(self.clip)


@dataclass
class Context:
    expl: Any  # apinet.explain.PairExplanation
    settings: DisplaySettings
    image_a: Any  # picker.ChosenImage
    image_b: Any
    apinet: Any  # resources.CheckpointInfo
    baseline: Any | None
    atlas: Any | None = None  # apinet.atlas.Atlas of these checkpoints, when one is open (the Dataset tab)
    atlas_note: str = ""  # why none is open (one line), for the Dataset tab


def selected_points(event: Any) -> list:
    """The points of a ``st.plotly_chart(on_select=...)`` event (``{"selection": {"points": [...]}}``);
    an empty list for no event, no selection or a malformed one."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError, IndexError):
        return []
    return [p for p in points if isinstance(p, Mapping)] if isinstance(points, (list, tuple)) else []


def render_api():
    from apinet import render

    return render


def class_name(expl, index: int) -> str:
    names = list(getattr(expl, "class_names", []) or [])
    return names[index] if 0 <= index < len(names) else f"class {index}"


def overlay_grid(ctx: "Context", view: str, **select: Any):
    """Overlays of one view in display units, ranges per the normalisation scope (apinet.render)."""
    s = ctx.settings
    k = s.k if view == "channels" else None
    return render_api().overlay_grid(ctx.expl, view, cmap=s.cmap, alpha=s.alpha, k=k, scope=s.scope,
                                     percentile=s.percentile, **select)


def fmt_num(value: float) -> str:
    return f"{value:.3g}"


def range_text(panel) -> str:
    r1, r2 = panel.range1, panel.range2
    if tuple(r1) == tuple(r2):
        return f"[{fmt_num(r1[0])}, {fmt_num(r1[1])}]"
    return f"A [{fmt_num(r1[0])}, {fmt_num(r1[1])}] · B [{fmt_num(r2[0])}, {fmt_num(r2[1])}]"


def ordinal(value: float) -> str:
    """``2`` -> ``"2nd"``, ``97.5`` -> ``"97.5th"``."""
    text = f"{value:g}"
    if float(value) != int(value) or 10 <= int(value) % 100 <= 20:
        return text + "th"
    return text + {1: "st", 2: "nd", 3: "rd"}.get(int(value) % 10, "th")


def scope_caption(scope: str, clip: float = 100.0) -> str:
    clipped = f", clipped at the {ordinal(100 - clip)} / {ordinal(clip)} percentiles" if clip < 100.0 else ""
    return f"Colour scale: {config.SCOPES[scope]}{clipped}."


def colorbar(cmap: str, low: str = "low", high: str = "high", units: str = "") -> None:
    """A thin legend strip of the current colormap with its end labels."""
    lut = render_api().colormap_lut(cmap)
    strip = np.repeat(np.asarray(lut)[None], 10, axis=0)
    left, mid, right, _ = st.columns([0.5, 3, 2.2, 4], vertical_alignment="center", gap="small")
    left.caption(f"{low}")
    mid.image(strip, width="stretch")
    right.caption(f"{high} {units}".strip())


def shared_range(grid) -> tuple[float, float] | None:
    ranges = {tuple(p.range1) for p in grid.panels} | {tuple(p.range2) for p in grid.panels}
    return next(iter(ranges)) if len(ranges) == 1 else None


def legend(grid, units: str) -> None:
    shared = shared_range(grid)
    if shared is not None:
        colorbar(grid.cmap, fmt_num(shared[0]), fmt_num(shared[1]), units)
    else:
        colorbar(grid.cmap, "low", "high", f"(range per {'map' if grid.scope == 'map' else 'pair'})")


def panel_row(image: np.ndarray, overlays: list[np.ndarray], captions: list[str] | None, tag: str, n: int) -> None:
    cols = st.columns([0.3] + [1] * max(n, 5), vertical_alignment="center")
    cols[0].markdown(f'<span class="apinet-tag apinet-{tag.lower()}">{tag}</span>', unsafe_allow_html=True)
    for i, ov in enumerate(overlays):
        cols[i + 1].image(ov, caption=captions[i] if captions else None, width="stretch")


def attention_section(ctx: Context, view: str, per_row: int | None = None, **select: Any) -> None:
    e, s = ctx.expl, ctx.settings
    grid = overlay_grid(ctx, view, **select)
    if not grid.panels:
        st.info("Nothing to show for this selection.")
        return
    units = sorted({p.units for p in grid.panels})
    legend(grid, units[0] if len(units) == 1 else "")
    n = len(grid.panels)
    per_row = per_row or (3 if n > 4 or n == 3 else max(n, 2))
    for start in range(0, n, per_row):
        cols = st.columns(per_row, gap="medium")
        for col, panel in zip(cols, grid.panels[start : start + per_row]):
            with col:
                source = getattr(e, view).get(panel.key) if view in ("ltpa", "cams") else None
                title = getattr(source, "label", None) or panel.title.replace("\n", " ")
                st.markdown(f'<div class="apinet-maphead">{html_text(title)}</div>', unsafe_allow_html=True)
                a, b = st.columns(2)
                a.image(panel.overlay1, caption="A", width="stretch")
                b.image(panel.overlay2, caption="B", width="stretch")
                note = f"{panel.units} · {range_text(panel)}"
                if source is not None and hasattr(source, "target1"):
                    note += (f" · targets A → {md(class_name(e, source.target1))}, "
                             f"B → {md(class_name(e, source.target2))}")
                if view == "ltpa" and source is not None:
                    note += " · " + ltpa_numbers(source)
                st.caption(note)
    st.caption(scope_caption(s.scope, s.clip))


def ltpa_numbers(att) -> str:
    """Raw compatibility range and spread of an LTPA map, as the explanation computed them."""
    parts = []
    if att.compatibility1 is not None:
        parts.append(f"raw c = ⟨l_i, g⟩: A [{fmt_num(float(np.min(att.compatibility1)))}, "
                     f"{fmt_num(float(np.max(att.compatibility1)))}], B [{fmt_num(float(np.min(att.compatibility2)))}, "
                     f"{fmt_num(float(np.max(att.compatibility2)))}]")
    if att.scores1 is not None and att.similarity == "dot" and att.temperature1 != 1.0:
        parts.append(f"T: A {fmt_num(att.temperature1)}, B {fmt_num(att.temperature2)}")
    if att.normalisation.startswith("softmax"):
        s1, s2 = att.effective_support()
        parts.append(f"spread exp(entropy): A {s1:.1f}, B {s2:.1f} of {att.map1.size} cells")
    return " · ".join(parts)


def latex_text(text: str) -> str:
    for ch in "\\{}_^#$%&~":
        text = text.replace(ch, " ")
    return text

