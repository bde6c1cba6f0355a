"""Exact maps: where each pair-path logit comes from, position by position, and the numbers that
show the decomposition is exact (spatial mean + bias = the model's logit)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import outline
from app.tabs.common import Context, class_name, fmt_num, overlay_grid, render_api, scope_caption, shared_range
from app.text import md

__all__ = ["DIVERGING", "draw", "exact_numbers", "signed_legend"]

#: The diverging colormap of every signed map in the app (zero = neutral centre, symmetric limits).
DIVERGING = "RdBu_r"
_KINDS = (("self", "self: own gate"), ("other", "other: partner's gate"), ("contrast", "contrast: self − other"))


def exact_numbers(e, image: int, kind: str) -> str:
    """The exactness line of one map: its spatial mean plus the bias, and the model's own logit."""
    rec = e.exact_cams[f"{image}_{kind}"]
    c = rec.target
    mean = float(np.asarray(rec.raw, np.float64).mean())
    self_l, other_l = float(e.logits[f"{image}_self"][c]), float(e.logits[f"{image}_other"][c])
    if kind == "contrast":
        return (f"mean = logit_self − logit_other = {rec.reconstructed():+.3f} "
                f"(model: {self_l - other_l:+.3f})")
    model = self_l if kind == "self" else other_l
    return (f"mean + bias = {mean:.3f} {'+' if rec.offset >= 0 else '−'} {abs(rec.offset):.3f} = "
            f"logit_{kind}(c) = {rec.reconstructed():.3f} (model: {model:.3f})")


def signed_legend(grid, units: str) -> None:
    """The diverging colour bar of a grid's signed panels (symmetric limits; zero is white)."""
    signed = [p for p in grid.panels if p.signed]
    if not signed:
        return
    shared = shared_range(type(grid)(grid.view, signed, grid.cmap, grid.alpha, grid.scope))
    lut = np.asarray(render_api().colormap_lut(DIVERGING))
    left, mid, right = st.columns([1.3, 3, 4.5], vertical_alignment="center", gap="small")
    if shared is not None:
        left.caption(f"{fmt_num(shared[0])} lowers")
        right.caption(f"{fmt_num(shared[1])} raises · {units}, 0 = white")
    else:
        left.caption("lowers the score")
        right.caption(f"raises it · {units}; symmetric range per {'map' if grid.scope == 'map' else 'pair'} "
                      "(± under each map), 0 = white")
    mid.image(np.repeat(lut[None], 10, axis=0), width="stretch")


def draw(ctx: Context) -> None:
    e, s = ctx.expl, ctx.settings
    st.markdown("#### Exact maps: where each pair-path logit comes from")
    st.markdown(
        "API-Net's head is a spatial mean followed by a linear classifier, so with the pair's gates fixed each logit "
        "splits exactly over positions. **self** / **other**: image i's class-c score with its own gate g_i / with "
        "its partner's gate g_j; **contrast** = self − other: where image i's own gate, rather than its partner's, "
        "raises its class score — the score-ranking loss made visible.")
    st.latex(r"\mathrm{logit}_i^{self}(c) - b_c = \frac{1}{hw}\sum_{y,x}\sum_k W[c,k]\,(1+g_i[k])\,F_i[k,y,x]"
             r"\qquad \mathrm{contrast}_i = \sum_k W[c,k]\,(g_i[k]-g_j[k])\,F_i[k]")
    if not e.exact_cams:
        note = (e.settings or {}).get("exact_cams") or "this explanation has no exact maps"
        st.info(f"No exact maps: {md(note)}.", icon=":material/info:")
        return
    grid = overlay_grid(ctx, "exact", diverging_cmap=DIVERGING)
    panels = {p.key.split("/")[-1]: p for p in grid.panels}
    masks = outline.outline_toggle(ctx, "exact_outline")
    signed_legend(grid, "logit contribution per position")
    for image, tag in ((1, "A"), (2, "B")):
        c = e.exact_cams[f"{image}_self"].target
        st.markdown(f'**{tag}** · class c = {md(class_name(e, c))}')
        cols = st.columns(3, gap="medium")
        for col, (kind, title) in zip(cols, _KINDS):
            panel = panels.get(kind)
            if panel is None:
                continue
            rec = e.exact_cams[f"{image}_{kind}"]
            lo, hi = panel.range1 if image == 1 else panel.range2
            ov, hit = outline.mark(panel.overlay1 if image == 1 else panel.overlay2, rec.raw, masks, image)
            caption = f"{title} · ±{fmt_num(max(abs(lo), abs(hi)))}{hit}"
            with col:
                st.image(ov, caption=caption, width="stretch")
                st.caption(exact_numbers(e, image, kind))
    st.caption(scope_caption(s.scope, s.clip) + " Signed maps: blue lowers the score, red raises it, white is zero.")
