"""The Dataset tab: the open atlas as a map, confusion matrices, disagreements, pairs ranked by
mechanism strength, and a paged picker. Everything is a query over the atlas (:mod:`apinet.atlas.query`);
a click sets image A or B through a callback and never runs a trunk (only the pair it opens is explained).
"""

from __future__ import annotations

import threading

import numpy as np
import streamlit as st

from app import atlas_picker, picker
from app.tabs import dataset_tables
from app.tabs.common import A_COLOUR, B_COLOUR, Context, selected_points
from app.text import md

__all__ = ["COLOURS", "MAP_POINTS", "VIEWS", "draw", "map_click", "map_figure"]

#: Sub-views (the ``dview`` value of a shared link) and their labels.
VIEWS = {"map": "Map", "confusion": "Confusion", "disagree": "Disagreements", "pairs": "Mechanism pairs",
         "browse": "Browse"}
#: Map colourings (the ``dcolour`` value of a link).
COLOURS = {"class": "class", "apinet": "API-Net correct?", "baseline": "baseline correct?",
           "disagree": "models disagree?", "ood": "OOD score"}
def _map_points() -> int:
    from app.resources import _env_int

    return _env_int("APINET_ATLAS_MAP_POINTS", 10_000, 500, 1_000_000)


#: Most points the map draws (``APINET_ATLAS_MAP_POINTS``, default 10,000); beyond it the rest of
#: the atlas is a density layer under a fixed random sample.
MAP_POINTS = _map_points()
_NEXT = "_dmap_next"  # which slot the next map click sets


def draw(ctx: Context) -> None:
    st.markdown("#### The dataset through both models")
    atlas = ctx.atlas
    if atlas is None:
        st.info("No dataset atlas of these checkpoints is open. " + (md(ctx.atlas_note) + " " if ctx.atlas_note else "")
                + "Build one and reload (or set `APINET_ATLAS_DIR`):", icon=":material/dataset:")
        st.code("python -m apinet atlas --data synthbirds --split test --checkpoint CKPT.safetensors "
                "--baseline BASELINE.safetensors --out runs/atlas-synthbirds-test", language="bash")
        _offer_demo_build(ctx)
        return
    data = atlas.manifest.get("data", {})
    st.caption(f"Atlas of **{md(data.get('spec', '?'))}** ({md(data.get('split', '?'))} split): {len(atlas):,} images, "
               f"{len(atlas.class_names)} classes, {atlas.manifest.get('bad_images', 0)} unreadable image(s) skipped. "
               f"API-Net {atlas.correct('apinet').mean():.1%} correct, baseline {atlas.correct('baseline').mean():.1%}. "
               "Clicks here choose the pair; only opening a pair runs the models.")
    if st.session_state.get("dview") not in VIEWS:
        st.session_state["dview"] = "map"
    view = st.segmented_control("View", list(VIEWS), key="dview", format_func=VIEWS.get, label_visibility="collapsed")
    if view == "confusion":
        dataset_tables.draw_confusion(atlas)
    elif view == "disagree":
        dataset_tables.draw_disagreements(atlas)
    elif view == "pairs":
        dataset_tables.draw_ranked_pairs(atlas)
    elif view == "browse":
        atlas_picker.draw_picker(atlas)
    else:
        _draw_map(atlas)


_BUILD_LOCK = threading.Lock()  # one build per process, whatever the sessions click


def _offer_demo_build(ctx: Context) -> None:
    """With the SynthBirds demo checkpoints (whose shipped atlas is stale or missing), build their
    atlas of the test split here, with a progress bar, into the runs folder: the app finds it next run."""
    from app import atlas_source, config

    card = (getattr(ctx.apinet, "path", "") or "")
    if not card.endswith(config.DEMO_APINET) or ctx.baseline is None:
        return
    out = config.paths_from_env().runs / f"atlas-demo-{ctx.apinet.sha256[:12]}"
    if not st.button("Build the demo atlas now (SynthBirds test split, 800 images; minutes on a CPU)",
                     key="datlas_build", icon=":material/play_arrow:"):
        return
    from apinet.atlas import build_atlas

    bar = st.progress(0.0, text="Building the atlas…")
    if not _BUILD_LOCK.acquire(blocking=False):
        st.info("Another session is building the atlas; reload in a few minutes.")
        return
    try:
        build_atlas("synthbirds", ctx.apinet.path, ctx.baseline.path, out, split="test", progress=False, workers=0,
                    on_progress=lambda done, total: bar.progress(done / max(total, 1), text=f"{done} of {total} images"))
    except Exception as exc:  # noqa: BLE001 - a failed build is a message, never a broken page
        st.error(f"The atlas build failed: {md(' '.join(str(exc).split())[:300])}")
        return
    finally:
        _BUILD_LOCK.release()
    atlas_source.discover_atlases.clear()
    st.rerun()


