"""The atlas's image picker: search by class and name, one page of thumbnails at a time, A and B marked.

It draws a page (:data:`PAGE_SIZE` thumbnails, read from the atlas's Parquet row groups on demand),
never the whole dataset, so it opens as fast at 100,000 images as at 40.
"""

from __future__ import annotations

import math

import streamlit as st

from app import picker
from app.state import GALLERY_PREFIX
from app.text import md

__all__ = ["PAGE_SIZE", "current_rows", "draw_picker", "ref_of"]

PAGE_SIZE = 24
PER_ROW = 8
ALL = "All classes"


def ref_of(atlas, row: int) -> str:
    return GALLERY_PREFIX + str(atlas.column("id")[int(row)])


def current_rows(atlas) -> dict[str, int]:
    """``{"a": row, "b": row}`` of the current pair's atlas images (uploads are left out)."""
    out = {}
    for slot in ("a", "b"):
        ref = st.session_state.get(slot) or ""
        if ref.startswith(GALLERY_PREFIX):
            row = atlas.index_of.get(ref[len(GALLERY_PREFIX):])
            if row is not None:
                out[slot] = row
    return out


def _reset_page(key: str) -> None:
    st.session_state[f"{key}_page"] = 1


def draw_picker(atlas, key: str = "dpick") -> None:
    """Search (class, text), page through the matches, set A or B from a thumbnail."""
    from apinet.atlas import filter_rows

    names = atlas.class_names
    left, mid, right = st.columns([2, 2, 1])
    choice = left.selectbox("Class", [ALL] + names, key=f"{key}_class", on_change=_reset_page, args=(key,))
    text = mid.text_input("Search names", key=f"{key}_q", placeholder="part of a file name or class",
                          on_change=_reset_page, args=(key,))
    classes = None if choice == ALL else [names.index(choice)]
    rows = filter_rows(atlas, classes=classes, text=text.strip())
    pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
    if not 1 <= st.session_state.get(f"{key}_page", 1) <= pages:
        st.session_state[f"{key}_page"] = 1
    page = right.number_input(f"Page (of {pages})", 1, pages, key=f"{key}_page")
    shown = rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    marks = current_rows(atlas)
    st.caption(f"{len(rows):,} of {len(atlas):,} images match; showing {len(shown)}. "
               + " ".join(f"**{s.upper()}** = {md(atlas.column('id')[r])}" for s, r in marks.items()))
    if len(shown) == 0:
        return
    thumbs = atlas.thumbnails(shown)
    for start in range(0, len(shown), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, row, thumb in zip(cols, shown[start:start + PER_ROW], thumbs[start:start + PER_ROW]):
            _cell(col, atlas, int(row), thumb, marks, key)


def _cell(col, atlas, row: int, thumb: bytes, marks: dict[str, int], key: str) -> None:
    which = [s.upper() for s, r in marks.items() if r == row]
    with col.container(border=bool(which)):
        st.image(thumb, width="stretch")
        item_id = str(atlas.column("id")[row])
        label = f"{'[' + ' '.join(which) + '] ' if which else ''}{atlas.column('class_name')[row]} · {item_id}"
        st.caption(md(label))
        ca, cb = st.columns(2, gap="small")
        ca.button("A", key=f"{key}_a_{row}", on_click=picker.set_image, args=("a", ref_of(atlas, row)),
                  width="stretch", type="primary" if "A" in which else "secondary", help=f"Use {md(item_id)} as image A")
        cb.button("B", key=f"{key}_b_{row}", on_click=picker.set_image, args=("b", ref_of(atlas, row)),
                  width="stretch", type="primary" if "B" in which else "secondary", help=f"Use {md(item_id)} as image B")
