"""The Dataset tab's map of an atlas: one point per image on a canvas that stays mounted across reruns.

A Streamlit custom component (``st.components.v2``, no iframe; ``app/atlas_map.js``). The points of an
atlas and colouring go to the browser packed (x and y as uint16, a palette index as uint8, the class
as uint16: 7 bytes an image, base64), and the browser decodes them once and keeps them; the run that
follows the map's own click sends only the marks. Plotly's ``scattergl`` redrew every point on every
rerun and re-initialised its bundle, which kept a 100,000-image map at 4-8 s and a click at 2-3 s
(benchmarks/RESULTS.md, issue #23).

A click marks the point at once in the browser and reruns the page, which draws the Dataset tab
before it explains the new pair (``app.tabs.Tab.needs_pair``): A or B is confirmed, with A's mined
partners read from the atlas, before the model runs. Resting on a point asks for its thumbnail, id
and predictions through a second, invisible component in a fragment (:func:`_hover_channel`), so a
hover reruns that fragment alone, never the page. (A map inside a fragment cannot set image A and B:
they are the page's selectors, outside it.)
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import streamlit as st

from app.theme import A_COLOUR, B_COLOUR

__all__ = ["COLOURS", "draw_map", "hover_card", "map_click", "marks_of", "points_payload"]

#: Map colourings (the ``dcolour`` value of a shared link) and their labels.
COLOURS = {"class": "class", "apinet": "API-Net correct?", "baseline": "baseline correct?",
           "disagree": "models disagree?", "ood": "OOD score"}

_HERE = Path(__file__).parent
_HTML = """<div class="atlas-map"><div class="bar"><span class="legend"></span></div>
<canvas></canvas><div class="tip" hidden><img alt="" hidden><b class="name"></b><span class="id"></span>
<span class="preds"></span><span class="row"></span></div></div>"""
_CSS = """
.atlas-map { position: relative; font-family: var(--st-font, sans-serif); color: var(--st-text-color, #31333f); }
.atlas-map canvas { width: 100%; height: 560px; display: block; touch-action: none; cursor: crosshair;
  border: 1px solid var(--st-border-color, #d5dae5); border-radius: var(--st-base-radius, 0.5rem); }
.atlas-map .bar { display: flex; justify-content: space-between; gap: 1rem; font-size: 0.85rem; min-height: 1.6rem; }
.atlas-map .legend span { margin-right: 0.9rem; white-space: nowrap; }
.atlas-map .legend i { display: inline-block; width: 0.7rem; height: 0.7rem; border-radius: 50%; margin-right: 0.3rem; }
.atlas-map .tip { position: absolute; width: 180px; pointer-events: none; padding: 0.4rem; font-size: 0.8rem;
  display: flex; flex-direction: column; gap: 0.1rem; background: var(--st-secondary-background-color, #f0f2f6);
  border: 1px solid var(--st-border-color, #d5dae5); border-radius: var(--st-base-radius, 0.5rem); }
.atlas-map .tip[hidden], .atlas-map .tip img[hidden] { display: none; }
.atlas-map .tip img { width: 96px; height: 96px; object-fit: cover; border-radius: 0.25rem; }
.atlas-map .tip .id, .atlas-map .tip .row, .atlas-map .tip .preds { opacity: 0.8; overflow-wrap: anywhere; }
"""
_MAP = st.components.v2.component("apinet_atlas_map", html=_HTML, css=_CSS,
                                  js=(_HERE / "atlas_map.js").read_text(encoding="utf-8"))

_KEY = "dmap"  # the component's key (and the link's Dataset view is "map")
_EVENT = "_dmap_event"  # session_state: what the last map event was ("click" / "need_points")
_NEXT = "_dmap_next"  # session_state: which slot the next click sets

_GREY, _WRONG, _RIGHT, _PURPLE, _LIGHT = "#9e9e9e", "#d62728", "#2ca02c", "#9467bd", "#c7c7c7"


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _hex(rgba) -> str:
    return "#%02x%02x%02x" % tuple(int(round(255 * c)) for c in rgba[:3])


def _colouring(atlas, mode: str) -> tuple[np.ndarray, list[str], list[int], list[list[str]]]:
    """``(palette index per image [N] uint8, palette, drawing order of palette indices, legend)``.
    Index 255 is grey (an unlabelled image, a missing score); the notable points are drawn last."""
    from matplotlib import colormaps

    n = len(atlas)
    if mode == "class":
        classes = len(atlas.class_names)
        shades = min(classes, 255)
        # neighbouring class numbers get far-apart colours (golden-ratio steps along turbo)
        palette = [_hex(colormaps["turbo"](0.05 + 0.9 * ((i * 0.618034) % 1.0))) for i in range(shades)]
        index = np.where(atlas.labelled, atlas.labels % max(shades, 1), 255).astype(np.uint8)
        legend = [] if classes > 12 else [[palette[c], atlas.class_names[c]] for c in range(classes)]
        return index, palette + [_GREY] * (256 - shades), [255] + list(range(shades)), legend
    if mode in ("apinet", "baseline"):
        ok = atlas.correct(mode)
        index = np.where(atlas.labelled, ok.astype(np.uint8), 255).astype(np.uint8)
        who = "API-Net" if mode == "apinet" else "baseline"
        legend = [[_RIGHT, f"{who} right"], [_WRONG, f"{who} wrong"]] + \
            ([[_GREY, "unlabelled"]] if (~atlas.labelled).any() else [])
        return index, [_WRONG, _RIGHT] + [_GREY] * 254, [255, 1, 0], legend
    if mode == "disagree":
        diff = atlas.predictions("apinet") != atlas.predictions("baseline")
        legend = [[_LIGHT, "same prediction"], [_PURPLE, "the models disagree"]]
        return diff.astype(np.uint8), [_LIGHT, _PURPLE] + [_GREY] * 254, [0, 1], legend
    scores = atlas.column("ood").astype(float) if "ood" in atlas.columns else np.full(n, np.nan)
    finite = np.isfinite(scores)
    lo, hi = (float(scores[finite].min()), float(scores[finite].max())) if finite.any() else (0.0, 1.0)
    scaled = np.clip((np.nan_to_num(scores, nan=lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    index = np.where(finite, np.round(scaled * 254), 255).astype(np.uint8)
    palette = [_hex(colormaps["viridis"](i / 254)) for i in range(255)] + [_GREY]
    legend = [[palette[0], f"OOD score {lo:.3g} (typical)"], [palette[254], f"{hi:.3g} (unusual)"]]
    return index, palette, [255] + list(range(255)), legend


def points_payload(atlas, mode: str) -> dict:
    """The points of ``atlas`` coloured by ``mode``, packed for the browser; made once per atlas and
    colouring (an atlas is read-only). ``key`` names them: the browser decodes a key once."""
    memo = atlas.memo.setdefault("map_payload", {})
    if mode not in memo:
        xy = atlas.xy.astype(np.float64)
        lo, hi = xy.min(0), xy.max(0)
        span = max(float((hi - lo).max()), 1e-12)  # one scale for both axes: distances keep their shape
        centred = (xy - (lo + hi) / 2) / span + 0.5
        packed = np.round(np.clip(centred, 0, 1) * 65535).astype("<u2")
        labels = np.where(atlas.labelled, atlas.labels, 65535).astype("<u2")
        colour, palette, order, legend = _colouring(atlas, mode)
        memo[mode] = {"key": f"{_identity(atlas)}:{mode}", "n": len(atlas), "palette": palette, "legend": legend,
                      "points": {"xy": _b64(packed), "colour": _b64(colour), "label": _b64(labels), "order": order}}
    return memo[mode]


def _identity(atlas) -> str:
    return f"{atlas.folder.name}:{len(atlas)}:{atlas.sha256('apinet') or ''}"[:120]


def marks_of(atlas, rows: dict[str, int]) -> dict[str, int]:
    """A and B (atlas rows, -1 when not an atlas image) and A's mined partners (-1: none)."""
    a, b = rows.get("a", -1), rows.get("b", -1)
    marks = {"a": a, "b": b, "intra": -1, "inter": -1}
    if a >= 0:
        for kind in ("intra", "inter"):
            marks[kind] = int(atlas.column(kind)[a])
    return marks


def hover_card(atlas, row: int) -> dict:
    """What the map's tooltip shows of one image beyond its class: the thumbnail, the id, both predictions."""
    names = atlas.class_names
    thumb = atlas.thumbnails([row])[0]
    preds = " · ".join(f"{who}: {names[int(atlas.predictions(m)[row])]}"
                       for who, m in (("API-Net", "apinet"), ("baseline", "baseline")) if f"{m}_pred" in atlas.columns)
    return {"atlas": _identity(atlas), "row": int(row), "id": str(atlas.column("id")[row]), "preds": preds,
            "thumb": "data:image/webp;base64," + base64.b64encode(thumb).decode("ascii")}


def map_click(value, atlas) -> tuple[str, int] | None:
    """The (slot, row) a map click sets, or None for anything that is not a row of this atlas."""
    if not isinstance(value, dict) or value.get("slot") not in ("a", "b"):
        return None
    try:
        row = int(value.get("row"))
    except (TypeError, ValueError):
        return None
    return (value["slot"], row) if 0 <= row < len(atlas) else None


def _on_event(kind: str, atlas) -> None:
    from app import atlas_picker, picker

    result = st.session_state.get(_KEY)
    value = result.get(kind) if isinstance(result, dict) else getattr(result, kind, None)
    st.session_state[_EVENT] = kind
    if kind == "click":
        chosen = map_click(value, atlas)
        if chosen is None:
            st.session_state[_EVENT] = None
            return
        slot, row = chosen
        picker.set_image(slot, atlas_picker.ref_of(atlas, row))
        st.session_state[_NEXT] = "b" if slot == "a" else "a"


def draw_map(atlas) -> None:
    """The colouring and next-slot choices, the map and its clicks; the hover cards come through
    :func:`_hover_channel` (see the module docstring)."""
    from app import atlas_picker

    if st.session_state.get("dcolour") not in COLOURS:
        st.session_state["dcolour"] = "class"
    left, right = st.columns([3, 2])
    mode = left.radio("Colour by", list(COLOURS), key="dcolour", format_func=COLOURS.get, horizontal=True)
    st.session_state.setdefault(_NEXT, "a")
    right.radio("The next click sets", ["a", "b"], key=_NEXT, format_func=lambda s: f"image {s.upper()}",
                horizontal=True)
    event = st.session_state.pop(_EVENT, None)
    payload = points_payload(atlas, mode)
    data = {"key": payload["key"], "atlas": _identity(atlas), "n": payload["n"], "palette": payload["palette"],
            "legend": payload["legend"], "classes": atlas.class_names, "colours": {"a": A_COLOUR, "b": B_COLOUR},
            "next": st.session_state[_NEXT], "marks": marks_of(atlas, atlas_picker.current_rows(atlas)),
            # after its own click the map holds the points already: this run sends the marks alone
            "points": None if event == "click" else payload["points"]}
    _MAP(key=_KEY, data=data, height="content", on_click_change=lambda: _on_event("click", atlas),
         on_need_points_change=lambda: _on_event("need_points", atlas))
    _hover_channel(atlas)


_HOVER_JS = """
const ASK = new WeakMap();
export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  if (!ASK.has(parentElement)) {  // the map asks (a window event); a fragment rerun answers
    const ask = (e) => setTriggerValue("hover", e.detail);
    ASK.set(parentElement, ask);
    window.addEventListener("apinet-atlas-hover", ask);
  }
  if (data.card) window.dispatchEvent(new CustomEvent("apinet-atlas-card", { detail: data.card }));
  return () => { window.removeEventListener("apinet-atlas-hover", ASK.get(parentElement)); ASK.delete(parentElement); };
}
"""
_HOVER = st.components.v2.component("apinet_atlas_hover", js=_HOVER_JS)


@st.fragment
def _hover_channel(atlas) -> None:
    """The hovered image's card: the map raises a window event when the pointer rests on a point;
    this invisible component turns it into a trigger, which reruns this fragment alone (not the
    page), and hands the card back to the map the same way."""
    result = st.session_state.get(_KEY + "_hover")
    row = result.get("hover") if isinstance(result, dict) else getattr(result, "hover", None)
    card = None
    try:
        if row is not None and 0 <= int(row) < len(atlas):
            card = hover_card(atlas, int(row))
    except (TypeError, ValueError):
        card = None
    _HOVER(key=_KEY + "_hover", data={"card": card}, height=0, on_hover_change=lambda: None)