# ----------------------------------------------------------------------------------------------
# The map
# ----------------------------------------------------------------------------------------------


def _colour_values(atlas, mode: str, rows: np.ndarray):
    """Marker colours of ``rows`` and the colour scale: categorical modes use a few fixed colours."""
    if mode == "class":
        return atlas.labels[rows].astype(float), "Turbo", False
    if mode in ("apinet", "baseline"):
        ok = atlas.correct(mode)[rows]
        return np.where(atlas.labelled[rows], ok.astype(float), 0.5), [[0, "#d62728"], [0.5, "#9e9e9e"], [1, "#2ca02c"]], False
    if mode == "disagree":
        diff = atlas.predictions("apinet")[rows] != atlas.predictions("baseline")[rows]
        return diff.astype(float), [[0, "#c7c7c7"], [1, "#9467bd"]], False
    scores = np.nan_to_num(atlas.column("ood")[rows].astype(float), nan=0.0)
    return scores, "Viridis", True


def map_figure(atlas, mode: str, marks: dict[str, int]):
    """The map: a density layer of every image (when there are more than :data:`MAP_POINTS`), one
    WebGL point per sampled image, A and B marked, and A's mined partners joined to it by lines."""
    import plotly.graph_objects as go

    from apinet.atlas.query import map_density, map_sample

    xy = atlas.xy
    rows = atlas.memo.get("map_rows")
    if rows is None:  # one seeded sample per atlas: the points trace is the same on every rerun
        rows = atlas.memo["map_rows"] = map_sample(len(atlas), MAP_POINTS)
    fig = go.Figure()
    if len(rows) < len(atlas):
        if "map_density" not in atlas.memo:
            atlas.memo["map_density"] = map_density(xy)
        counts, cx, cy = atlas.memo["map_density"]
        fig.add_trace(go.Heatmap(z=np.log1p(counts), x=cx, y=cy, colorscale="Greys", showscale=False, hoverinfo="skip",
                                 opacity=0.5, name="density"))
    colour, scale, bar = _colour_values(atlas, mode, rows)
    names, ids = atlas.column("class_name"), atlas.column("id")
    fig.add_traces(_point_traces(atlas, rows, colour, scale, bar, mode))
    a = marks.get("a")
    if a is not None:
        for kind, dash in (("intra", "solid"), ("inter", "dot")):
            p = int(atlas.column(kind)[a])
            if p >= 0:
                fig.add_trace(go.Scatter(x=[xy[a, 0], xy[p, 0]], y=[xy[a, 1], xy[p, 1]], mode="lines+markers",
                                         line=dict(color=A_COLOUR, dash=dash, width=2), customdata=[a, p],
                                         marker=dict(size=9, color=A_COLOUR), name=f"A's {kind} partner",
                                         hovertext=[f"A · {ids[a]}", f"{kind} partner · {names[p]} · {ids[p]}"],
                                         hoverinfo="text"))
    for slot, colour_ in (("a", A_COLOUR), ("b", B_COLOUR)):
        r = marks.get(slot)
        if r is not None:
            fig.add_trace(go.Scatter(x=[xy[r, 0]], y=[xy[r, 1]], mode="markers+text", text=[slot.upper()],
                                     textposition="top center", customdata=[r], name=slot.upper(),
                                     marker=dict(size=16, color=colour_, symbol="circle-open", line=dict(width=3)),
                                     hovertext=[f"{slot.upper()} · {names[r]} · {ids[r]}"], hoverinfo="text"))
    fig.update_layout(height=560, margin=dict(l=0, r=0, t=10, b=0), dragmode="pan", showlegend=True,
                      legend=dict(orientation="h", y=-0.02), clickmode="event+select", uirevision="atlas-map")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    return fig, rows


#: Up to this many classes the points are one WebGL trace per class, whose hover names the class
#: with no per-point text (per-point strings cost 0.4 s of plotly validation at 20,000 points).
_TRACE_PER_CLASS = 40


