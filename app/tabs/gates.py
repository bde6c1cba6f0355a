"""Mutual vector and gates: the two gate vectors, x_m, and one channel inspected on both images."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app import config
from app.tabs.common import A_COLOUR, B_COLOUR, Context, fmt_num, render_api, scope_caption

__all__ = ["draw"]


def draw(ctx: Context) -> None:
    e, s = ctx.expl, ctx.settings
    xm, g1, g2 = (np.asarray(a, dtype=np.float64) for a in (e.mutual, e.gate1, e.gate2))
    d = xm.shape[0]
    st.markdown("#### Mutual vector and gates")
    order_name = st.radio("Channel order", ["channel index", "sorted by g₁", "sorted by g₂"], horizontal=True,
                          key="vec_order")
    if order_name == "channel index":
        order = np.arange(d)
    else:  # the explanation's own ranking (the Top-k tab's order), never re-sorted here
        order = np.asarray(e.gate_order1 if order_name == "sorted by g₁" else e.gate_order2)
    xs = np.arange(d)
    top1 = set(np.asarray(e.gate_order1)[: s.k].tolist())
    top2 = set(np.asarray(e.gate_order2)[: s.k].tolist())
    custom = order.reshape(-1, 1)

    left, right = st.columns([3, 2], gap="large")
    with left:
        fig = go.Figure()
        fig.add_trace(go.Bar(x=xs, y=xm[order], name="mutual x_m", marker_color="#8c959f", opacity=0.55,
                             customdata=custom, hovertemplate="channel %{customdata[0]}<br>x_m %{y:.3f}<extra></extra>",
                             yaxis="y2"))
        fig.add_trace(go.Scatter(x=xs, y=g1[order], name="g₁ (A)", mode="lines", line=dict(color=A_COLOUR, width=1.4),
                                 customdata=custom, hovertemplate="channel %{customdata[0]}<br>g₁ %{y:.3f}<extra></extra>"))
        fig.add_trace(go.Scatter(x=xs, y=g2[order], name="g₂ (B)", mode="lines", line=dict(color=B_COLOUR, width=1.4),
                                 customdata=custom, hovertemplate="channel %{customdata[0]}<br>g₂ %{y:.3f}<extra></extra>"))
        pos = {int(c): i for i, c in enumerate(order)}
        for top, gate, colour, name in ((top1, g1, A_COLOUR, "top-k of g₁"), (top2, g2, B_COLOUR, "top-k of g₂")):
            idx = sorted(top, key=lambda c: pos[c])
            fig.add_trace(go.Scatter(x=[pos[c] for c in idx], y=gate[idx], mode="markers+text", name=name,
                                     text=[str(c) for c in idx], textposition="top center",
                                     marker=dict(color=colour, size=9, line=dict(color="white", width=1)),
                                     hovertemplate="channel %{text}<br>%{y:.3f}<extra></extra>"))
        fig.update_layout(
            height=380, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.12),
            xaxis=dict(title=f"position ({order_name})"), yaxis=dict(title="gate", range=[0, 1.05]),
            yaxis2=dict(title="x_m", overlaying="y", side="right", showgrid=False),
        )
        st.plotly_chart(fig, key="chart_gates", config={"displaylogo": False})
        st.caption(f"Gates g = σ(x_m ⊙ x) over all {d} channels (left axis) with the mutual vector x_m "
                   f"(bars, right axis). Labelled dots: the top-{s.k} channels of each gate.")
    with right:
        colours = np.where([c in top1 or c in top2 for c in range(d)], "#d1242f", "#8c959f")
        fig = go.Figure(go.Scatter(
            x=g1, y=g2, mode="markers", marker=dict(color=colours, size=6, opacity=0.75),
            customdata=np.stack([xs, xm], 1),
            hovertemplate="channel %{customdata[0]}<br>g₁ %{x:.3f}<br>g₂ %{y:.3f}<br>x_m %{customdata[1]:.3f}<extra></extra>"))
        fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line=dict(color="#999", dash="dot"))
        fig.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10), xaxis=dict(title="g₁ (A)", range=[0, 1.02]),
                          yaxis=dict(title="g₂ (B)", range=[0, 1.02]), showlegend=False)
        st.plotly_chart(fig, key="chart_scatter", config={"displaylogo": False})
        st.caption(f"Each dot is a channel. Off the diagonal: channels one image gates much more than the "
                   f"other. Red: in the top-{s.k} of g₁ or g₂.")

    _channel_inspector(ctx, g1, g2, xm)


def _channel_inspector(ctx: Context, g1, g2, xm) -> None:
    e, s = ctx.expl, ctx.settings
    available: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for key in ("apinet_gate1", "apinet_gate2"):
        cm = e.channels.get(key)
        if cm is None:
            continue
        for i, c in enumerate(np.asarray(cm.indices).tolist()):
            available.setdefault(int(c), (cm.maps1[i], cm.maps2[i]))
    if not available:
        return
    st.markdown("##### Inspect one channel")
    options = list(available)  # g1's top-k in the explanation's ranking, then g2's other channels
    if st.session_state.get("channel") not in options:
        st.session_state["channel"] = options[0]
    left, right = st.columns([1, 3], gap="large")
    with left:
        channel = st.selectbox("Channel", options, key="channel",
                               format_func=lambda c: f"#{c}  (g₁ {g1[c]:.2f}, g₂ {g2[c]:.2f})",
                               help=f"The top-{config.K_MAX} channels of either gate, strongest first.")
        st.markdown(f"g₁ = **{g1[channel]:.3f}**, g₂ = **{g2[channel]:.3f}**, x_m = **{xm[channel]:.3f}**")
    m1, m2 = available[channel]
    render = render_api()
    scope = "map" if s.scope == "map" else "pair"
    (sc1, sc2), = render.scale_for([[m1, m2]], scope)  # one group: the pair
    with right:
        cols = st.columns([1, 1, 0.6])
        for col, image, amap, sc, tag in ((cols[0], e.image1, m1, sc1, "A"), (cols[1], e.image2, m2, sc2, "B")):
            col.image(render.overlay(image, amap, cmap=s.cmap, alpha=s.alpha, vmin=sc[0], vmax=sc[1]),
                      caption=f"{tag} · channel {channel} · range [{fmt_num(sc[0])}, {fmt_num(sc[1])}]", width="stretch")
        st.caption("Raw activation of this channel before global pooling, bilinearly upsampled to the input. "
                   + scope_caption(scope))
