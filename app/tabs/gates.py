"""Mutual vector and gates: the two gate vectors, x_m, and one channel inspected on both images.

Gates are g = σ(z) with z = x_m ⊙ x. A channel whose pooled activation x is exactly 0 (a ReLU that never
fires on that image) has z = 0 and so g = 0.5 exactly: those channels form the flat run at 0.5. Gates
saturate at exactly 1.0 in float32 above z ≈ 17, so the explanation ranks tied gates by z; both values
are shown in every hover and in the inspector. Clicking a dot in either chart inspects that channel.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from apinet.explain.facts import pair_facts

from app import config, state
from app.tabs.common import Context, fmt_num, render_api, scope_caption, selected_points
from app.theme import A_COLOUR, B_COLOUR, HIGHLIGHT, NEUTRAL, OUTLINE

__all__ = ["GATE_RANGE", "ORDERS", "channel_from_selection", "draw", "gate_zoom_range", "half_gate_count", "zoom_menu"]

#: y range of the gate axis: padded so dots at exactly 0 or 1 (saturated gates) are not clipped.
GATE_RANGE = (-0.02, 1.08)
ORDERS = ("sorted by g₁", "sorted by g₂", "channel index")
CHART_KEYS = ("chart_gates", "chart_scatter")
_HOVER = ("channel %{customdata[0]}<br>g₁ %{customdata[1]:.4f} · g₂ %{customdata[2]:.4f}<br>"
          "x_m %{customdata[3]:.3f}<br>z₁ = x_m·x₁ = %{customdata[4]:.3f} · z₂ = x_m·x₂ = %{customdata[5]:.3f}"
          "<extra></extra>")


def gate_zoom_range(*gates: np.ndarray) -> tuple[float, float]:
    """A gate-axis range that fits the data (padded, never past :data:`GATE_RANGE`)."""
    values = np.concatenate([np.asarray(g, dtype=np.float64).ravel() for g in gates])
    if values.size == 0:
        return GATE_RANGE
    low, high = float(values.min()), float(values.max())
    pad = max(0.01, 0.06 * (high - low))
    return max(GATE_RANGE[0], low - pad), min(GATE_RANGE[1], high + pad)


def zoom_menu(zoomed: tuple[float, float], axes: tuple[str, ...]) -> list[dict]:
    """Two buttons above a chart: the gate axes fitted to the data (default) or the full 0-1 frame."""
    def args(r):
        return [{f"{a}.range": list(r) for a in axes}]

    # Plotly fills the active button near-white (#F4FAFF) whatever the theme: light buttons with dark text
    # read on a light and a dark page alike.
    return [dict(type="buttons", direction="right", showactive=True, active=0, x=1.0, xanchor="right",
                 y=1.13, yanchor="bottom", pad=dict(t=0, r=0), font=dict(size=11, color="#1f2328"),
                 bgcolor="#d0d7de", bordercolor="#8c959f",
                 buttons=[dict(label="Zoom to the gates", method="relayout", args=args(zoomed)),
                          dict(label="Full 0–1", method="relayout", args=args(GATE_RANGE))])]


def channel_from_selection(event: Mapping[str, Any] | None, n_channels: int) -> int | None:
    """The channel of the first selected point of a Plotly selection event (``customdata[0]``).

    ``event`` is what ``st.plotly_chart(on_select=...)`` stores: ``{"selection": {"points": [...]}}``;
    a point's ``customdata`` is a list, or (for rows of a 2-D array, as Streamlit 1.67 sends them in the
    browser) a dict keyed ``"0"``, ``"1"``, ...
    Returns ``None`` for an empty selection or a point without a valid channel index.
    """
    for point in selected_points(event):
        custom = point.get("customdata")
        if isinstance(custom, Mapping):  # a row of a 2-D customdata array arrives as {"0": c, "1": ...}
            custom = custom.get("0", custom.get(0))
        elif isinstance(custom, (list, tuple)):
            custom = custom[0] if custom else None
        try:
            channel = int(custom)
        except (TypeError, ValueError):
            continue
        if 0 <= channel < n_channels:
            return channel
    return None


def half_gate_count(gate: np.ndarray) -> int:
    """How many channels sit at exactly g = 0.5 (z = x_m·x = 0: x = 0 on that image, or x_m = 0)."""
    return int(np.count_nonzero(np.asarray(gate) == 0.5))


def _select_channel(chart_key: str, n_channels: int) -> None:
    """on_select callback: a clicked dot becomes the inspected channel (runs before the rerun)."""
    channel = channel_from_selection(st.session_state.get(chart_key), n_channels)
    if channel is not None:
        st.session_state["channel"] = channel


def _custom(xm, g1, g2, x1, x2) -> np.ndarray:
    d = xm.shape[0]
    return np.stack([np.arange(d), g1, g2, xm, xm * x1, xm * x2], axis=1)


def gates_figure(e, k: int, order_name: str) -> go.Figure:
    xm, g1, g2, x1, x2 = (np.asarray(a, dtype=np.float64) for a in (e.mutual, e.gate1, e.gate2, e.features1,
                                                                      e.features2))
    d = xm.shape[0]
    if order_name == "channel index":
        order = np.arange(d)
    else:  # the explanation's own ranking (the Top-k tab's order), never re-sorted here
        order = np.asarray(e.gate_order1 if order_name == ORDERS[0] else e.gate_order2)
    custom = _custom(xm, g1, g2, x1, x2)[order]
    xs = np.arange(d)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.74, 0.26], vertical_spacing=0.04)
    size = 5 if d <= 256 else 4
    gates = [(g1, A_COLOUR, "g₁ (A)"), (g2, B_COLOUR, "g₂ (B)")]
    if order_name == ORDERS[0]:
        gates.reverse()  # the gate that sets the order is drawn last, on top: its sorted curve stays visible
    for gate, colour, name in gates:
        fig.add_trace(go.Scatter(x=xs, y=gate[order], mode="markers", name=name, customdata=custom,
                                 marker=dict(color=colour, size=size, opacity=0.75), hovertemplate=_HOVER),
                      row=1, col=1)
    pos = np.empty(d, dtype=np.int64)
    pos[order] = xs
    for ranking, gate, colour, name in ((e.gate_order1, g1, A_COLOUR, "top-k of g₁"),
                                        (e.gate_order2, g2, B_COLOUR, "top-k of g₂")):
        top = np.asarray(ranking)[:k]
        # In a sorted order the top-k sit side by side at the left end: their labels would overlap, so
        # the indices go in the hover and the caption; in channel-index order they label the diamonds.
        mode = "markers+text" if order_name == "channel index" else "markers"
        fig.add_trace(go.Scatter(x=pos[top], y=gate[top], mode=mode, name=name,
                                 text=[str(int(c)) for c in top], textposition="top center", cliponaxis=False,
                                 customdata=_custom(xm, g1, g2, x1, x2)[top], hovertemplate=_HOVER,
                                 marker=dict(color=colour, size=11, symbol="diamond",
                                             line=dict(color=OUTLINE, width=1.5))),
                      row=1, col=1)
    fig.add_trace(go.Scatter(x=xs, y=xm[order], mode="markers", name="mutual x_m", customdata=custom,
                             marker=dict(color=NEUTRAL, size=3), hovertemplate=_HOVER), row=2, col=1)
    zoom = gate_zoom_range(g1, g2)
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=80, b=10), clickmode="event+select",
                      legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0),
                      updatemenus=zoom_menu(zoom, ("yaxis",)))
    fig.update_yaxes(title_text="gate g", range=list(zoom), row=1, col=1)
    fig.update_yaxes(title_text="x_m", nticks=4, zeroline=True, row=2, col=1)
    fig.update_xaxes(title_text=f"position ({order_name})", row=2, col=1)
    return fig


def scatter_figure(e, k: int) -> go.Figure:
    xm, g1, g2, x1, x2 = (np.asarray(a, dtype=np.float64) for a in (e.mutual, e.gate1, e.gate2, e.features1,
                                                                      e.features2))
    custom = _custom(xm, g1, g2, x1, x2)
    top = np.unique(np.concatenate([np.asarray(e.gate_order1)[:k], np.asarray(e.gate_order2)[:k]]))
    rest = np.setdiff1d(np.arange(xm.shape[0]), top)
    fig = go.Figure()
    fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line=dict(color=NEUTRAL, dash="dot", width=1))
    fig.add_trace(go.Scatter(x=g1[rest], y=g2[rest], mode="markers", name="other channels",
                             customdata=custom[rest], hovertemplate=_HOVER,
                             marker=dict(color=NEUTRAL, size=6, opacity=0.55)))
    fig.add_trace(go.Scatter(x=g1[top], y=g2[top], mode="markers", name="top-k of g₁ or g₂",
                             customdata=custom[top], hovertemplate=_HOVER, cliponaxis=False,
                             marker=dict(color=HIGHLIGHT, size=10, line=dict(color=OUTLINE, width=1))))
    zoom = gate_zoom_range(g1, g2)
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=80, b=10), clickmode="event+select",
                      legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0),
                      xaxis=dict(title="g₁ (A)", range=list(zoom)), yaxis=dict(title="g₂ (B)", range=list(zoom)),
                      updatemenus=zoom_menu(zoom, ("xaxis", "yaxis")))
    return fig


def _half_gate_sentence(gate, x, xm, tag: str, sym: str) -> str:
    half = np.asarray(gate) == 0.5
    n, zero = int(half.sum()), int((half & (np.asarray(xm) * np.asarray(x) == 0)).sum())
    text = f"{n} channels have {sym} = 0.5 exactly"
    if n == 0:
        return text
    text += f": {zero} because x = 0 on {tag}, so z = x_m·x = 0" if zero else ""
    if n - zero:
        text += f"{'; ' if zero else ': '}{n - zero} because |z| is too small for float32 to tell σ(z) from 0.5"
    return text


def half_gate_caption(e) -> str:
    """Why so many dots sit at g = 0.5, with this pair's counts (computed from the explanation)."""
    both = int(np.count_nonzero((np.asarray(e.gate1) == 0.5) & (np.asarray(e.gate2) == 0.5)))
    return ("The cluster at g = 0.5: " + _half_gate_sentence(e.gate1, e.features1, e.mutual, "A", "g₁") + ". "
            + _half_gate_sentence(e.gate2, e.features2, e.mutual, "B", "g₂") + f". {both} on both, at (0.5, 0.5). "
            "A channel whose ReLU never fires on an image carries nothing there, whatever its gate.")


