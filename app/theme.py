"""Colours and the map-size toggle shared by the tabs, chosen to read on the light and dark theme alike.

The app follows the browser's light or dark setting (``.streamlit/config.toml`` sets no ``base``), and
Plotly charts drawn with ``theme="streamlit"`` take their background, grid and text from it. Only the
colours the charts set themselves live here: mid-tone colours, never white or near-black.
"""

from __future__ import annotations

__all__ = ["A_COLOUR", "B_COLOUR", "HIGHLIGHT", "LARGE_MAPS_KEY", "NEUTRAL", "OUTLINE", "large_maps",
           "maps_per_row"]

A_COLOUR = "#1f6feb"  # image A everywhere (charts, captions)
B_COLOUR = "#e8590c"  # image B
HIGHLIGHT = "#e03131"  # the top-k channels in the gate scatter (red on white and on #0e1117)
NEUTRAL = "#8c959f"  # everything else: mid grey, ~3:1 on white and ~6:1 on the dark background
OUTLINE = "rgba(128, 128, 128, 0.9)"  # marker outlines: a grey that shows on both backgrounds

#: session key of the "Large maps" toggle (one key for every map tab: only the open tab draws it).
LARGE_MAPS_KEY = "large_maps"


def large_maps() -> bool:
    """A toggle above a map grid: fewer maps per row, each drawn about twice as wide."""
    import streamlit as st

    st.session_state.setdefault(LARGE_MAPS_KEY, False)  # no value=: a shared link may have set it
    return st.toggle("Large maps", key=LARGE_MAPS_KEY,
                     help="Fewer maps per row, about twice as wide (two pairs per row; three channels).")


def maps_per_row(n_maps: int) -> int | None:
    """Pairs of maps per row under the "Large maps" toggle (``None``: the grid's default of 2 or 3)."""
    if not large_maps():
        return None
    return 2 if n_maps > 2 else 1
