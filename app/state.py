"""Session state of the app and its mirror in the URL.

Everything a person chooses (checkpoints, the pair, display settings) lives in ``st.session_state``
under the keys of :data:`PARAMS`, which are also the widgets' keys. On a session's first run the URL's
query parameters seed those keys (invalid values fall back to defaults, silently: a stale link still
opens); at the end of every run the state is written back, so the address bar always holds a link
that restores the same view. Uploaded images cannot travel in a URL; they stay in this session only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import streamlit as st

from app import config

__all__ = ["GALLERY_PREFIX", "LINK_NOTES", "PARAMS", "TAB_PARAM", "TAB_PARAMS", "UPLOAD_PREFIX", "ensure_defaults",
           "keep_tab_settings", "restore_from_url", "write_url", "write_url_once_restored"]

GALLERY_PREFIX = "g:"
UPLOAD_PREFIX = "u:"
URL_LOADED = "_url_loaded"
#: session_state key of the lines that say what a shared link could not restore (e.g. an uploaded image).
LINK_NOTES = "_link_notes"
#: The URL parameter holding the open tab's slug (session_state holds its label under ``app.tabs.TAB_KEY``).
TAB_PARAM = "tab"


@dataclass(frozen=True)
class Param:
    """One piece of state: its URL form and how to validate a value read back from a URL."""

    key: str
    parse: Callable[[str], Any]  # raises ValueError on a bad value
    dump: Callable[[Any], str] = str


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    return parse


def _alpha(text: str) -> float:
    value = round(float(text), 2)
    if not 0.0 <= value <= 1.0:
        raise ValueError(text)
    return value


def _percentile(text: str) -> float:
    value = round(float(text), 1)
    if not 90.0 <= value <= 100.0:
        raise ValueError(text)
    return value


def _gallery_ref(text: str) -> str:
    if not text or text.startswith(UPLOAD_PREFIX):
        raise ValueError(text)
    return GALLERY_PREFIX + text


def _dump_ref(ref: str) -> str:
    return ref[len(GALLERY_PREFIX):] if ref.startswith(GALLERY_PREFIX) else ""


def _whatif(text: str) -> str:
    """The what-if interventions of a link (``apinet.explain.whatif`` text form), normalised; "" for none."""
    from apinet.explain.whatif import format_interventions, parse_interventions

    if len(text) > 4000:
        raise ValueError("what-if text too long")
    return format_interventions(parse_interventions(text))


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


def _dump_flag(value: Any) -> str:
    return "1" if value else "0"


def _one_of(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(text)
        return text

    return parse


def _listed(text: str, module: str, name: str) -> str:
    import importlib

    if text not in getattr(importlib.import_module(module), name):
        raise ValueError(text)
    return text


def _font(text: str) -> float:
    value = float(text)
    if value not in (7.0, 8.0, 9.0, 10.0, 12.0, 14.0):
        raise ValueError(text)
    return value


def _dpi(text: str) -> int:
    value = int(text)
    if value not in (150, 200, 300, 600):
        raise ValueError(text)
    return value


#: Settings kept inside the tabs (issue #24): the open tab may not draw their widgets, so
#: :func:`keep_tab_settings` carries them over every run, and a shared link brings them back.
TAB_PARAMS: tuple[Param, ...] = (
    Param("contrast_outline", _flag, _dump_flag),  # Why A, not B: outline the part that differs
    Param("exact_outline", _flag, _dump_flag),  # Exact maps: the same toggle
    Param("match_row", _int_in(0, 1 << 10)),  # Where does it match?: the clicked cell
    Param("match_col", _int_in(0, 1 << 10)),
    Param("match_reverse", _flag, _dump_flag),
    Param("large_maps", _flag, _dump_flag),
    Param("vec_order", lambda text: _listed(text, "app.tabs.gates", "ORDERS")),  # Mutual & gates: channel order
    Param("export_view", lambda text: _listed(text, "apinet.render", "VIEWS")),
    Param("export_width", _one_of("single", "double", "slide")),
    Param("export_font", _font, lambda v: f"{float(v):g}"),
    Param("export_dpi", _dpi),
    Param("export_bg", _one_of("white", "transparent", "dark")),
)

PARAMS: tuple[Param, ...] = (
    Param("ckpt", str),
    Param("base", str),
    Param("a", _gallery_ref, _dump_ref),
    Param("b", _gallery_ref, _dump_ref),
    Param("k", _int_in(1, config.K_MAX)),
    Param("cmap", str),
    Param("alpha", _alpha, lambda v: f"{float(v):.2f}"),
    Param("scope", str),
    Param("cam", str),
    Param("stage", str),
    Param("rank", str),
    Param("channel", _int_in(0, 1 << 16)),
    Param("ta", _int_in(0, 1 << 20)),  # reference class of A; only when it is not A's default
    Param("tb", _int_in(0, 1 << 20)),
    Param("layer", str),  # CAM layer (a trunk stage)
    Param("clip", _percentile, lambda v: f"{float(v):g}"),
    Param("whatif", _whatif),  # the What if? tab's interventions on the pair (issue #22)
    # issue #23: the dataset atlas, the Dataset tab's sub-view and the map's colouring
    Param("atlas", str),
    Param("dview", str),
    Param("dcolour", str),
) + TAB_PARAMS
_BY_KEY = {p.key: p for p in PARAMS}


def keep_tab_settings() -> None:
    """Carry the tabs' settings (:data:`TAB_PARAMS`) over this run: Streamlit forgets a widget's value
    after a run that does not draw the widget (another tab is open); assigning it again keeps it."""
    for param in TAB_PARAMS:
        if param.key in st.session_state:
            st.session_state[param.key] = st.session_state[param.key]


def restore_from_url(choices: dict[str, Sequence[Any] | None]) -> None:
    """Seed session state from the URL, once per session.

    ``choices[key]`` lists the values that key may take now (``None``: any value ``parse`` accepts);
    a URL value outside them is dropped, so the default applies.
    """
    if st.session_state.get(URL_LOADED):
        return
    st.session_state[URL_LOADED] = True
    _restore_tab()
    uploads, missing = [], []
    shared = any(key in st.query_params for key in _BY_KEY)  # a shared link, not a fresh visit
    for slot in ("a", "b"):
        if not shared:
            break
        if slot not in st.query_params:
            uploads.append(slot.upper())
            continue
        try:
            ref = _gallery_ref(st.query_params[slot])
        except ValueError:
            ref = None
        allowed = choices.get(slot)
        if ref is None or (allowed is not None and ref not in allowed):
            missing.append(slot.upper())
    notes = []
    if uploads:
        which = " and ".join(uploads)
        notes.append(f"This link's image{'s' if len(uploads) > 1 else ''} {which} {'was an upload' if len(uploads) == 1 else 'were uploads'}, "
                     f"which links cannot carry; showing {'a gallery image' if len(uploads) == 1 else 'gallery images'}"
                     " instead.")
    if missing:
        which = " and ".join(missing)
        notes.append(f"This link's image{'s' if len(missing) > 1 else ''} {which} {'is' if len(missing) == 1 else 'are'} not in this gallery; "
                     f"showing {'a gallery image' if len(missing) == 1 else 'gallery images'} instead.")
    st.session_state[LINK_NOTES] = notes
    for key, param in _BY_KEY.items():
        if key not in st.query_params:
            continue
        try:
            value = param.parse(st.query_params[key])
        except (ValueError, TypeError):
            continue
        allowed = choices.get(key)
        if allowed is not None and value not in allowed:
            continue
        st.session_state[key] = value


def _restore_tab() -> None:
    """``tab=<slug>`` opens that tab; a missing, unknown or old slug leaves the default tab open."""
    from app.tabs import TAB_KEY, by_slug

    tab = by_slug(st.query_params.get(TAB_PARAM, ""))
    if tab is not None:
        st.session_state[TAB_KEY] = tab.label


def _tab_slug() -> str:
    from app.tabs import TAB_KEY, TABS

    label = st.session_state.get(TAB_KEY)
    return next((t.slug for t in TABS if t.label == label), "")


def ensure_defaults(defaults: dict[str, Any], choices: dict[str, Sequence[Any] | None]) -> None:
    """Give every key a valid value before its widget is drawn (never pass ``value=`` as well)."""
    for key, default in defaults.items():
        allowed = choices.get(key)
        if key not in st.session_state or (allowed is not None and st.session_state[key] not in allowed):
            st.session_state[key] = default


def write_url_once_restored() -> None:
    """:func:`write_url`, but only after this session's link has been read (before that, writing would
    overwrite the link being restored); the page and every fragment end their run with it."""
    if st.session_state.get(URL_LOADED):
        write_url()


def write_url() -> None:
    """Mirror the state into the query string (only when it changed, so history stays clean)."""
    wanted = {}
    for key, param in _BY_KEY.items():
        if key in st.session_state and st.session_state[key] is not None:
            text = param.dump(st.session_state[key])
            if text != "":
                wanted[key] = text
    slug = _tab_slug()
    if slug:
        wanted[TAB_PARAM] = slug
    current = {key: st.query_params[key] for key in st.query_params}
    if current != wanted:
        st.query_params.from_dict(wanted)
