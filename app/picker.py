"""Choosing the pair: gallery browser, uploads, swap, random pair, and the paper's partner suggestion.

All buttons act through callbacks, which run before the script and may therefore set the keys of the
"Image A" / "Image B" selectors; the script then draws the selectors with the new values.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import streamlit as st

from app import resources
from app.state import GALLERY_PREFIX, UPLOAD_PREFIX
from app.text import md

__all__ = ["ChosenImage", "draw_actions", "draw_gallery_browser", "draw_selector", "draw_uploads", "resolve"]

_UPLOADS = "_uploads"  # session_state: sha -> (name, bytes); this session only
_MESSAGE = "_pair_message"  # one-line feedback of the last pair action (info or error)
_UPLOAD_GEN = "_upload_generation"  # bumped after a refused upload: the uploaders get new keys
_MAX_OPTIONS = 1000  # most images a selector lists (an atlas may hold 100,000)


@dataclass(frozen=True)
class ChosenImage:
    ref: str
    name: str
    data: bytes
    sha256: str
    label: int | None  # known class (gallery) or None (upload)
    class_name: str | None


def _uploads() -> dict[str, tuple[str, bytes]]:
    return st.session_state.setdefault(_UPLOADS, {})


def refs(gallery: resources.Gallery) -> list[str]:
    """Every image the selectors offer: this session's uploads first, then the gallery."""
    return [UPLOAD_PREFIX + sha for sha in _uploads()] + [GALLERY_PREFIX + i for i in gallery.ids]


def refs_uploads() -> list[str]:
    """This session's uploads as selector refs."""
    return [UPLOAD_PREFIX + sha for sha in _uploads()]


def resolve(ref: str, gallery: resources.Gallery) -> ChosenImage | None:
    if ref.startswith(GALLERY_PREFIX):
        item = gallery.get(ref[len(GALLERY_PREFIX):])
        if item is None:
            return None
        return ChosenImage(ref, item.id, item.data, item.sha256, item.label, item.class_name)
    if ref.startswith(UPLOAD_PREFIX) and ref[len(UPLOAD_PREFIX):] in _uploads():
        name, data = _uploads()[ref[len(UPLOAD_PREFIX):]]
        return ChosenImage(ref, name, data, hashlib.sha256(data).hexdigest(), None, None)
    return None


def label_of(ref: str, gallery: resources.Gallery) -> str:
    if ref.startswith(UPLOAD_PREFIX):
        name = _uploads().get(ref[len(UPLOAD_PREFIX):], ("upload", b""))[0]
        return f"Uploaded: {name}"
    item = gallery.get(ref[len(GALLERY_PREFIX):])
    if item is None:
        return ref
    slug = "".join(c if c.isalnum() else "-" for c in item.class_name.lower())
    short = item.id.replace(slug, "").strip("_-") or item.id
    return f"{short} · {item.class_name}"  # the id first: a narrow selector (a phone) still shows it


def _without_common_prefix(labels: dict[str, str]) -> dict[str, str]:
    """Gallery labels without the id prefix they all share ("test_0003 · …" -> "0003 · …"), so that a
    narrow selector still shows the part of the id that tells images apart."""
    import os

    ids = {ref: text.split(" · ", 1)[0] for ref, text in labels.items() if ref.startswith(GALLERY_PREFIX)}
    prefix = os.path.commonprefix(list(ids.values())) if len(ids) > 1 else ""
    prefix = prefix[: max(prefix.rfind("_"), prefix.rfind("-")) + 1]  # whole words only: "test_", not "test_00"
    if not prefix:
        return labels
    return {ref: (text[len(prefix):] if ref in ids and ids[ref][len(prefix):] else text) for ref, text in labels.items()}


def set_message(kind: str, text: str) -> None:
    st.session_state[_MESSAGE] = (kind, text)


def show_message() -> None:
    kind, text = st.session_state.get(_MESSAGE, (None, None))
    if kind == "error":
        st.error(text, icon=":material/error:")
    elif kind == "info":
        st.info(text, icon=":material/info:")


# ----------------------------------------------------------------------------------------------
# Callbacks
# ----------------------------------------------------------------------------------------------


def _swap() -> None:
    st.session_state.a, st.session_state.b = st.session_state.b, st.session_state.a
    set_message(None, None)


def _random_pair(gallery: resources.Gallery) -> None:
    a, b = resources.random_pair(gallery, random.Random())
    st.session_state.a, st.session_state.b = GALLERY_PREFIX + a, GALLERY_PREFIX + b
    set_message(None, None)


def _set(slot: str, ref: str) -> None:
    st.session_state[slot] = ref
    set_message(None, None)


def set_image(slot: str, ref: str) -> None:
    """A callback that makes ``ref`` image A or B (the atlas's picker, map and tables use it)."""
    _set(slot, ref)


