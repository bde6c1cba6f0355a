"""A^2 double-attention gather maps, when the checkpoint has an A^2 block."""

from __future__ import annotations

import streamlit as st

from app.tabs.common import Context, attention_section

__all__ = ["draw"]


def draw(ctx: Context) -> None:
    e = ctx.expl
    st.markdown("#### A²: double-attention gather maps")
    st.caption("Double attention (Chen et al., NeurIPS 2018): gather maps are softmax distributions over "
               "positions; shown is their mean over the block's maps, in a·h·w units (1 = uniform).")
    a2 = getattr(e, "a2", None) or {}
    if not a2:
        st.info("This checkpoint has no A² block, so there are no A² maps. Train with an A² block to see them.")
        return
    attention_section(ctx, "a2")

