"""Predictions: top-5 classes of each image and the four pairwise scores."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app.tabs.common import A_COLOUR, B_COLOUR, Context, class_name
from app.text import plotly_text

__all__ = ["draw"]


def _top5_figure(expl, probs: np.ndarray, top: np.ndarray, target: int, title: str, colour: str) -> go.Figure:
    """One model's top-5 classes of one image: exactly 5 bars (its own top 5, not a union of models)."""
    classes = [int(c) for c in top]
    labels = [plotly_text(class_name(expl, c)) + (" ★" if c == target else "") for c in classes]
    fig = go.Figure(go.Bar(y=labels, x=[float(probs[c]) for c in classes], orientation="h", marker_color=colour,
                           text=[f"{float(probs[c]):.3f}" for c in classes], textposition="outside",
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(title=title, height=240, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=dict(title="softmax probability", range=[0, 1.15]), yaxis=dict(autorange="reversed"))
    return fig


def draw(ctx: Context) -> None:
    e = ctx.expl
    st.markdown("#### Predictions")
    t1, t2 = e.targets
    cols = st.columns(2, gap="large")
    for col, which, target, tag in ((cols[0], "1", t1, "A"), (cols[1], "2", t2, "B")):
        key = f"{which}_test"
        models = [("API-Net", e.probabilities[key], e.top_classes(key, 5)[0], A_COLOUR, "apinet")]
        if key in e.baseline_probabilities:
            models.append(("Baseline", e.baseline_probabilities[key], e.top_classes(key, 5, model="baseline")[0],
                           "#6e7781", "baseline"))
        for name, probs, top, colour, slug in models:
            col.plotly_chart(_top5_figure(e, probs, top, target, f"Image {tag} · {name}: top-5 classes (test path)",
                                          colour), key=f"chart_top5_{tag}_{slug}", config={"displaylogo": False})
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

