"""Class activation maps of each image's target (test path and pair path)."""

from __future__ import annotations

import streamlit as st

from app.tabs.common import Context, attention_section
from app.theme import maps_per_row

__all__ = ["draw"]


def draw(ctx: Context) -> None:
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
    attention_section(ctx, "cams", per_row=maps_per_row(len(keys)), cam_keys=keys)
    st.caption("Raw CAM values ReLU(Σ_c w_c A_c), not pytorch-grad-cam's per-map min-max, so shared scales "
               "compare A with B and API-Net with the baseline honestly.")

