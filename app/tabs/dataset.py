"""The Dataset tab: the open atlas as a map, confusion matrices, disagreements, pairs ranked by
mechanism strength, and a paged picker. Everything is a query over the atlas (:mod:`apinet.atlas.query`);
a click sets image A or B through a callback and never runs a trunk (only the pair it opens is explained).
"""

from __future__ import annotations

import threading

import streamlit as st

from app import atlas_picker, picker
from app.atlas_map import COLOURS  # the map's colourings (the ``dcolour`` value of a link)
from app.tabs import dataset_tables
from app.tabs.common import Context
from app.text import md

__all__ = ["COLOURS", "VIEWS", "draw"]

#: Sub-views (the ``dview`` value of a shared link) and their labels.
VIEWS = {"map": "Map", "confusion": "Confusion", "disagree": "Disagreements", "pairs": "Mechanism pairs",
         "browse": "Browse"}


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
# The map (app/atlas_map.py: a canvas component that stays mounted across reruns)
# ----------------------------------------------------------------------------------------------


def _draw_map(atlas) -> None:
    from app import atlas_map

    atlas_map.draw_map(atlas)
    st.caption(f"Map: {md(atlas.manifest.get('layout', {}).get('method', '?'))} of API-Net's pooled features, "
               f"all {len(atlas):,} images. Wheel (or a trackpad pinch) to zoom, drag to pan, double-click to reset; rest on a "
               "point for its thumbnail. A's partners as the paper mines them (nearest same-class: solid; nearest "
               "other-class: dotted; squared Euclidean distance of pooled features).")
    _partner_strip(atlas, atlas_picker.current_rows(atlas))


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
