"""A^2 double-attention gather maps, when the checkpoint has an A^2 block."""

from __future__ import annotations

import streamlit as st

from app.tabs.common import Context, attention_section
from app.text import md
from app.theme import maps_per_row

__all__ = ["a2_train_command", "draw"]


def a2_train_command(backbone: str, stages: list[str]) -> str:
    """How to train a checkpoint with A² maps (``python -m apinet train --help``: ``--a2 STAGES``)."""
    last = stages[-1] if stages else "layer4"
    return (f"python -m apinet train --preset demo --model apinet --backbone {backbone} --a2 {last} "
            "--out runs/demo-apinet-a2")


def draw(ctx: Context) -> None:
    e = ctx.expl
    st.markdown("#### A²: double-attention gather maps")
    st.caption("Double attention (Chen et al., NeurIPS 2018): gather maps are softmax distributions over "
               "positions; shown is their mean over the block's maps, in a·h·w units (1 = uniform).")
    a2 = getattr(e, "a2", None) or {}
    if not a2:
        st.info(f"{md(ctx.apinet.label)} has no A² block, so there are no A² maps to show. Train a checkpoint "
                "with A² blocks after the last stages (`--a2`), then choose it in the sidebar: every "
                "checkpoint under the runs folder (`*.safetensors` with its `.json` card) is listed there "
                "on the next rerun after it is written.", icon=":material/info:")
        stages = sorted({key.rsplit("/", 1)[1] for key in e.ltpa})  # this backbone's stage names
        st.code(a2_train_command(ctx.apinet.backbone, stages), language="bash")
        return
    attention_section(ctx, "a2", per_row=maps_per_row(len(a2)))