def draw(ctx: Context) -> None:
    e, s = ctx.expl, ctx.settings
    d = np.asarray(e.mutual).shape[0]
    st.markdown("#### Mutual vector and gates")
    order_name = st.radio("Channel order", ORDERS, horizontal=True, key="vec_order")
    left, right = st.columns([3, 2], gap="large")
    for col, key, fig in ((left, CHART_KEYS[0], gates_figure(e, s.k, order_name)),
                          (right, CHART_KEYS[1], scatter_figure(e, s.k))):
        with col:
            st.plotly_chart(fig, key=key, config={"displaylogo": False}, selection_mode="points",
                            on_select=lambda key=key: _select_channel(key, d))
    tops = "; ".join(f"{sym}: " + ", ".join(f"#{int(c)}" for c in np.asarray(order)[: s.k])
                     for sym, order in (("g₁", e.gate_order1), ("g₂", e.gate_order2)))
    facts = pair_facts(e)
    low, high = gate_zoom_range(e.gate1, e.gate2)
    ties = (" Gates round to exactly 1 in float32 above z ≈ 17; on this pair "
            + ", ".join(f"{facts.image(i).top_tied} channels of {t} tie at the top gate"
                        for t, i in (("A", 1), ("B", 2)) if facts.image(i).top_tied > 1)
            + ", so ties are ranked by z (in the hover).") if facts.any_tied else ""
    left.caption(f"Gates g = σ(z), z = x_m ⊙ x, over all {d} channels as dots (top), the mutual vector x_m "
                 f"below. Diamonds: the top-{s.k} channels of each gate ({tops}).{ties} The gate axis is zoomed "
                 f"to this pair's gates ({low:.2f}–{high:.2f}); **Full 0–1** above the chart shows the whole "
                 "range. Click a dot to inspect that channel.")
    right.caption(f"Each dot is a channel. Off the diagonal: channels one image gates much more than the "
                  f"other. Red: in the top-{s.k} of g₁ or g₂. Mean |g₁ − g₂| = {facts.first_order.mean_abs_gate_diff:.3g}."
                  + (" " + half_gate_caption(e) if facts.any_half else ""))
    _channel_inspector(ctx)


