"""The tabs below the pair, one module each, and the registry that draws only the open one.

A tab is a :class:`Tab`: a readable slug (the ``tab=`` value of a shared link), the label shown, and
its ``draw(ctx)``. ``st.tabs`` tracks the open tab (``on_change="rerun"``), so a rerun computes and
draws the open tab alone; the others stay empty until opened. To add a view, write a module with a
``draw(ctx)`` and add one line to :data:`TABS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import streamlit as st

from app.tabs import a2, cams, channels, export, gates, ltpa, predictions, walkthrough
from app.tabs import contrast, correspondence, exact
from app.tabs import whatif  # issue #22: what-if controls
from app.tabs import dataset  # issue #23: the atlas's Dataset view
from app.tabs.common import Context, DisplaySettings

__all__ = ["Context", "DisplaySettings", "TABS", "TAB_KEY", "Tab", "by_slug", "open_tab"]

#: session_state key of the open tab's label (the widget key of ``st.tabs``).
TAB_KEY = "tab_label"


@dataclass(frozen=True)
class Tab:
    slug: str
    label: str
    draw: Callable[[Context], None]
    #: False for a tab that never reads the pair's explanation (``ctx.expl``): the page draws it before
    #: it explains the pair, so a choice made there (a map click) shows at once.
    needs_pair: bool = True


TABS: tuple[Tab, ...] = (
    Tab("walkthrough", "Walk-through", walkthrough.draw),
    Tab("gates", "Mutual & gates", gates.draw),
    Tab("whatif", whatif.LABEL, whatif.draw),
    Tab("channels", "Top-k channels", channels.draw),
    Tab("ltpa", "LTPA attention", ltpa.draw),
    Tab("cam", "Grad-CAM", cams.draw),
    Tab("a2", "A² maps", a2.draw),
    Tab("exact", "Exact maps", exact.draw),
    Tab("contrast", "Why A, not B", contrast.draw),
    Tab("match", "Where does it match?", correspondence.draw),
    Tab("predictions", "Predictions", predictions.draw),
    Tab("export", "Export", export.draw),
    Tab("dataset", "Dataset", dataset.draw, needs_pair=False),
)


def by_slug(slug: str) -> Tab | None:
    return next((t for t in TABS if t.slug == slug), None)


def open_tab():
    """Draw the tab bar; return the open :class:`Tab` and its container (the rest stay empty until
    opened: ``st.tabs`` reruns the page when another is chosen)."""
    labels = [t.label for t in TABS]
    if st.session_state.get(TAB_KEY) not in labels:
        st.session_state.pop(TAB_KEY, None)
    containers = st.tabs(labels, key=TAB_KEY, on_change="rerun")
    return next(((tab, c) for tab, c in zip(TABS, containers) if c.open), (TABS[0], containers[0]))

