"""The baseline selector: only baselines the chosen API-Net can be compared with, the others listed
under it with the reason (:mod:`apinet.compat` decides), and the import expander below it."""

from __future__ import annotations

import streamlit as st

from app import config, import_model, resources
from app.text import md

__all__ = ["NONE", "draw_baseline_selector", "is_offered", "split_baselines"]

NONE = "none"
#: Beyond this many, the baselines not offered are listed inside an expander (still one line each).
_LIST_INLINE = 4


def split_baselines(ckpt: resources.CheckpointInfo, baselines: list[resources.CheckpointInfo]
                    ) -> tuple[list[resources.CheckpointInfo], list[tuple[resources.CheckpointInfo, str]]]:
    """``(offered, [(not offered, reason), ...])`` for API-Net ``ckpt``."""
    from apinet.compat import baseline_mismatch

    offered, refused = [], []
    for base in baselines:
        reason = baseline_mismatch(ckpt.interface, base.interface)
        if reason is None:
            offered.append(base)
        else:
            refused.append((base, reason))
    return offered, refused


def is_offered(ckpt: resources.CheckpointInfo, base: resources.CheckpointInfo | None) -> bool:
    """Whether the selector offers ``base`` beside API-Net ``ckpt`` (code that picks a baseline before the
    selector is drawn, e.g. the atlas, asks this instead of comparing cards itself)."""
    from apinet.compat import baseline_mismatch

    return base is not None and baseline_mismatch(ckpt.interface, base.interface) is None


def _default(offered: list[resources.CheckpointInfo]) -> str:
    for base in offered:
        if base.path.endswith(config.DEMO_BASELINE):
            return base.label
    return offered[0].label if offered else NONE


def _list_refused(refused: list[tuple[resources.CheckpointInfo, str]]) -> None:
    if not refused:
        return
    where = st.container() if len(refused) <= _LIST_INLINE else st.expander(
        f"{len(refused)} baselines not offered", icon=":material/block:")
    with where:
        st.caption("Not offered: a baseline needs API-Net's class names in the same order, its input and "
                   "its map size.")
        for base, reason in refused:
            st.caption(f"{md(base.label)}: {md(reason)}")


def draw_baseline_selector(ckpt: resources.CheckpointInfo, baselines: list[resources.CheckpointInfo],
                           paths: config.Paths) -> resources.CheckpointInfo | None:
    """Draw the selector (in the current container), the baselines not offered, and the import expander;
    return the chosen baseline (``None`` for "none").

    The import runs before the selector is filled, so a checkpoint imported in this run is offered
    (and chosen, when it is compatible) in this same run.
    """
    slot = st.container()
    imported = import_model.draw(ckpt, paths)
    if imported is not None:  # the folder's fingerprint changed: the listing reads the new card
        found, _ = resources.discover_checkpoints(str(paths.checkpoints), str(paths.runs))
        baselines = [c for c in found if c.architecture == "baseline"]
    offered, refused = split_baselines(ckpt, baselines)
    labels = [NONE] + [c.label for c in offered]
    if imported is not None and imported in labels:
        st.session_state["base"] = imported
    if st.session_state.get("base") not in labels:  # e.g. another API-Net was chosen
        st.session_state["base"] = _default(offered)
    with slot:
        st.selectbox("Baseline checkpoint", labels, key="base",
                     help="A plain classifier compared map for map. Offered: those with API-Net's class names "
                          "in the same order, its input size and normalisation, and its feature-map size.")
        _list_refused(refused)
    return next((c for c in offered if c.label == st.session_state["base"]), None)