def _available_maps(e) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    available: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for key in ("apinet_gate1", "apinet_gate2"):
        cm = e.channels.get(key)
        if cm is None:
            continue
        for i, c in enumerate(np.asarray(cm.indices).tolist()):
            available.setdefault(int(c), (cm.maps1[i], cm.maps2[i]))
    return available


@st.fragment
def _channel_inspector(ctx: Context) -> None:
    """One channel on both images; a fragment, so choosing another channel reruns only this part (which
    then mirrors the state in the URL itself: the page's end-of-run write does not run for a fragment)."""
    try:
        _draw_inspector(ctx)
    finally:
        state.write_url_once_restored()


def _draw_inspector(ctx: Context) -> None:
    e, s = ctx.expl, ctx.settings
    xm, g1, g2, x1, x2 = (np.asarray(a, dtype=np.float64) for a in (e.mutual, e.gate1, e.gate2, e.features1,
                                                                      e.features2))
    d = xm.shape[0]
    available = _available_maps(e)
    # Channels with maps first (g₁'s top-K_MAX in the explanation's ranking, then g₂'s), then the rest.
    options = list(available) + [int(c) for c in np.asarray(e.gate_order1) if int(c) not in available]
    chosen = st.session_state.get("channel")
    if isinstance(chosen, str):  # a label the browser kept from another pair ("#12  (g₁ …)"): its channel
        found = re.match(r"#(\d+) ", chosen)
        chosen = int(found.group(1)) if found else None
    if chosen not in options or chosen != st.session_state.get("channel"):
        st.session_state["channel"] = chosen if chosen in options else options[0]
    st.markdown("##### Inspect one channel")
    left, right = st.columns([1.25, 3], gap="large")
    with left:
        channel = st.selectbox("Channel", options, key="channel",
                               format_func=lambda c: f"#{c}  (g₁ {g1[c]:.2f}, g₂ {g2[c]:.2f})",
                               help=f"Or click a dot in the charts above. Maps are kept for the top-{config.K_MAX} "
                                    "channels of either gate, listed first.")
        z1, z2 = xm[channel] * x1[channel], xm[channel] * x2[channel]
        st.markdown(f"g₁ = **{g1[channel]:.4f}** · g₂ = **{g2[channel]:.4f}**  \n"
                    f"x_m = **{xm[channel]:.3f}**  \n"
                    f"x₁ = {x1[channel]:.3f} · x₂ = {x2[channel]:.3f}  \n"
                    f"z₁ = x_m·x₁ = **{z1:.3f}**  \n"
                    f"z₂ = x_m·x₂ = **{z2:.3f}**")
        rank1 = int(np.flatnonzero(np.asarray(e.gate_order1) == channel)[0]) + 1
        rank2 = int(np.flatnonzero(np.asarray(e.gate_order2) == channel)[0]) + 1
        tied = g1[channel] == 1.0 or g2[channel] == 1.0
        st.caption("g = σ(z)" + ("; this gate rounds to exactly 1 (σ does above z ≈ 17), so z ranks it among the "
                                 "tied gates" if tied else "") + f". Rank {rank1} of "
                   f"{d} in g₁, {rank2} of {d} in g₂ (the explanation's ranking).")
        from app.tabs import whatif

        whatif.gate_buttons(int(channel), "inspector")
    with right:
        if channel not in available:
            st.info(f"Channel {channel} is outside the top-{config.K_MAX} of both gates, whose maps the "
                    "explanation keeps: its numbers are on the left, its maps are not computed.")
            return
        m1, m2 = available[channel]
        render = render_api()
        scope = "map" if s.scope == "map" else "pair"
        (sc1, sc2), = render.scale_for([[m1, m2]], scope, percentile=s.percentile)  # one group: the pair
        cols = st.columns([1, 1, 0.6])
        for col, image, amap, sc, tag in ((cols[0], e.image1, m1, sc1, "A"), (cols[1], e.image2, m2, sc2, "B")):
            col.image(render.overlay(image, amap, cmap=s.cmap, alpha=s.alpha, vmin=sc[0], vmax=sc[1]),
                      caption=f"{tag} · channel {channel} · range [{fmt_num(sc[0])}, {fmt_num(sc[1])}]",
                      width="stretch")
        st.caption("Raw activation of this channel before global pooling, bilinearly upsampled to the input. "
                   + scope_caption(scope, s.clip))
