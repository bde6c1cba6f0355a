"""The pair's header: page style, each image's card and the pair summary above the tabs."""

from __future__ import annotations

import streamlit as st

from app.tabs.common import Context, class_name
from app.numbers import margin_text, signed_sig
from app.text import md

__all__ = ["draw_image_card", "draw_pair_summary", "inject_css"]


def inject_css() -> None:
    st.markdown(
        """
<style>
  .block-container {padding-top: 2.2rem; max-width: 1500px;}
  h1 {font-size: 1.9rem !important; margin-bottom: 0 !important;}
  [data-testid="stCaptionContainer"] {line-height: 1.35;}
  .apinet-tag {display:inline-block; padding:0 .45em; border-radius:.4em; font-size:.8rem;
               font-weight:600; color:white; margin-right:.3em;}
  .apinet-a {background:#1f6feb;} .apinet-b {background:#e8590c;}
  [class*="st-key-set_"] button {padding: 0 .1rem; min-height: 1.9rem; min-width: 0;}
  [class*="st-key-set_"] button p {font-size: .85rem; font-weight: 600;}
  .apinet-maphead {font-size:.8rem; font-weight:600; text-align:center; margin:.1rem 0;}
  /* Secondary text: the theme's own text colour, dimmed, so it reads on light and dark alike. */
  .apinet-muted {opacity:.72;}
  /* Display equations wider than the screen scroll sideways instead of being cut off. */
  .katex-display {overflow-x:auto; overflow-y:hidden; padding:.15rem 0 .35rem;}
  .katex-display {scrollbar-width: thin;}
  @media (max-width: 640px) { .katex-display > .katex {font-size: 1em;} }
</style>""",
        unsafe_allow_html=True,
    )


def _prediction_line(expl, key: str, target: int | None) -> str:
    if key not in expl.probabilities:
        return ""
    (top,), (p_top,) = expl.top_classes(key, 1)
    top = int(top)
    mark = "" if target is None else (" — correct" if top == target else " — wrong")
    return f"API-Net predicts {md(class_name(expl, top))} ({p_top:.0%}){mark}"


def draw_image_card(ctx: Context, tag: str) -> None:
    """One image of the pair as the model sees it, with its class and API-Net's prediction."""
    expl = ctx.expl
    chosen, image, which = (ctx.image_a, expl.image1, "1") if tag == "A" else (ctx.image_b, expl.image2, "2")
    st.markdown(f'<span class="apinet-tag apinet-{tag.lower()}">{tag}</span> '
                f'**{md(chosen.class_name) if chosen.class_name else "your image (no label)"}**',
                unsafe_allow_html=True)
    st.image(image, width="stretch")
    st.caption(_prediction_line(expl, f"{which}_test", chosen.label) + " · model input after preprocessing")
    unusual = expl.unusual[0 if tag == "A" else 1]
    if unusual:
        st.warning(md(unusual), icon=":material/help:")


def draw_pair_summary(ctx: Context) -> None:
    from apinet.explain.facts import SATURATED_SCORE, pair_facts

    expl = ctx.expl
    facts = pair_facts(expl)
    t1, t2 = expl.targets
    kind = "**intra** pair (same class)" if t1 == t2 else "**inter** pair (different classes)"
    st.markdown(f"An {kind}: A → **{md(class_name(expl, t1))}**, B → **{md(class_name(expl, t2))}**.")
    rows = "\n".join(f"| **{tag}** | {signed_sig(facts.image(i).logit_gap)} | {signed_sig(facts.image(i).score_gap)} | "
                     f"{margin_text(facts.image(i))} |" for tag, i in (("A", 1), ("B", 2)))
    st.markdown("| | Δ logit | Δ p | ranking loss |\n|---|---:|---:|---:|\n" + rows,
                help="Δ = self − other: each image's target-class logit (Δ logit) and score (Δ p) with its own "
                     "gate (self) minus with the partner's gate (other). The logit difference is where the "
                     "gates' effect shows: probabilities near 1 "
                     f"hide it. The ranking loss max(0, p_other − p_self + {expl.rank_margin:g}) is 0 once "
                     f"p_self − p_other ≥ {expl.rank_margin:g} (margin met).")
    how = "gallery labels" if ctx.image_a.label is not None and ctx.image_b.label is not None \
        else "API-Net's predictions (uploads have no label)"
    labels = (ctx.image_a.label, ctx.image_b.label)
    if None not in labels and tuple(expl.targets) != labels:  # "Explain A / B as" chose another class
        how = "chosen under Explain A / B as"
    st.caption(f"Targets: {how}. "
               f"API-Net {md(ctx.apinet.label)} ({md(ctx.apinet.backbone)})"
               + (f" vs baseline {md(ctx.baseline.label)}." if ctx.baseline else "; no baseline."))
    if facts.any_saturated:
        which = " and ".join(t for t, i in (("A", 1), ("B", 2)) if facts.image(i).scores_saturated)
        st.caption(f"{which}: both scores are above {SATURATED_SCORE:g}, so p_self − p_other can hardly move; "
                   "read the logit difference instead.")
