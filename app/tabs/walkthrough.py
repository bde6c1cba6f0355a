"""Walk-through: the paper's equations in order, with this pair's numbers."""

from __future__ import annotations

import numpy as np
import streamlit as st

from apinet.explain.facts import pair_facts

from app.numbers import margin_text, signed_sig
from app.tabs.common import Context, class_name, latex_text

__all__ = ["draw"]


def _vec(v: np.ndarray, n: int = 4) -> str:
    head = ", ".join(f"{x:.2f}" for x in np.asarray(v)[:n])
    return rf"[{head}, \dots]"


def draw(ctx: Context) -> None:
    e = ctx.expl
    x1, x2, xm, g1, g2 = (np.asarray(a, dtype=np.float64) for a in (e.features1, e.features2, e.mutual, e.gate1, e.gate2))
    d = x1.shape[0]
    t1, t2 = e.targets
    c1, c2 = class_name(e, t1), class_name(e, t2)
    st.markdown("#### How API-Net compares this pair, step by step")
    st.caption("Every number below is computed for the pair above (A = image 1, B = image 2). "
               "The walk-through follows the paper's equations in order.")

    st.markdown("**① Features.** The backbone turns each image into feature maps before pooling; "
                "global average pooling gives one vector per image.")
    st.latex(rf"x_1 = \mathrm{{GAP}}(F_1) = {_vec(x1)} \in \mathbb{{R}}^{{{d}}},\quad \|x_1\|_2 = {np.linalg.norm(x1):.2f}")
    st.latex(rf"x_2 = \mathrm{{GAP}}(F_2) = {_vec(x2)},\quad \|x_2\|_2 = {np.linalg.norm(x2):.2f}")

    st.markdown("**② Mutual vector.** An MLP reads both vectors at once and learns what they share and "
                "how they differ.")
    st.latex(rf"x_m = f_m([x_1, x_2]) = {_vec(xm)},\quad \|x_m\|_2 = {np.linalg.norm(xm):.2f}")

    top1, top2 = int(e.gate_order1[0]), int(e.gate_order2[0])
    by_act = e.settings.get("rank_by") == "gate_x_activation"
    st.markdown("**③ Gates.** The mutual vector, multiplied channel-wise with each image's own vector, "
                "gives a gate in (0, 1) per channel: which channels matter for *this* comparison.")
    for i, g, x, top in ((1, g1, x1, top1), (2, g2, x2, top2)):
        if by_act:
            head = rf"\text{{top }} g_{i} x_{i} = g_{i}[{top}]\,x_{i}[{top}] = {g[top] * x[top]:.3f}"
        else:
            head = rf"\text{{top gate }} g_{i}[{top}] = {g[top]:.3f}"
        st.latex(rf"g_{i} = \sigma(x_m \odot x_{i}),\ \overline{{g_{i}}} = {g.mean():.3f},\ " + head)
    facts = pair_facts(e)
    if by_act:
        why = "g·x, the channel's share of the gated residual."
    elif facts.any_tied:
        tied = ", ".join(f"{facts.image(i).top_tied} on {t}" for t, i in (("A", 1), ("B", 2))
                         if facts.image(i).top_tied > 1)
        why = (f"by z = x_m ⊙ x, because on this pair several channels share the top gate ({tied}): float32 "
               "gates round to exactly 1.0 above z ≈ 17.")
    else:
        why = "the highest gate (no ties on this pair)."
    st.caption("The top channel is the first of the explanation's own ranking (the Top-k tab's first channel): "
               + why)

    st.markdown("**④ Attentive features.** Each image is highlighted by its own gate (self) and by the "
                "other image's gate (other).")
    s1, o1, s2, o2 = (e.interaction[name] for name in ("self1", "other1", "self2", "other2"))
    st.latex(rf"x_1^{{self}} = x_1 + x_1 \odot g_1,\ \|\cdot\| = {np.linalg.norm(s1):.2f} \qquad "
             rf"x_1^{{other}} = x_1 + x_1 \odot g_2,\ \|\cdot\| = {np.linalg.norm(o1):.2f}")
    st.latex(rf"x_2^{{self}} = x_2 + x_2 \odot g_2,\ \|\cdot\| = {np.linalg.norm(s2):.2f} \qquad "
             rf"x_2^{{other}} = x_2 + x_2 \odot g_1,\ \|\cdot\| = {np.linalg.norm(o2):.2f}")

    st.markdown("**⑤ Four scores.** One shared classifier scores all four vectors; we read the softmax "
                "probability of each image's target class.")
    st.latex(rf"p_1^{{self}}(c_1{{=}}\text{{{latex_text(c1)}}}) = {e.p_self1:.3f},\qquad "
             rf"p_1^{{other}}(c_1) = {e.p_other1:.3f}")
    st.latex(rf"p_2^{{self}}(c_2{{=}}\text{{{latex_text(c2)}}}) = {e.p_self2:.3f},\qquad "
             rf"p_2^{{other}}(c_2) = {e.p_other2:.3f}")

    st.markdown("**⑥ Score-ranking loss.** Training pushes the self score above the other score by a "
                f"margin ε = {e.rank_margin:g}: an image should be recognised better with its own gate.")
    st.latex(rf"\mathcal{{L}}_{{rk}} = \max(0,\ p_1^{{other}} - p_1^{{self}} + \epsilon) + "
             rf"\max(0,\ p_2^{{other}} - p_2^{{self}} + \epsilon) = {e.rank_term1:.3f} + {e.rank_term2:.3f} "
             rf"= {e.rank_term1 + e.rank_term2:.3f}")
    if "1_contrast" in e.exact_cams:
        gap = facts.image1.logit_gap  # = the contrast map's mean (exact maps: checked when explained)
        st.markdown(f"On this pair, A's contrast map (tab *Exact maps*) averages logit_self − logit_other = "
                    f"{signed_sig(gap)} (p_self − p_other = {signed_sig(e.p_self1 - e.p_other1)}): where it is "
                    "positive, A's own "
                    "gate raises its class score more than B's gate would — the gap the ranking loss widens.")
    _first_order(e, facts)
    st.caption("At test time API-Net classifies each image alone (x → classifier, no pairing), as in the "
               "paper; the pairing explains *what the network learned to compare*.")



