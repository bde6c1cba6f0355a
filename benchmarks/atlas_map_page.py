"""A bare Streamlit page with the atlas map only (benchmarks/bench_atlas.py times it in Chromium).

ATLAS=DIR MAP_MODE=component|bare|tiny|plain streamlit run benchmarks/atlas_map_page.py
component: the Dataset tab's map (app.atlas_map.draw_map: a canvas component that stays mounted);
bare: the page alone; tiny: a ten-point Plotly chart; plain: one Plotly scattergl trace of every image
(the design the app had before). A click makes the clicked point image A.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402

from apinet.atlas import Atlas  # noqa: E402
from app import atlas_picker  # noqa: E402

st.set_page_config(layout="wide")


@st.cache_resource
def _atlas(folder: str) -> Atlas:
    return Atlas.open(folder)


atlas = _atlas(os.environ["ATLAS"])
_ = atlas.xy, atlas.labels, atlas.index_of  # the same warm state the app has after its first run
mode = os.environ.get("MAP_MODE", "component")
if mode == "bare":
    st.html('<div class="map-ready" data-a="-1"></div>')
    st.stop()
if mode == "component":
    from app.atlas_map import draw_map

    draw_map(atlas)
    rows = atlas_picker.current_rows(atlas)
    st.html(f'<div class="map-ready" data-a="{rows.get("a", -1)}" data-b="{rows.get("b", -1)}"></div>')
    st.stop()
marks = {"a": st.session_state["A"]} if "A" in st.session_state else {}
if mode == "tiny":  # the floor of any Plotly chart on this page: ten points
    fig = go.Figure(go.Scattergl(x=list(range(10)), y=list(range(10)), mode="markers", customdata=list(range(10))))
else:
    xy = atlas.xy
    fig = go.Figure(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", customdata=np.arange(len(atlas)),
                                 marker=dict(size=4, color=atlas.labels, colorscale="Turbo")))
    if marks:
        fig.add_trace(go.Scatter(x=[xy[marks["a"], 0]], y=[xy[marks["a"], 1]], mode="markers", name="A"))
    fig.update_layout(height=560, clickmode="event+select")


def _click() -> None:
    points = st.session_state["m"]["selection"]["points"]
    for p in points:
        data = p.get("customdata")
        row = data[0] if isinstance(data, list) else data
        if row is not None:
            st.session_state["A"] = int(row)
            return


st.plotly_chart(fig, key="m", on_select=_click, selection_mode="points", width="stretch")
st.html(f'<div class="map-ready" data-a="{marks.get("a", -1)}"></div>')
