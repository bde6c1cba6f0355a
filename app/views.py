"""The tabs: walk-through, mutual & gate vectors, top-k channels, LTPA, CAMs, A², predictions, export.

Each view reads the cached :class:`apinet.explain.PairExplanation` and draws it with
:mod:`apinet.render` (colormaps, normalisation scopes, overlays, figures); nothing here runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app import config
from app.text import html_text, md, plotly_text

__all__ = ["Context", "DisplaySettings", "draw_image_card", "draw_pair_summary", "draw_tabs", "inject_css"]

_A_COLOUR = "#1f6feb"  # image A everywhere (charts, captions)
_B_COLOUR = "#e8590c"  # image B


@dataclass(frozen=True)
class DisplaySettings:
    k: int
    cmap: str
    alpha: float
    scope: str
    stage: str
    cam: str


@dataclass
class Context:
    expl: Any  # apinet.explain.PairExplanation
    settings: DisplaySettings
    image_a: Any  # picker.ChosenImage
    image_b: Any
    apinet: Any  # resources.CheckpointInfo
    baseline: Any | None


def inject_css() -> None:
    st.markdown(
        """
<style>
  .block-container {padding-top: 2.2rem; max-width: 1500px;}
  h1 {font-size: 1.9rem !important; margin-bottom: 0 !important;}
  [data-testid="stCaptionContainer"] {line-height: 1.35;}
  .apinet-tag {display:inline-block; padding:0 .45em; border-radius:.4em; font-size:.8rem;
               font-weight:600; color:white; margin-right:.3em;}
  .apinet-a {background:#1f6feb;} .apinet-b {background:#e8590c;}
  [class*="st-key-set_"] button {padding: 0 .1rem; min-height: 1.9rem; min-width: 0;}
  [class*="st-key-set_"] button p {font-size: .85rem; font-weight: 600;}
  .apinet-maphead {font-size:.8rem; font-weight:600; text-align:center; margin:.1rem 0;}
</style>""",
        unsafe_allow_html=True,
    )


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _render():
    from apinet import render

    return render


def _class_name(expl, index: int) -> str:
    names = list(getattr(expl, "class_names", []) or [])
    return names[index] if 0 <= index < len(names) else f"class {index}"


def _grid(ctx: "Context", view: str, **select: Any):
    """Overlays of one view in display units, ranges per the normalisation scope (apinet.render)."""
    s = ctx.settings
    k = s.k if view == "channels" else None
    return _render().overlay_grid(ctx.expl, view, cmap=s.cmap, alpha=s.alpha, k=k, scope=s.scope, **select)


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _range_text(panel) -> str:
    r1, r2 = panel.range1, panel.range2
    if tuple(r1) == tuple(r2):
        return f"[{_fmt(r1[0])}, {_fmt(r1[1])}]"
    return f"A [{_fmt(r1[0])}, {_fmt(r1[1])}] · B [{_fmt(r2[0])}, {_fmt(r2[1])}]"


def _scope_caption(scope: str) -> str:
    return f"Colour scale: {config.SCOPES[scope]}."


def _colorbar(cmap: str, low: str = "low", high: str = "high", units: str = "") -> None:
    """A thin legend strip of the current colormap with its end labels."""
    lut = _render().colormap_lut(cmap)
    strip = np.repeat(np.asarray(lut)[None], 10, axis=0)
    left, mid, right, _ = st.columns([0.5, 3, 2.2, 4], vertical_alignment="center", gap="small")
    left.caption(f"{low}")
    mid.image(strip, width="stretch")
    right.caption(f"{high} {units}".strip())


def _shared_range(grid) -> tuple[float, float] | None:
    ranges = {tuple(p.range1) for p in grid.panels} | {tuple(p.range2) for p in grid.panels}
    return next(iter(ranges)) if len(ranges) == 1 else None


def _legend(grid, units: str) -> None:
    shared = _shared_range(grid)
    if shared is not None:
        _colorbar(grid.cmap, _fmt(shared[0]), _fmt(shared[1]), units)
    else:
        _colorbar(grid.cmap, "low", "high", f"(range per {'map' if grid.scope == 'map' else 'pair'})")


# ----------------------------------------------------------------------------------------------
# Pair header
# ----------------------------------------------------------------------------------------------


def _prediction_line(expl, key: str, target: int | None) -> str:
    if key not in expl.probabilities:
        return ""
    (top,), (p_top,) = expl.top_classes(key, 1)
    top = int(top)
    mark = "" if target is None else (" — correct" if top == target else " — wrong")
    return f"API-Net predicts {md(_class_name(expl, top))} ({p_top:.0%}){mark}"


def draw_image_card(ctx: Context, tag: str) -> None:
    """One image of the pair as the model sees it, with its class and API-Net's prediction."""
    expl = ctx.expl
    chosen, image, which = (ctx.image_a, expl.image1, "1") if tag == "A" else (ctx.image_b, expl.image2, "2")
    st.markdown(f'<span class="apinet-tag apinet-{tag.lower()}">{tag}</span> '
                f'**{md(chosen.class_name) if chosen.class_name else "your image (no label)"}**',
                unsafe_allow_html=True)
    st.image(image, width="stretch")
    st.caption(_prediction_line(expl, f"{which}_test", chosen.label) + " · model input after preprocessing")
    unusual = expl.unusual[0 if tag == "A" else 1]
    if unusual:
        st.warning(md(unusual), icon=":material/help:")


def _signed(value: float) -> str:
    return f"{round(value, 3) + 0.0:+.3f}"


def draw_pair_summary(ctx: Context) -> None:
    expl = ctx.expl
    t1, t2 = expl.targets
    kind = "**intra** pair (same class)" if t1 == t2 else "**inter** pair (different classes)"
    st.markdown(f"An {kind}: A → **{md(_class_name(expl, t1))}**, B → **{md(_class_name(expl, t2))}**.")
    m1, m2 = st.columns(2)
    m1.metric("A: p_self − p_other", _signed(expl.p_self1 - expl.p_other1), border=True,
              help="Score of A's target class with its own gate minus with B's gate. The ranking loss "
                   f"wants at least +{expl.rank_margin:g}.")
    m2.metric("B: p_self − p_other", _signed(expl.p_self2 - expl.p_other2), border=True,
              help="Score of B's target class with its own gate minus with A's gate.")
    how = "gallery labels" if ctx.image_a.label is not None and ctx.image_b.label is not None \
        else "API-Net's predictions (uploads have no label)"
    st.caption(f"Targets: {how}. Ranking-loss terms {expl.rank_term1:.3f} (A), {expl.rank_term2:.3f} (B). "
               f"API-Net {md(ctx.apinet.label)} ({md(ctx.apinet.backbone)})"
               + (f" vs baseline {md(ctx.baseline.label)}." if ctx.baseline else "; no baseline."))


# ----------------------------------------------------------------------------------------------
# Tabs
# ----------------------------------------------------------------------------------------------


_TABS = ("Walk-through", "Mutual & gates", "Top-k channels", "LTPA attention", "Grad-CAM", "A² maps",
         "Predictions", "Export")


def draw_tabs(ctx: Context) -> None:
    tabs = st.tabs(list(_TABS))
    drawers = (_walkthrough, _vectors, _channels, _ltpa, _cams, _a2, _predictions, _export)
    for tab, draw in zip(tabs, drawers):
        with tab:
            draw(ctx)


def _vec(v: np.ndarray, n: int = 4) -> str:
    head = ", ".join(f"{x:.2f}" for x in np.asarray(v)[:n])
    return rf"[{head}, \dots]"


def _walkthrough(ctx: Context) -> None:
    e = ctx.expl
    x1, x2, xm, g1, g2 = (np.asarray(a, dtype=np.float64) for a in (e.features1, e.features2, e.mutual, e.gate1, e.gate2))
    d = x1.shape[0]
    t1, t2 = e.targets
    c1, c2 = _class_name(e, t1), _class_name(e, t2)
    st.markdown("#### How API-Net compares this pair, step by step")
    st.caption("Every number below is computed for the pair above (A = image 1, B = image 2). "
               "The walk-through follows the paper's equations in order.")

    st.markdown("**① Features.** The backbone turns each image into feature maps before pooling; "
                "global average pooling gives one vector per image.")
    st.latex(rf"x_1 = \mathrm{{GAP}}(F_1) = {_vec(x1)} \in \mathbb{{R}}^{{{d}}},\quad \|x_1\|_2 = {np.linalg.norm(x1):.2f}")
    st.latex(rf"x_2 = \mathrm{{GAP}}(F_2) = {_vec(x2)},\quad \|x_2\|_2 = {np.linalg.norm(x2):.2f}")

    st.markdown("**② Mutual vector.** An MLP reads both vectors at once and learns what they share and "
                "how they differ.")
    st.latex(rf"x_m = f_m([x_1, x_2]) = {_vec(xm)},\quad \|x_m\|_2 = {np.linalg.norm(xm):.2f}")

    top1, top2 = int(e.gate_order1[0]), int(e.gate_order2[0])
    by_act = e.settings.get("rank_by") == "gate_x_activation"
    st.markdown("**③ Gates.** The mutual vector, multiplied channel-wise with each image's own vector, "
                "gives a gate in (0, 1) per channel: which channels matter for *this* comparison.")
    for i, g, x, top in ((1, g1, x1, top1), (2, g2, x2, top2)):
        if by_act:
            head = rf"\text{{top }} g_{i} x_{i} = g_{i}[{top}]\,x_{i}[{top}] = {g[top] * x[top]:.3f}"
        else:
            head = rf"\text{{top gate }} g_{i}[{top}] = {g[top]:.3f}"
        st.latex(rf"g_{i} = \sigma(x_m \odot x_{i}),\ \overline{{g_{i}}} = {g.mean():.3f},\ " + head)
    st.caption("The top channel is the first of the explanation's own ranking (the Top-k tab's first channel): "
               + ("g·x, the channel's share of the gated residual." if by_act else
                  "by z = x_m ⊙ x, since float32 gates round to exactly 1.0 above z ≈ 17 and many tie there."))

    st.markdown("**④ Attentive features.** Each image is highlighted by its own gate (self) and by the "
                "other image's gate (other).")
    s1, o1, s2, o2 = (e.interaction[name] for name in ("self1", "other1", "self2", "other2"))
    st.latex(rf"x_1^{{self}} = x_1 + x_1 \odot g_1,\ \|\cdot\| = {np.linalg.norm(s1):.2f} \qquad "
             rf"x_1^{{other}} = x_1 + x_1 \odot g_2,\ \|\cdot\| = {np.linalg.norm(o1):.2f}")
    st.latex(rf"x_2^{{self}} = x_2 + x_2 \odot g_2,\ \|\cdot\| = {np.linalg.norm(s2):.2f} \qquad "
             rf"x_2^{{other}} = x_2 + x_2 \odot g_1,\ \|\cdot\| = {np.linalg.norm(o2):.2f}")

    st.markdown("**⑤ Four scores.** One shared classifier scores all four vectors; we read the softmax "
                "probability of each image's target class.")
    st.latex(rf"p_1^{{self}}(c_1{{=}}\text{{{_latex_text(c1)}}}) = {e.p_self1:.3f},\qquad "
             rf"p_1^{{other}}(c_1) = {e.p_other1:.3f}")
    st.latex(rf"p_2^{{self}}(c_2{{=}}\text{{{_latex_text(c2)}}}) = {e.p_self2:.3f},\qquad "
             rf"p_2^{{other}}(c_2) = {e.p_other2:.3f}")

    st.markdown("**⑥ Score-ranking loss.** Training pushes the self score above the other score by a "
                f"margin ε = {e.rank_margin:g}: an image should be recognised better with its own gate.")
    st.latex(rf"\mathcal{{L}}_{{rk}} = \max(0,\ p_1^{{other}} - p_1^{{self}} + \epsilon) + "
             rf"\max(0,\ p_2^{{other}} - p_2^{{self}} + \epsilon) = {e.rank_term1:.3f} + {e.rank_term2:.3f} "
             rf"= {e.rank_term1 + e.rank_term2:.3f}")
    st.caption("At test time API-Net classifies each image alone (x → classifier, no pairing), as in the "
               "paper; the pairing explains *what the network learned to compare*.")


def _latex_text(text: str) -> str:
    for ch in "\\{}_^#$%&~":
        text = text.replace(ch, " ")
    return text


def _vectors(ctx: Context) -> None:
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
        fig.add_trace(go.Scatter(x=xs, y=g1[order], name="g₁ (A)", mode="lines", line=dict(color=_A_COLOUR, width=1.4),
                                 customdata=custom, hovertemplate="channel %{customdata[0]}<br>g₁ %{y:.3f}<extra></extra>"))
        fig.add_trace(go.Scatter(x=xs, y=g2[order], name="g₂ (B)", mode="lines", line=dict(color=_B_COLOUR, width=1.4),
                                 customdata=custom, hovertemplate="channel %{customdata[0]}<br>g₂ %{y:.3f}<extra></extra>"))
        pos = {int(c): i for i, c in enumerate(order)}
        for top, gate, colour, name in ((top1, g1, _A_COLOUR, "top-k of g₁"), (top2, g2, _B_COLOUR, "top-k of g₂")):
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
    render = _render()
    scope = "map" if s.scope == "map" else "pair"
    (sc1, sc2), = render.scale_for([[m1, m2]], scope)  # one group: the pair
    with right:
        cols = st.columns([1, 1, 0.6])
        for col, image, amap, sc, tag in ((cols[0], e.image1, m1, sc1, "A"), (cols[1], e.image2, m2, sc2, "B")):
            col.image(render.overlay(image, amap, cmap=s.cmap, alpha=s.alpha, vmin=sc[0], vmax=sc[1]),
                      caption=f"{tag} · channel {channel} · range [{_fmt(sc[0])}, {_fmt(sc[1])}]", width="stretch")
        st.caption("Raw activation of this channel before global pooling, bilinearly upsampled to the input. "
                   + _scope_caption(scope))


def _panel_row(image: np.ndarray, overlays: list[np.ndarray], captions: list[str] | None, tag: str, n: int) -> None:
    cols = st.columns([0.3] + [1] * max(n, 5), vertical_alignment="center")
    cols[0].markdown(f'<span class="apinet-tag apinet-{tag.lower()}">{tag}</span>', unsafe_allow_html=True)
    for i, ov in enumerate(overlays):
        cols[i + 1].image(ov, caption=captions[i] if captions else None, width="stretch")


def _channels(ctx: Context) -> None:
    e, s = ctx.expl, ctx.settings
    st.markdown(f"#### Top-{s.k} channels: feature maps before global pooling")
    st.caption("As in the paper's figure: the channels with the largest gate values and what they respond to "
               "on both images, next to the baseline's strongest channels. Maps are raw activations of the "
               "last stage, bilinearly upsampled to the input; bright = strong.")
    sets = [name for name in ("apinet_gate1", "apinet_gate2", "baseline_top", "baseline_at_apinet")
            if name in e.channels]
    if not sets:
        st.info("This explanation has no channel maps.")
        return
    grid = _grid(ctx, "channels", channel_sets=sets)
    _legend(grid, "activation")
    by_set: dict[str, list] = {}
    for panel in grid.panels:
        by_set.setdefault(panel.group, []).append(panel)
    titles = {"apinet_gate1": f"API-Net · top-{s.k} channels of g₁ (A's gate)",
              "apinet_gate2": f"API-Net · top-{s.k} channels of g₂ (B's gate)",
              "baseline_top": f"Baseline · its own top-{s.k} channels (per image)",
              "baseline_at_apinet": "Baseline · at API-Net's g₁ channel indices"}
    for name in sets:
        cm, panels = e.channels[name], by_set.get(name, [])
        st.markdown(f"**{titles.get(name, cm.label)}** — <span style='color:#57606a'>{cm.ranking}</span>",
                    unsafe_allow_html=True)
        n = len(panels)
        idx1, idx2 = np.asarray(cm.indices)[:n], np.asarray(cm.indices2)[:n]
        if name.startswith("apinet"):
            v1, v2, sym1, sym2 = e.gate1, e.gate2, "g₁", "g₂"
        else:
            v1, v2, sym1, sym2 = e.baseline_features1, e.baseline_features2, "x", "x"
        _panel_row(e.image1, [p.overlay1 for p in panels],
                   [f"#{int(c)} · {sym1} {float(v1[c]):.2f}" for c in idx1], "A", n)
        _panel_row(e.image2, [p.overlay2 for p in panels],
                   [f"#{int(c)} · {sym2} {float(v2[c]):.2f}" for c in idx2], "B", n)
    if "baseline_top" not in e.channels:
        st.info("No baseline selected: choose one in the sidebar to compare.")
    st.caption("Captions: channel index · that image's gate value g (API-Net) or pooled activation x "
               "(baseline). " + _scope_caption(s.scope))


def _attention_section(ctx: Context, view: str, **select: Any) -> None:
    e, s = ctx.expl, ctx.settings
    grid = _grid(ctx, view, **select)
    if not grid.panels:
        st.info("Nothing to show for this selection.")
        return
    units = sorted({p.units for p in grid.panels})
    _legend(grid, units[0] if len(units) == 1 else "")
    n = len(grid.panels)
    per_row = 3 if n > 4 or n == 3 else max(n, 2)
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
                note = f"{panel.units} · {_range_text(panel)}"
                if source is not None and hasattr(source, "target1"):
                    note += (f" · targets A → {md(_class_name(e, source.target1))}, "
                             f"B → {md(_class_name(e, source.target2))}")
                if view == "ltpa" and source is not None:
                    note += " · " + _ltpa_numbers(source)
                st.caption(note)
    st.caption(_scope_caption(s.scope))


def _ltpa_numbers(att) -> str:
    """Raw compatibility range and spread of an LTPA map, as the explanation computed them."""
    parts = []
    if att.compatibility1 is not None:
        parts.append(f"raw c = ⟨l_i, g⟩: A [{_fmt(float(np.min(att.compatibility1)))}, "
                     f"{_fmt(float(np.max(att.compatibility1)))}], B [{_fmt(float(np.min(att.compatibility2)))}, "
                     f"{_fmt(float(np.max(att.compatibility2)))}]")
    if att.scores1 is not None and att.similarity == "dot" and att.temperature1 != 1.0:
        parts.append(f"T: A {_fmt(att.temperature1)}, B {_fmt(att.temperature2)}")
    if att.normalisation.startswith("softmax"):
        s1, s2 = att.effective_support()
        parts.append(f"spread exp(entropy): A {s1:.1f}, B {s2:.1f} of {att.map1.size} cells")
    return " · ".join(parts)


def _ltpa(ctx: Context) -> None:
    e = ctx.expl
    st.markdown("#### LTPA: where the global descriptor looks")
    st.caption("Learn to Pay Attention (Jetley et al., ICLR 2018): compatibility c_i = ⟨l_i, g⟩ between each "
               "local feature l_i and a global vector g, softmax over the h·w positions of c_i / T. Parameter-free "
               "maps use T = the standard deviation of c over the image's positions: at T = 1 (the paper) c spans "
               "~1,000 logits on trained features and the softmax lights a single cell. The same ranking of "
               "positions, a readable spread; the raw c range and T are printed under each map. *pooled*: g = "
               "the stage's own pooled feature; *gated*: g = API-Net's gated feature x^self; *trained*: the "
               "model's trained estimator (its own compatibility), when it has one.")
    stage = ctx.settings.stage
    keys = [k for k in e.ltpa if k.endswith("/" + stage)]
    if not keys:
        st.info(f"No LTPA maps at stage {stage} in this explanation.")
        return
    _attention_section(ctx, "ltpa", ltpa_keys=keys)
    st.caption("Units: a·h·w, multiples of uniform attention (1 = every position weighted equally), which keeps "
               "ratios between positions and between images exact.")
    if not any(k.startswith("apinet/trained") for k in e.ltpa):
        st.caption("This checkpoint has no trained LTPA estimator: only the parameter-free maps are shown.")
    elif not any(k.startswith("apinet/trained") for k in keys):
        trained = sorted(k.rsplit("/", 1)[1] for k in e.ltpa if k.startswith("apinet/trained"))
        st.caption(f"The trained LTPA estimator works at {', '.join(trained)}: choose that stage to see it.")


def _cams(ctx: Context) -> None:
    e = ctx.expl
    from apinet.explain import CAM_LABELS, CAM_NOTE

    st.markdown(f"#### {CAM_LABELS.get(ctx.settings.cam, ctx.settings.cam)}: class activation maps of each "
                "image's target")
    st.caption("At the last feature maps. *test*: the plain classifier on each image alone; *pair*: the target's "
               "score through API-Net's gated self path, back-propagated for each image on its own (the gates "
               "couple the two images). " + CAM_NOTE)
    keys = [k for k in e.cams if k.endswith("/" + ctx.settings.cam)]
    if not keys:
        st.info("No CAMs for this method in this explanation.")
        return
    _attention_section(ctx, "cams", cam_keys=keys)
    st.caption("Raw CAM values ReLU(Σ_c w_c A_c), not pytorch-grad-cam's per-map min-max, so shared scales "
               "compare A with B and API-Net with the baseline honestly.")


def _a2(ctx: Context) -> None:
    e = ctx.expl
    st.markdown("#### A²: double-attention gather maps")
    st.caption("Double attention (Chen et al., NeurIPS 2018): gather maps are softmax distributions over "
               "positions; shown is their mean over the block's maps, in a·h·w units (1 = uniform).")
    a2 = getattr(e, "a2", None) or {}
    if not a2:
        st.info("This checkpoint has no A² block, so there are no A² maps. Train with an A² block to see them.")
        return
    _attention_section(ctx, "a2")


def _top5_figure(expl, probs_by_model: dict[str, np.ndarray], tops_by_model: dict[str, np.ndarray], target: int,
                 title: str) -> go.Figure:
    fig = go.Figure()
    colours = {"API-Net": _A_COLOUR, "Baseline": "#6e7781"}
    union: list[int] = []
    probs_by = dict(probs_by_model)
    for top in tops_by_model.values():
        for c in top:
            if int(c) not in union:
                union.append(int(c))
    labels = [plotly_text(_class_name(expl, c)) + (" ★" if c == target else "") for c in union]
    for name, probs in probs_by.items():
        fig.add_trace(go.Bar(y=labels, x=[probs[c] for c in union], name=name, orientation="h",
                             marker_color=colours.get(name, "#888"),
                             hovertemplate="%{y}: %{x:.3f}<extra>" + name + "</extra>"))
    fig.update_layout(title=title, barmode="group", height=300, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=dict(title="softmax probability", range=[0, 1]), yaxis=dict(autorange="reversed"),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def _predictions(ctx: Context) -> None:
    e = ctx.expl
    st.markdown("#### Predictions")
    t1, t2 = e.targets
    cols = st.columns(2, gap="large")
    for col, which, target, tag in ((cols[0], "1", t1, "A"), (cols[1], "2", t2, "B")):
        key = f"{which}_test"
        probs = {"API-Net": e.probabilities[key]}
        tops = {"API-Net": e.top_classes(key, 5)[0]}
        if key in e.baseline_probabilities:
            probs["Baseline"] = e.baseline_probabilities[key]
            tops["Baseline"] = e.top_classes(key, 5, model="baseline")[0]
        col.plotly_chart(_top5_figure(e, probs, tops, target, f"Image {tag}: top-5 classes (test path)"),
                         key=f"chart_top5_{tag}", config={"displaylogo": False})
    st.caption("Test path: each image classified alone (no pairing). ★ marks the explained target class.")

    names = ["A self", "A other", "B self", "B other"]
    values = [e.p_self1, e.p_other1, e.p_self2, e.p_other2]
    fig = go.Figure(go.Bar(x=names, y=values, marker_color=[_A_COLOUR, "#9ec5fe", _B_COLOUR, "#ffc9a6"],
                           text=[f"{v:.3f}" for v in values], textposition="outside"))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(range=[0, 1.1], title="p(target)"),
                      title="Pairwise scores of the target class: own gate (self) vs the partner's gate (other)")
    st.plotly_chart(fig, key="chart_scores", config={"displaylogo": False})
    st.caption(f"Ranking-loss terms max(0, p_other − p_self + {e.rank_margin:g}): A {e.rank_term1:.3f}, "
               f"B {e.rank_term2:.3f}. Zero means the self score already wins by the margin.")


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------


_FIGURE_VIEWS = {"summary": "Summary (images, top channels, gates, scores)", "channels": "Top-k channels",
                 "ltpa": "LTPA maps (current stage)", "cams": "CAMs (current method)", "a2": "A² maps"}


def figure_settings(ctx: Context, view: str, dpi: int):
    """The :class:`apinet.render.FigureSettings` of the current display settings."""
    e, s = ctx.expl, ctx.settings
    return _render().FigureSettings(
        view=view, cmap=s.cmap, alpha=s.alpha, scope=s.scope, k=s.k, dpi=dpi,
        channel_sets=[c for c in ("apinet_gate1", "apinet_gate2", "baseline_top") if c in e.channels],
        ltpa_keys=[k for k in e.ltpa if k.endswith("/" + s.stage)] or None,
        cam_keys=[k for k in e.cams if k.endswith("/" + s.cam)] or None,
    )


def figure_bytes(ctx: Context, view: str, fmt: str, dpi: int) -> bytes:
    """The figure of ``view`` as PDF / SVG / PNG bytes (drawn by apinet.render; no model runs)."""
    import tempfile

    import matplotlib.pyplot as plt

    render = _render()
    settings = figure_settings(ctx, view, dpi)
    fig = render.pair_figure(ctx.expl, view, settings)
    try:
        with tempfile.TemporaryDirectory(prefix="apinet-fig-") as tmp:
            path = render.save_figure(fig, f"{tmp}/figure.{fmt}", dpi=dpi)
            return path.read_bytes()
    finally:
        plt.close(fig)


def npz_bytes(expl) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="apinet-npz-") as tmp:
        return expl.to_npz(f"{tmp}/explanation.npz").read_bytes()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:60]