def _suggest(kind: str, loaded, bank, gallery: resources.Gallery) -> None:
    chosen = resolve(st.session_state.a, gallery)
    if chosen is None:
        return
    gid = chosen.ref[len(GALLERY_PREFIX):] if chosen.ref.startswith(GALLERY_PREFIX) else None
    try:
        bank = bank() if callable(bank) else bank  # main passes the feature bank lazily
        partners = resources.suggest_partners(loaded, bank, gallery, chosen.data, gid)
    except Exception as exc:  # an undecodable upload was already refused; anything else is reported
        set_message("error", f"Could not suggest a partner: {md(exc)}")
        return
    target = partners.intra if kind == "intra" else partners.inter
    class_name = loaded.class_names[partners.label] if partners.label < len(loaded.class_names) else partners.label
    basis = f"predicted class **{md(class_name)}**" if partners.label_is_prediction else f"class **{md(class_name)}**"
    if target is None:
        set_message("error", f"The gallery has no {'other' if kind == 'intra' else ''} image of "
                    f"{'the same' if kind == 'intra' else 'another'} class to pair with A ({basis}).")
        return
    st.session_state.b = GALLERY_PREFIX + target
    distance = partners.intra_distance if kind == "intra" else partners.inter_distance
    what = "same-class (intra)" if kind == "intra" else "other-class (inter)"
    set_message("info", f"B = nearest {what} partner of A in the model's feature space "
                f"(squared distance {distance:.3g}; A taken as {basis}).")


def upload_key(slot: str) -> str:
    """The uploader's widget key: ``upload_a`` until a refused upload, then a fresh one each time."""
    gen = st.session_state.get(_UPLOAD_GEN, 0)
    return f"upload_{slot}" if not gen else f"upload_{slot}_{gen}"


def _on_upload(slot: str) -> None:
    from apinet.data import ImageDecodeError, load_image

    uploaded = st.session_state.get(upload_key(slot))
    if uploaded is None:
        return
    data = uploaded.getvalue()
    try:
        load_image(data, name=uploaded.name)
    except ImageDecodeError as exc:
        set_message("error", f"Upload refused — {md(exc)}")
        # A new key gives a fresh, empty uploader: the refused file is no longer listed as if accepted.
        st.session_state[_UPLOAD_GEN] = st.session_state.get(_UPLOAD_GEN, 0) + 1
        return
    sha = hashlib.sha256(data).hexdigest()
    _uploads()[sha] = (uploaded.name, data)
    st.session_state[slot] = UPLOAD_PREFIX + sha
    set_message(None, None)


# ----------------------------------------------------------------------------------------------
# Widgets
# ----------------------------------------------------------------------------------------------


def draw_selector(slot: str, gallery: resources.Gallery) -> None:
    """The "Image A" / "Image B" selector (this session's uploads, then the gallery)."""
    options = refs(gallery)
    if len(options) > _MAX_OPTIONS:  # an atlas: the Dataset view's picker searches the rest
        current = [st.session_state.get(s) for s in ("a", "b") if st.session_state.get(s) in options[_MAX_OPTIONS:]]
        options = options[:_MAX_OPTIONS] + current
    labels = {ref: label_of(ref, gallery) for ref in options}  # resolved now, inside this session's run
    labels = _without_common_prefix(labels)
    st.selectbox(f"Image {slot.upper()}", options, key=slot, format_func=lambda ref: labels.get(ref, ref))


def draw_actions(gallery: resources.Gallery, loaded, bank) -> None:
    """Swap, random pair, and the paper's intra / inter partner suggestions for A."""
    row1 = st.columns(2)
    row2 = st.columns(2)  # the paper's pair construction: B is A's nearest partner in feature space
    row1[0].button("Swap A ↔ B", key="btn_swap", on_click=_swap, icon=":material/swap_horiz:", width="stretch")
    row1[1].button("Random pair", key="btn_random", on_click=_random_pair, args=(gallery,),
                   icon=":material/casino:", width="stretch")
    row2[0].button("Same-class B", key="btn_intra", on_click=_suggest,
                   args=("intra", loaded, bank, gallery), icon=":material/join_inner:", width="stretch",
                   help="The paper's intra pair: the gallery image of A's class nearest to A "
                        "(squared Euclidean distance of pooled features).")
    row2[1].button("Other-class B", key="btn_inter", on_click=_suggest,
                   args=("inter", loaded, bank, gallery), icon=":material/compare_arrows:", width="stretch",
                   help="The paper's inter pair: the gallery image of another class nearest to A "
                        "(squared Euclidean distance of pooled features).")


def draw_uploads() -> None:
    st.caption("Your own images stay in this browser session; they are decoded and validated first.")
    kinds = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]
    left, right = st.columns(2, gap="large")
    left.file_uploader("Upload image A", type=kinds, key=upload_key("a"), on_change=_on_upload, args=("a",))
    right.file_uploader("Upload image B", type=kinds, key=upload_key("b"), on_change=_on_upload, args=("b",))


def draw_gallery_browser(gallery: resources.Gallery) -> None:
    names = ["All classes"] + gallery.classes
    choice = st.selectbox("Browse by class", names, key="browse_class")
    items = gallery.items if choice == "All classes" else gallery.of_class(gallery.classes.index(choice))
    st.caption(f"{md(gallery.source)}, {len(gallery.items)} images of {len(gallery.classes)} classes"
               + (f" ({len(items)} shown)" if len(items) != len(gallery.items) else "")
               + ". Set either side of the pair from a thumbnail.")
    per_row = 10
    for start in range(0, len(items), per_row):
        cols = st.columns(per_row)
        for col, item in zip(cols, items[start : start + per_row]):
            with col:
                st.image(item.data, caption=md(item.class_name if choice == "All classes" else item.id),
                         width="stretch")
                ca, cb = st.columns(2, gap="small")
                ca.button("A", key=f"set_a_{item.id}", on_click=_set, args=("a", GALLERY_PREFIX + item.id),
                          width="stretch", help=f"Use {md(item.id)} as image A")
                cb.button("B", key=f"set_b_{item.id}", on_click=_set, args=("b", GALLERY_PREFIX + item.id),
                          width="stretch", help=f"Use {md(item.id)} as image B")