def _point_traces(atlas, rows: np.ndarray, colour: np.ndarray, scale, bar: bool, mode: str) -> list:
    import plotly.graph_objects as go

    labels = atlas.labels[rows]
    size = 5 if len(rows) > 5000 else 7
    lo, hi = (0.0, max(1.0, float(colour.max()) if len(colour) else 1.0)) if mode != "ood" else (None, None)

    def trace(mask, hover, show_bar):
        return go.Scattergl(x=atlas.xy[rows[mask], 0], y=atlas.xy[rows[mask], 1], mode="markers",
                            customdata=rows[mask], name="images", showlegend=False, hovertemplate=hover,
                            marker=dict(size=size, color=colour[mask], colorscale=scale, showscale=show_bar,
                                        cmin=lo, cmax=hi, opacity=0.85))

    names = atlas.class_names
    if len(names) > _TRACE_PER_CLASS:
        return [trace(np.ones(len(rows), bool), "row %{customdata}<extra></extra>", bar)]
    out = []
    for c in np.unique(labels):
        name = names[c] if c >= 0 else "unlabelled"
        safe = name.replace("<", "&lt;").replace(">", "&gt;").replace("%{", "% {")  # text, never markup
        out.append(trace(labels == c, f"{safe}<extra></extra>", bar and not out))
    return out


def map_click(points: list, atlas, next_slot: str) -> tuple[str, int] | None:
    """The (slot, row) a map click sets: the first clicked point that is an atlas image."""
    for point in points:
        data = point.get("customdata")
        row = data[0] if isinstance(data, (list, tuple)) and data else data
        try:
            row = int(row)
        except (TypeError, ValueError):
            continue
        if 0 <= row < len(atlas):
            return next_slot, row
    return None


def _on_map_click(atlas) -> None:
    next_slot = st.session_state.get(_NEXT, "a")
    chosen = map_click(selected_points(st.session_state.get("dmap")), atlas, next_slot)
    if chosen is None:
        return
    slot, row = chosen
    picker.set_image(slot, atlas_picker.ref_of(atlas, row))
    st.session_state[_NEXT] = "b" if slot == "a" else "a"


def _draw_map(atlas) -> None:
    if st.session_state.get("dcolour") not in COLOURS:
        st.session_state["dcolour"] = "class"
    left, right = st.columns([3, 2])
    mode = left.radio("Colour by", list(COLOURS), key="dcolour", format_func=COLOURS.get, horizontal=True)
    st.session_state.setdefault(_NEXT, "a")
    right.radio("The next click sets", ["a", "b"], key=_NEXT, format_func=lambda s: f"image {s.upper()}",
                horizontal=True)
    marks = atlas_picker.current_rows(atlas)
    fig, rows = map_figure(atlas, mode, marks)
    st.plotly_chart(fig, key="dmap", on_select=lambda: _on_map_click(atlas), selection_mode="points",
                    config={"scrollZoom": True, "displaylogo": False}, width="stretch")
    sampled = f" {len(rows):,} sampled images drawn as points over the density of all {len(atlas):,}." \
        if len(rows) < len(atlas) else ""
    st.caption(f"Map: {md(atlas.manifest.get('layout', {}).get('method', '?'))} of API-Net's pooled features.{sampled} "
               "A's partners as the paper mines them (nearest same-class: solid; nearest other-class: dotted; "
               "squared Euclidean distance of pooled features).")
    _partner_strip(atlas, marks)


def _partner_strip(atlas, marks: dict[str, int]) -> None:
    a = marks.get("a")
    if a is None:
        return
    shown = [("A", a)] + [(f"{k} partner", int(atlas.column(k)[a])) for k in ("intra", "inter") if atlas.column(k)[a] >= 0]
    if "b" in marks:
        shown.append(("B", marks["b"]))
    cols = st.columns(len(shown) + 1)
    for col, (title, row), thumb in zip(cols, shown, atlas.thumbnails([r for _, r in shown])):
        col.image(thumb, width=96)
        col.caption(f"**{title}** · {md(atlas.column('class_name')[row])}")
    for kind in ("intra", "inter"):
        p = int(atlas.column(kind)[a])
        if p >= 0:
            cols[-1].button(f"B = A's {kind} partner", key=f"dmap_{kind}", on_click=picker.set_image,
                            args=("b", atlas_picker.ref_of(atlas, p)), width="stretch")