def _export(ctx: Context) -> None:
    e = ctx.expl
    st.markdown("#### Export")
    st.caption("Publication figures are drawn by `apinet.render` with the current display settings (k, "
               "colormap, opacity, normalisation scope, CAM method, LTPA stage); PDF and SVG keep editable "
               "text. Arrays are the raw explanation (NPZ) and its scalars and settings (JSON).")
    views = [v for v in _FIGURE_VIEWS if v != "a2" or e.a2]
    left, right = st.columns([2, 1])
    view = left.selectbox("Figure", views, key="export_view", format_func=_FIGURE_VIEWS.get)
    dpi = right.select_slider("PNG resolution (dpi)", [150, 200, 300, 600], value=300, key="export_dpi")
    stem = _slug(f"apinet_{ctx.image_a.name}_vs_{ctx.image_b.name}")
    cols = st.columns(5)
    for col, fmt, mime in ((cols[0], "pdf", "application/pdf"), (cols[1], "svg", "image/svg+xml"),
                           (cols[2], "png", "image/png")):
        col.download_button(f"Figure · {fmt.upper()}", data=lambda fmt=fmt: figure_bytes(ctx, view, fmt, dpi),
                            file_name=f"{stem}_{view}.{fmt}", mime=mime, key=f"dl_{fmt}", on_click="ignore",
                            icon=":material/download:", width="stretch")
    cols[3].download_button("Arrays · NPZ", data=lambda: npz_bytes(e), file_name=f"{stem}.npz",
                            mime="application/octet-stream", key="dl_npz", on_click="ignore",
                            icon=":material/data_array:", width="stretch")
    cols[4].download_button("Summary · JSON", data=lambda: e.to_json(), file_name=f"{stem}.json",
                            mime="application/json", key="dl_json", on_click="ignore",
                            icon=":material/data_object:", width="stretch")
    if st.toggle("Preview the figure", key="export_preview",
                 help="Draws the figure on every change while on (about a second)."):
        try:
            st.image(figure_bytes(ctx, view, "png", 100), width="stretch")
        except ValueError as exc:
            st.info(" ".join(str(exc).split()))
    with st.expander("Figure settings as JSON (to remake it with apinet.render)", icon=":material/tune:"):
        st.code(figure_settings(ctx, view, dpi).to_json(), language="json")
