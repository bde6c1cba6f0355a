"""Pairs where the mechanism shows: the gallery's pairs ranked by mechanism strength (issue #22).

Every gallery image is paired as in training (nearest same-class and other-class image by pooled
features) and each pair scored by :func:`apinet.mechanism.pair_strength` (mean |g1 - g2|, A's logit gap
logit_self - logit_other, A's p_self - p_other), once per checkpoint (``resources.gallery_pairs``).
Two buttons open the strongest inter and intra pair; the landing pair is the strongest inter pair.
"""

from __future__ import annotations

import streamlit as st

from app import picker, resources
from app.numbers import signed_sig
from app.state import GALLERY_PREFIX

__all__ = ["DEFAULT_MEASURE", "MEASURES", "draw_buttons", "landing_pair"]

MEASURES = {"logit_gap": "A's logit gap (logit_self − logit_other)", "gate_gap": "mean |g₁ − g₂|",
            "self_minus_other": "A's p_self − p_other"}
DEFAULT_MEASURE = "logit_gap"
MEASURE_KEY = "strength_by"


def _ranked(gallery, ckpt, gallery_dir: str):
    return resources.gallery_pairs(ckpt.path, ckpt.sha256, gallery_dir, gallery.key)


def landing_pair(gallery, ckpt, gallery_dir: str) -> tuple[str, str] | None:
    """The first pair a visitor sees: the gallery's strongest inter pair by :data:`DEFAULT_MEASURE`."""
    try:
        pair = _ranked(gallery, ckpt, gallery_dir).strongest("inter", DEFAULT_MEASURE)
    except Exception:  # noqa: BLE001 - a landing pair is a nicety; the page falls back to its default
        return None
    if pair is None:
        return None
    return gallery.items[pair[0]].id, gallery.items[pair[1]].id


def _open_strongest(kind: str, gallery, ckpt, gallery_dir: str) -> None:
    by = st.session_state.get(MEASURE_KEY, DEFAULT_MEASURE)
    ranked = _ranked(gallery, ckpt, gallery_dir)
    order = ranked.ranked(kind, by)
    if order.size == 0:
        picker.set_message("error", f"The gallery has no {kind} pair (each class needs "
                           + ("two images)." if kind == "intra" else "a partner of another class)."))
        return
    best = int(order[0])
    first, second = gallery.items[int(ranked.first[best])], gallery.items[int(ranked.second[best])]
    st.session_state.a, st.session_state.b = GALLERY_PREFIX + first.id, GALLERY_PREFIX + second.id
    s = ranked.strength
    picker.set_message("info", f"The gallery's strongest {kind} pair by {MEASURES[by]}, of {order.size}: "
                       f"logit gap {signed_sig(s.logit_gap[best])}, mean |g₁ − g₂| {s.gate_gap[best]:.3g}, "
                       f"p_self − p_other {signed_sig(s.self_minus_other[best])} (A's numbers at its label).")


def draw_buttons(gallery, ckpt, gallery_dir: str) -> None:
    """"Strongest inter pair" / "Strongest intra pair" and the measure they rank by."""
    cols = st.columns([1, 1])  # pairs where the attention visibly acts (each image with its nearest partners)
    cols[0].button("Strongest inter pair", key="btn_strong_inter", on_click=_open_strongest,
                   args=("inter", gallery, ckpt, gallery_dir), icon=":material/trending_up:", width="stretch",
                   help="Two classes: the gallery pair whose gates change A's score the most.")
    cols[1].button("Strongest intra pair", key="btn_strong_intra", on_click=_open_strongest,
                   args=("intra", gallery, ckpt, gallery_dir), icon=":material/join_inner:", width="stretch",
                   help="One class: even the strongest such pair moves little, since similar images get "
                        "similar gates (see the Walk-through).")
    st.selectbox("Rank pairs by", list(MEASURES), key=MEASURE_KEY, format_func=MEASURES.get,
                 label_visibility="collapsed", help="The measure the two buttons rank the gallery's pairs by.")
