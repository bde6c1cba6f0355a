"""Why A, not B: class-contrast maps (W[c_A] − W[c_B], exact and signed) of API-Net and the baseline,
and Finer-CAM, for A against B's class and for B against A's class."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import outline
from app.tabs.common import Context, class_name, fmt_num, overlay_grid, scope_caption
from app.tabs.exact import DIVERGING, signed_legend
from app.text import md

__all__ = ["contrast_numbers", "draw"]

_MODELS = {"apinet": "API-Net", "baseline": "Baseline"}
_PATHS = {"test": "test path", "pair": "pair path (own gate)"}


def _logits(e, model: str, path: str, image: int) -> np.ndarray | None:
    source = e.logits if model == "apinet" else e.baseline_logits
    return source.get(f"{image}_{'self' if path == 'pair' else 'test'}")


def contrast_numbers(e, key: str, image: int) -> str:
    """The exactness line of a class-contrast map, naming the classes it subtracts in the order it
    subtracts them (the image's own class first): mean + (b[own] − b[other]) = logit[own] − logit[other],
    and the model's own difference."""
    rec = e.contrast_cams[key]
    raw = rec.raw1 if image == 1 else rec.raw2
    offset = rec.offset1 if image == 1 else rec.offset2
    a, b = (rec.target1, rec.reference1) if image == 1 else (rec.target2, rec.reference2)
    own, other = md(class_name(e, a)), md(class_name(e, b))
    mean = float(np.asarray(raw, np.float64).mean())
    text = (f"mean + (b[{own}] − b[{other}]) = {mean:+.3f} {'+' if offset >= 0 else '−'} {abs(offset):.3f} = "
            f"logit[{own}] − logit[{other}] = {mean + offset:+.3f}")
    row = _logits(e, key.split("/")[0], key.split("/")[1], image)
    if row is not None:
        text += f" (model: {float(row[a]) - float(row[b]):+.3f})"
    return text


def _title(key: str, method: str) -> str:
    model, path, _ = key.split("/")
    what = "class contrast W[own] − W[other]" if method == "class_contrast" else "Finer-CAM"
    return f"{_MODELS.get(model, model)} · {what} · {_PATHS.get(path, path)}"


def _order(keys) -> list[str]:
    rank = {"apinet/test/class_contrast": 0, "baseline/test/class_contrast": 1, "apinet/pair/class_contrast": 2,
            "apinet/test/finercam": 3, "baseline/test/finercam": 4}
    return sorted(keys, key=lambda k: (rank.get(str(k), 9), str(k)))


def draw(ctx: Context) -> None:
    e, s = ctx.expl, ctx.settings
    st.markdown("#### Why A, not B?")
    if not e.contrast_cams:
        st.info("This explanation has no class-contrast maps (made without them, or a head that is not one "
                "linear layer).", icon=":material/info:")
        return
    first = next(iter(e.contrast_cams.values()))
    a1, b1, a2, b2 = first.target1, first.reference1, first.target2, first.reference2
    st.markdown(
        f"Left: why A is **{md(class_name(e, a1))}** and not **{md(class_name(e, b1))}**; right: why B is "
        f"**{md(class_name(e, a2))}** and not **{md(class_name(e, b2))}**. Each column's map subtracts the "
        "other image's class from its own image's class: Σ_k (W[own,k] − W[other,k]) F[k], exact — its spatial "
        "mean plus b[own] − b[other] is logit[own] − logit[other] (red raises the image's own class over the "
        "other, blue favours the other). Finer-CAM (Grad-CAM weights of s_own − s_other, ReLU'd) is the "
        "approximate counterpart, on a sequential scale.")
    grid = overlay_grid(ctx, "contrast", diverging_cmap=DIVERGING)
    panels = {p.key: p for p in grid.panels}
    masks = outline.outline_toggle(ctx, "contrast_outline")
    signed_legend(grid, "logit[own class] − logit[other class] per position")
    head = st.columns(2, gap="large")
    head[0].markdown(f"**A** · {md(class_name(e, a1))} − {md(class_name(e, b1))}")
    head[1].markdown(f"**B** · {md(class_name(e, a2))} − {md(class_name(e, b2))}")
    for key in _order(e.contrast_cams):
        rec, panel = e.contrast_cams[key], panels.get(str(key))
        if panel is None:
            continue
        st.markdown(f"**{_title(str(key), rec.method)}**")
        cols = st.columns(2, gap="large")
        for image, col in ((1, cols[0]), (2, cols[1])):
            raw = rec.raw1 if image == 1 else rec.raw2
            lo, hi = panel.range1 if image == 1 else panel.range2
            ov, hit = outline.mark(panel.overlay1 if image == 1 else panel.overlay2, raw, masks, image)
            caption = ("A" if image == 1 else "B") + (f" · ±{fmt_num(hi)}" if panel.signed else "") + hit
            with col:
                st.image(ov, caption=caption, width=320)
                if rec.method == "class_contrast" and (rec.offset1 is not None):
                    st.caption(contrast_numbers(e, str(key), image))
                else:
                    st.caption(f"Finer-CAM (raw, ReLU'd) · range [{lo:.3g}, {hi:.3g}]")
    st.caption(scope_caption(s.scope, s.clip) + f" Sequential maps use the sidebar colormap ({md(s.cmap)}).")
