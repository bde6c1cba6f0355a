"""Top-k channels: feature maps before global pooling, API-Net's gated channels beside the baseline's."""

from __future__ import annotations

import numpy as np
import streamlit as st

from apinet.render.notes import relu6_caption
from app.tabs.common import Context, legend, overlay_grid, panel_row, scope_caption
from app.text import html_text
from app.theme import large_maps

__all__ = ["BASELINE_AT_APINET_LABEL", "draw"]

BASELINE_AT_APINET_LABEL = ("Also show the baseline at API-Net's channel indices (only meaningful if the "
                            "channels correspond)")
_LARGE_PER_ROW = 3  # channels per row with "Large maps" (about twice the width of the default five)


def _large_row(overlays: list[np.ndarray], captions: list[str], tag: str) -> None:
    cols = st.columns([0.3] + [1] * _LARGE_PER_ROW, vertical_alignment="center")
    cols[0].markdown(f'<span class="apinet-tag apinet-{tag.lower()}">{tag}</span>', unsafe_allow_html=True)
    for col, overlay, caption in zip(cols[1:], overlays, captions):
        col.image(overlay, caption=caption, width="stretch")


def draw(ctx: Context) -> None:
    e, s = ctx.expl, ctx.settings
    st.markdown(f"#### Top-{s.k} channels: feature maps before global pooling")
    st.caption("As in the paper's figure: the channels with the largest gate values and what they respond to "
               "on both images, next to the baseline's strongest channels. Maps are raw activations of the "
               "last stage, bilinearly upsampled to the input; bright = strong.")
    sets = [name for name in ("apinet_gate1", "apinet_gate2", "baseline_top") if name in e.channels]
    if "baseline_at_apinet" in e.channels and st.toggle(
            BASELINE_AT_APINET_LABEL, key="ch_baseline_at_apinet", value=False,
            help="Channel c of the baseline and channel c of API-Net are the same feature only when both "
                 "trunks start from the same weights and barely move apart; trained separately they do not."):
        sets.append("baseline_at_apinet")
    if not sets:
        st.info("This explanation has no channel maps.")
        return
    large = large_maps()
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
        st.markdown(f"**{titles.get(name, cm.label)}** — <span class='apinet-muted'>{html_text(cm.ranking)}</span>",
                    unsafe_allow_html=True)
        n = len(panels)
        idx1, idx2 = np.asarray(cm.indices)[:n], np.asarray(cm.indices2)[:n]
        if name.startswith("apinet"):
            v1, v2, sym1, sym2 = e.gate1, e.gate2, "g₁", "g₂"
        else:
            v1, v2, sym1, sym2 = e.baseline_features1, e.baseline_features2, "x", "x"
        caps1 = [f"#{int(c)} · {sym1} {float(v1[c]):.2f}" for c in idx1]
        caps2 = [f"#{int(c)} · {sym2} {float(v2[c]):.2f}" for c in idx2]
        step = _LARGE_PER_ROW if large else max(n, 1)
        for start in range(0, n, step):
            part = slice(start, start + step)
            for image, overlays, caps, tag in ((e.image1, [p.overlay1 for p in panels[part]], caps1[part], "A"),
                                               (e.image2, [p.overlay2 for p in panels[part]], caps2[part], "B")):
                if large:
                    _large_row(overlays, caps, tag)
                else:
                    panel_row(image, overlays, caps, tag, n)
    if "baseline_top" not in e.channels:
        st.info("No baseline selected: choose one in the sidebar to compare.")
    st.caption("Captions: channel index · that image's gate value g (API-Net) or pooled activation x "
               "(baseline). " + scope_caption(s.scope, s.clip))
    relu6 = relu6_caption(e, sets)  # issue #22: Lite's ReLU6 clips channel maps at 6
    if relu6:
        st.caption(relu6)

