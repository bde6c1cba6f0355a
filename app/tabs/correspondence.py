"""Where does it match? Click a position on one image; the other image shows how similar each of its
positions is to it (cosine similarity of API-Net's last feature vectors, ``correspondence_map``).

Plotly reports no selection on image or heatmap traces (streamlit/streamlit#8760), so the clickable
picture carries one invisible square marker per feature cell; the clicked marker's ``x`` / ``y`` (display
pixels) give the cell through :func:`apinet.explain.feature_cell`. Two sliders (row, column) pick the
same cell without a mouse; a click moves them. The tab body is a fragment: a new cell reruns it alone
(about 30 ms), not the page.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from app.tabs.common import Context, colorbar, render_api, selected_points
from app.text import plotly_text

__all__ = ["cell_from_selection", "draw", "fitted_scale", "mark_cell"]

ROW, COL, REVERSE, CLICK = "match_row", "match_col", "match_reverse", "match_click"
_STARTED = "_match_started"  # the (A, B, direction) the start cell was chosen for
PICK_COLOUR = (255, 214, 0)  # the picked cell
BEST_COLOUR = (0, 230, 118)  # the best-matching cell
_PLOT_HEIGHT, _PLOT_TOP = 340, 28  # px: the clickable picture (the partner's map is drawn as large)


def cell_from_selection(selection: Any, expl) -> tuple[int, int] | None:
    """The feature cell ``(row, col)`` of the first clicked point of a ``st.plotly_chart`` selection
    (``{"selection": {"points": [{"x": ..., "y": ...}]}}``, display pixels), or None."""
    from apinet.explain import feature_cell

    for point in selected_points(selection):
        try:
            x, y = float(point["x"]), float(point["y"])
        except (KeyError, TypeError, ValueError):
            continue
        if np.isfinite(x) and np.isfinite(y):
            return feature_cell(expl, y, x)
    return None


def _grid(expl) -> tuple[int, int]:
    units = expl.unit_features1
    return int(units.shape[0]), int(units.shape[1])


def mark_cell(image: np.ndarray, cell: tuple[int, int], grid: tuple[int, int], colour) -> np.ndarray:
    """``image`` with a rectangle around feature cell ``cell`` of a ``grid = (h, w)`` map."""
    import cv2

    out = np.ascontiguousarray(image).copy()
    big_h, big_w = out.shape[:2]
    y0, y1 = int(cell[0] * big_h / grid[0]), int((cell[0] + 1) * big_h / grid[0]) - 1
    x0, x1 = int(cell[1] * big_w / grid[1]), int((cell[1] + 1) * big_w / grid[1]) - 1
    thick = max(1, round(big_h / 112))
    cv2.rectangle(out, (x0, y0), (x1, y1), (0, 0, 0), thick + 1)
    cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
    return out


def _on_click(expl) -> None:
    cell = cell_from_selection(st.session_state.get(CLICK), expl)
    if cell is not None:
        st.session_state[ROW], st.session_state[COL] = cell


def _picker_figure(image: np.ndarray, grid: tuple[int, int], title: str):
    import plotly.graph_objects as go

    big_h, big_w = image.shape[:2]
    h, w = grid
    rows, cols = np.mgrid[0:h, 0:w]
    xs = ((cols + 0.5) * big_w / w).ravel()
    ys = ((rows + 0.5) * big_h / h).ravel()
    fig = go.Figure(go.Image(z=image, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers", name="cells",
        customdata=np.stack([rows.ravel(), cols.ravel()], axis=1),
        hovertemplate="cell (%{customdata[0]}, %{customdata[1]})<extra></extra>",
        marker={"symbol": "square", "size": max(6, int((_PLOT_HEIGHT - _PLOT_TOP) / max(h, w))), "color": "rgba(255,255,255,0.01)", "line": {"width": 0}},
        selected={"marker": {"opacity": 1.0}}, unselected={"marker": {"opacity": 1.0}}))
    fig.update_layout(
        title={"text": plotly_text(title), "font": {"size": 13}}, margin={"l": 0, "r": 0, "t": _PLOT_TOP, "b": 0},
        height=_PLOT_HEIGHT, showlegend=False, dragmode=False, clickmode="event+select",
        xaxis={"visible": False, "range": [0, big_w]}, yaxis={"visible": False, "range": [big_h, 0]})
    return fig


def draw(ctx: Context) -> None:
    """The tab; a click or a slider reruns only :func:`_match` (a fragment), not the page."""
    _match(ctx)


def _start(ctx: Context, source: int, h: int, w: int) -> None:
    """Start at a cell on the object (:func:`apinet.explain.start_cell`) for every new pair or direction;
    a cell a shared link brought back is kept for its first pair."""
    from apinet.explain import start_cell

    pair = (ctx.image_a.sha256, ctx.image_b.sha256, source)
    seen = st.session_state.get(_STARTED)
    if seen != pair:
        if seen is not None or ROW not in st.session_state or COL not in st.session_state:
            st.session_state[ROW], st.session_state[COL] = start_cell(ctx.expl, source)
        st.session_state[_STARTED] = pair
    st.session_state[ROW] = int(np.clip(st.session_state[ROW], 0, h - 1))
    st.session_state[COL] = int(np.clip(st.session_state[COL], 0, w - 1))


def fitted_scale(sim: np.ndarray) -> tuple[float, float, bool]:
    """``(vmin, vmax, signed)`` of a similarity map's colour scale, fitted to the map: ``[min, max]``
    when it is all non-negative, else symmetric about zero (the full cosine range would leave a map
    whose best match is 0.08 almost uniformly dark)."""
    lo, hi = float(np.min(sim)), float(np.max(sim))
    if lo >= 0:
        return lo, (hi if hi > lo else lo + 1e-6), False
    top = max(abs(lo), abs(hi), 1e-6)
    return -top, top, True


@st.fragment
def _match(ctx: Context) -> None:
    """The fragment; it mirrors its state in the URL itself (the page's end-of-run write does not run)."""
    from app import state

    try:
        _draw_match(ctx)
    finally:
        state.write_url_once_restored()


def _draw_match(ctx: Context) -> None:
    from apinet.explain import correspondence_map

    e, s = ctx.expl, ctx.settings
    st.markdown("#### Where does it match?")
    if e.unit_features1 is None or e.unit_features2 is None:
        st.info("This explanation keeps no feature vectors (made before correspondence maps existed).",
                icon=":material/info:")
        return
    h, w = _grid(e)
    reverse = st.toggle("Reverse: pick on B, show the match on A", key=REVERSE)
    source = 2 if reverse else 1
    src_tag, dst_tag = ("B", "A") if reverse else ("A", "B")
    st.caption(f"Click a position on {src_tag} (or use the sliders): {dst_tag} shows the cosine similarity of "
               f"API-Net's last feature vector at that cell ({h} × {w} cells) to each of its own cells. Yellow: the "
               f"picked cell; green: {dst_tag}'s most similar cell.")
    _start(ctx, source, h, w)
    sl = st.columns(2)
    sl[0].slider("Row", 0, h - 1, key=ROW)
    sl[1].slider("Column", 0, w - 1, key=COL)
    row, col = int(st.session_state[ROW]), int(st.session_state[COL])
    corr = correspondence_map(e, source, row, col)
    images = (e.image1, e.image2)
    src_img = mark_cell(images[source - 1], (row, col), (h, w), PICK_COLOUR)
    sim = corr.similarity
    vmin, vmax, signed = fitted_scale(sim)
    cmap = "RdBu_r" if signed else s.cmap
    dst = render_api().overlay(images[corr.target - 1], sim, cmap=cmap, alpha=s.alpha, vmin=vmin, vmax=vmax)
    dst = mark_cell(dst, corr.best, (h, w), BEST_COLOUR)
    left, right = st.columns(2, gap="large")
    with left:
        st.plotly_chart(_picker_figure(src_img, (h, w), f"{src_tag}: click a position"), key=CLICK,
                        on_select=lambda: _on_click(e), selection_mode="points",
                        config={"displayModeBar": False}, width="stretch")
    with right:
        st.markdown(f"**{dst_tag}**: similarity to {src_tag}'s cell ({row}, {col})")
        st.container(key="match_map").image(dst, width=_PLOT_HEIGHT - _PLOT_TOP)
    same = float(sim[row, col]) if (row < sim.shape[0] and col < sim.shape[1]) else float("nan")
    st.markdown(f"Best match on {dst_tag}: cell **{corr.best}**, cosine **{float(sim[corr.best]):.3f}** · "
                f"at the same cell ({row}, {col}): {same:.3f} · mean over {dst_tag}: {float(sim.mean()):.3f}")
    colorbar(cmap, f"{vmin:.3f}", f"{vmax:.3f}", "cosine similarity")
    st.caption(f"Colour scale fitted to this map: {vmin:.3f} to {vmax:.3f} (cosine similarity can range from "
               f"{'−1' if signed else '0'} to 1), so the best match is the brightest whatever its value.")