def _first_order(e, facts) -> None:
    """Why an intra pair can hardly rank itself, with this pair's numbers (apinet.explain.facts)."""
    fo, f1 = facts.first_order, facts.image1
    st.markdown("**⑦ Why similar images can hardly rank themselves.** Both gates come from the same mutual "
                "vector; they differ only because the two feature vectors differ. To first order:")
    st.latex(r"g_1 - g_2 \approx \sigma'(z) \cdot x_m \odot (x_1 - x_2)")
    st.markdown(
        f"In words: the gate difference is the feature difference, scaled by the mutual vector and by the "
        f"sigmoid's slope (at most 0.25). On this pair the features differ by **{fo.mean_abs_feature_diff:.3g}** "
        f"per channel on average ({fo.relative_feature_diff:.1%} of their length), the slope averages "
        f"{fo.mean_slope:.3g} and |x_m| {fo.mean_abs_mutual:.3g}, so the gates differ by "
        f"**{fo.mean_abs_gate_diff:.3g}** per channel (first-order estimate {fo.mean_abs_first_order:.3g}). "
        f"A's own gate and B's gate therefore move A's target logit by different amounts: "
        f"logit_self − logit_other = **{signed_sig(f1.logit_gap)}**, p_self − p_other = "
        f"**{signed_sig(f1.score_gap)}**, ranking-loss term {margin_text(f1)}.")
    if facts.intra:
        st.caption("This is an intra pair: two images of one class have similar features, so their gates are "
                   "similar, and neither image's own gate can do much better for it than its partner's. "
                   "Training cannot fix that; the ranking loss acts mostly through inter pairs.")
    else:
        st.caption("This is an inter pair: the features differ more, so the gates can differ more. Compare an "
                   "intra pair (button “Strongest intra pair”) to see the gates come together.")
