"""Top-k channels: feature maps before global pooling, API-Net's gated channels beside the baseline's."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.tabs.common import Context, legend, overlay_grid, panel_row, scope_caption

__all__ = ["draw"]


def draw(ctx: Context) -> None:
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
    grid = overlay_grid(ctx, "channels", channel_sets=sets)
    legend(grid, "activation")
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
        panel_row(e.image1, [p.overlay1 for p in panels],
                   [f"#{int(c)} · {sym1} {float(v1[c]):.2f}" for c in idx1], "A", n)
        panel_row(e.image2, [p.overlay2 for p in panels],
                   [f"#{int(c)} · {sym2} {float(v2[c]):.2f}" for c in idx2], "B", n)
    if "baseline_top" not in e.channels:
        st.info("No baseline selected: choose one in the sidebar to compare.")
    st.caption("Captions: channel index · that image's gate value g (API-Net) or pooled activation x "
               "(baseline). " + scope_caption(s.scope))

