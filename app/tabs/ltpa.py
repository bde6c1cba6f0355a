"""LTPA attention maps (Jetley et al., ICLR 2018) at the chosen stage."""

from __future__ import annotations

import streamlit as st

from app.tabs.common import Context, attention_section
from app.theme import maps_per_row

__all__ = ["draw"]


def draw(ctx: Context) -> None:
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
    attention_section(ctx, "ltpa", per_row=maps_per_row(len(keys)), ltpa_keys=keys)
    st.caption("Units: a·h·w, multiples of uniform attention (1 = every position weighted equally), which keeps "
               "ratios between positions and between images exact.")
    if not any(k.startswith("apinet/trained") for k in e.ltpa):
        st.caption("This checkpoint has no trained LTPA estimator: only the parameter-free maps are shown.")
    elif not any(k.startswith("apinet/trained") for k in keys):
        trained = sorted(k.rsplit("/", 1)[1] for k in e.ltpa if k.startswith("apinet/trained"))
        st.caption(f"The trained LTPA estimator works at {', '.join(trained)}: choose that stage to see it.")

