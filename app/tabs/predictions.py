"""Predictions: top-5 classes of each image and the four pairwise scores."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app.tabs.common import A_COLOUR, B_COLOUR, Context, class_name
from app.text import plotly_text

__all__ = ["draw"]


def _top5_figure(expl, probs_by_model: dict[str, np.ndarray], tops_by_model: dict[str, np.ndarray], target: int,
                 title: str) -> go.Figure:
    fig = go.Figure()
    colours = {"API-Net": A_COLOUR, "Baseline": "#6e7781"}
    union: list[int] = []
    probs_by = dict(probs_by_model)
    for top in tops_by_model.values():
        for c in top:
            if int(c) not in union:
                union.append(int(c))
    labels = [plotly_text(class_name(expl, c)) + (" ★" if c == target else "") for c in union]
    for name, probs in probs_by.items():
        fig.add_trace(go.Bar(y=labels, x=[probs[c] for c in union], name=name, orientation="h",
                             marker_color=colours.get(name, "#888"),
                             hovertemplate="%{y}: %{x:.3f}<extra>" + name + "</extra>"))
    fig.update_layout(title=title, barmode="group", height=300, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=dict(title="softmax probability", range=[0, 1]), yaxis=dict(autorange="reversed"),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def draw(ctx: Context) -> None:
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
    fig = go.Figure(go.Bar(x=names, y=values, marker_color=[A_COLOUR, "#9ec5fe", B_COLOUR, "#ffc9a6"],
                           text=[f"{v:.3f}" for v in values], textposition="outside"))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(range=[0, 1.1], title="p(target)"),
                      title="Pairwise scores of the target class: own gate (self) vs the partner's gate (other)")
    st.plotly_chart(fig, key="chart_scores", config={"displaylogo": False})
    st.caption(f"Ranking-loss terms max(0, p_other − p_self + {e.rank_margin:g}): A {e.rank_term1:.3f}, "
               f"B {e.rank_term2:.3f}. Zero means the self score already wins by the margin.")

