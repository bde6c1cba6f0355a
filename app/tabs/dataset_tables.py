"""The Dataset tab's matrices and tables: both confusion matrices and their difference (a click opens
a pair), the paged disagreements, and the mined pairs ranked by mechanism strength."""

from __future__ import annotations

import base64
import math

import numpy as np
import streamlit as st

from app import atlas_picker, picker
from app.tabs.common import selected_points
from app.text import md

__all__ = ["PAGE_ROWS", "confusion_click", "disagreement_kinds", "draw_confusion", "draw_disagreements",
           "draw_ranked_pairs", "pair_of_row"]

PAGE_ROWS = 50
_PAGE_ROWS_KEY = "_dtable_rows"  # session_state: table key -> the atlas rows of the page shown


def _thumb_uri(data: bytes) -> str:
    return "data:image/webp;base64," + base64.b64encode(data).decode()


def _set_pair(atlas, a: int, b: int) -> None:
    picker.set_image("a", atlas_picker.ref_of(atlas, a))
    picker.set_image("b", atlas_picker.ref_of(atlas, b))


# ----------------------------------------------------------------------------------------------
# Confusion
# ----------------------------------------------------------------------------------------------


def _matrix_figure(matrix: np.ndarray, names: list[str], title: str, signed: bool):
    """A heatmap of the matrix (cells fill their squares) under one invisible, selectable point per
    non-empty cell: a click selects the nearest cell centre, which carries the hover text."""
    import plotly.graph_objects as go

    n = len(names)
    limit = max(1, int(np.abs(matrix).max())) if matrix.size else 1
    z = np.where(matrix != 0, matrix, np.nan).astype(float)  # empty cells stay blank
    fig = go.Figure(go.Heatmap(z=z, colorscale="RdBu_r" if signed else "Blues", zmin=-limit if signed else 0,
                               zmax=limit, hoverinfo="skip", colorbar=dict(thickness=10), xgap=1, ygap=1))
    true, pred = np.nonzero(matrix)
    values = matrix[true, pred]
    hover = [f"true {names[t]} → predicted {names[p]}: {v:+d}" if signed else
             f"true {names[t]} → predicted {names[p]}: {v}" for t, p, v in zip(true, pred, values)]
    invisible = dict(marker=dict(opacity=0))
    fig.add_trace(go.Scatter(x=pred, y=true, mode="markers", marker=dict(size=10, opacity=0), hovertext=hover,
                             hoverinfo="text", selected=invisible, unselected=invisible, showlegend=False))
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=440, margin=dict(l=40, r=10, t=36, b=40),
                      clickmode="event+select", hovermode="closest")
    # class numbers on the axes (names are in the hover): long names would leave no room for the cells
    fig.update_xaxes(title="predicted", range=[-0.5, n - 0.5], showticklabels=n <= 40, dtick=1 if n <= 20 else None)
    fig.update_yaxes(title="true", range=[n - 0.5, -0.5], showticklabels=n <= 40, dtick=1 if n <= 20 else None)
    return fig


def confusion_click(points: list, atlas, model: str) -> tuple[int, int] | None:
    """The pair a click on cell (true c, predicted d) opens: a misclassified image of c beside the
    nearest image of d (:func:`apinet.atlas.cell_pair`); ``None`` for the diagonal or an empty cell."""
    from apinet.atlas import cell_pair

    for point in points:
        try:  # the cell's own coordinates: x = predicted, y = true class
            true, pred = int(round(float(point["y"]))), int(round(float(point["x"])))
        except (KeyError, TypeError, ValueError):
            continue
        if 0 <= true < len(atlas.class_names) and 0 <= pred < len(atlas.class_names):
            first = cell_pair(atlas, true, pred, model)
            if first is None and model == "apinet":  # a cell of the difference where only the baseline errs
                first = cell_pair(atlas, true, pred, "baseline")
            return first
    return None


def _on_cell(atlas, key: str, model: str) -> None:
    pair = confusion_click(selected_points(st.session_state.get(key)), atlas, model)
    if pair is None:
        picker.set_message("info", "That cell holds no misclassified image to open.")
        return
    _set_pair(atlas, *pair)
    picker.set_message("info", "A = a misclassified image of the cell's true class, B = the nearest image of the "
                       "class it was taken for (squared distance of pooled features).")


def draw_confusion(atlas) -> None:
    from apinet.atlas import confusions

    conf = confusions(atlas)
    names = atlas.class_names
    st.caption("Rows: true class; columns: predicted (class numbers; hover a cell for the names). Click a cell off "
               "the diagonal to open its pair: a misclassified image of the true class beside the nearest image of "
               "the predicted one.")
    cols = st.columns(3)
    for col, (key, matrix, title, model, signed) in zip(cols, (
            ("dconf_apinet", conf.apinet, "API-Net", "apinet", False),
            ("dconf_baseline", conf.baseline, "Baseline", "baseline", False),
            ("dconf_diff", conf.difference, "API-Net − baseline", "apinet", True))):
        with col:
            st.plotly_chart(_matrix_figure(matrix, names, title, signed), key=key, selection_mode="points",
                            on_select=lambda k=key, m=model: _on_cell(atlas, k, m), width="stretch")
    off = conf.difference - np.diag(np.diag(conf.difference))
    worst = np.dstack(np.unravel_index(np.argsort(off, axis=None)[::-1][:3], off.shape))[0]
    st.caption("Where API-Net confuses more than the baseline: " + "; ".join(
        f"{md(names[t])} → {md(names[p])} ({off[t, p]:+d})" for t, p in worst if off[t, p] > 0) or "nowhere")


# ----------------------------------------------------------------------------------------------
# Paged tables with thumbnails
# ----------------------------------------------------------------------------------------------


def _pager(key: str, total: int) -> int:
    pages = max(1, math.ceil(total / PAGE_ROWS))
    if not 1 <= st.session_state.get(f"{key}_page", 1) <= pages:
        st.session_state[f"{key}_page"] = 1
    return int(st.number_input(f"Page (of {pages}, {PAGE_ROWS} rows each)", 1, pages, key=f"{key}_page"))


def _table(atlas, key: str, frame, rows: np.ndarray, on_pick) -> None:
    st.session_state.setdefault(_PAGE_ROWS_KEY, {})[key] = [int(r) for r in rows]
    config = {c: st.column_config.ImageColumn(c, width="small") for c in frame.columns if c.startswith("image")}
    st.dataframe(frame, key=key, on_select=lambda: on_pick(atlas, key), selection_mode="single-row", hide_index=True,
                 column_config=config, row_height=56, width="stretch")


def _picked_row(key: str) -> int | None:
    state = st.session_state.get(key)
    try:
        position = state["selection"]["rows"][0]
        return st.session_state[_PAGE_ROWS_KEY][key][position]
    except (KeyError, IndexError, TypeError):
        return None


def disagreement_kinds(atlas) -> dict[str, np.ndarray]:
    """Named masks of the labelled rows (the table's filter)."""
    a_ok, b_ok = atlas.correct("apinet"), atlas.correct("baseline")
    differ = atlas.predictions("apinet") != atlas.predictions("baseline")
    lab = atlas.labelled
    return {"models disagree or both wrong": lab & (differ | (~a_ok & ~b_ok)),
            "API-Net right, baseline wrong": lab & a_ok & ~b_ok,
            "baseline right, API-Net wrong": lab & b_ok & ~a_ok,
            "both wrong": lab & ~a_ok & ~b_ok,
            "models disagree": lab & differ}


def pair_of_row(atlas, row: int) -> tuple[int, int]:
    """A disagreement row opens with its mined partner: the nearest other-class image (else same-class)."""
    partner = int(atlas.column("inter")[row])
    return row, partner if partner >= 0 else int(atlas.column("intra")[row])


def _on_disagreement(atlas, key: str) -> None:
    row = _picked_row(key)
    if row is not None:
        _set_pair(atlas, *pair_of_row(atlas, row))
        picker.set_message("info", "A = the chosen image, B = its nearest other-class image (the paper's inter pair).")


def draw_disagreements(atlas) -> None:
    import pandas as pd

    kinds = disagreement_kinds(atlas)
    names = atlas.class_names
    left, mid = st.columns(2)
    kind = left.selectbox("Show", list(kinds), key="ddis_kind")
    klass = mid.selectbox("True class", ["All classes"] + names, key="ddis_class")
    rows = np.flatnonzero(kinds[kind])
    if klass != "All classes":
        rows = rows[atlas.labels[rows] == names.index(klass)]
    confidence = np.maximum(atlas.column("apinet_prob")[rows], atlas.column("baseline_prob")[rows])
    rows = rows[np.argsort(-confidence, kind="stable")]  # the most confident mistakes first
    st.caption(f"{len(rows):,} image(s). Select a row to open it with its nearest other-class image.")
    if len(rows) == 0:
        return
    page = _pager("ddis", len(rows))
    shown = rows[(page - 1) * PAGE_ROWS: page * PAGE_ROWS]
    thumbs = atlas.thumbnails(shown)
    pa, pb = atlas.predictions("apinet")[shown], atlas.predictions("baseline")[shown]
    frame = pd.DataFrame({
        "image": [_thumb_uri(t) for t in thumbs],
        "id": [str(i) for i in atlas.column("id")[shown]],
        "true class": [str(c) for c in atlas.column("class_name")[shown]],
        "API-Net": [f"{names[p]} ({q:.0%})" for p, q in zip(pa, atlas.column("apinet_prob")[shown])],
        "baseline": [f"{names[p]} ({q:.0%})" for p, q in zip(pb, atlas.column("baseline_prob")[shown])],
        "OOD": atlas.column("ood")[shown].astype(float),
    })
    _table(atlas, "ddis_table", frame, shown, _on_disagreement)


# ----------------------------------------------------------------------------------------------
# Pairs ranked by mechanism strength
# ----------------------------------------------------------------------------------------------

_MEASURES = {"gate_gap": "gate gap |g1 − g2|", "logit_gap": "logit gap (self − other)",
             "self_minus_other": "p_self − p_other"}


def _on_ranked(atlas, key: str) -> None:
    row = _picked_row(key)
    if row is None:
        return
    kind = st.session_state.get("dpairs_kind", "inter")
    partner = int(atlas.column(kind)[row])
    if partner >= 0:
        _set_pair(atlas, row, partner)
        picker.set_message("info", f"A and B = a mined {kind} pair of the atlas, chosen by mechanism strength.")


def draw_ranked_pairs(atlas) -> None:
    import pandas as pd

    from apinet.atlas import ranked_pairs

    left, mid = st.columns(2)
    kind = left.radio("Pairs", ["inter", "intra"], key="dpairs_kind", horizontal=True,
                      format_func=lambda k: {"inter": "other-class (inter)", "intra": "same-class (intra)"}[k])
    by = mid.selectbox("Rank by", list(_MEASURES), key="dpairs_by", format_func=_MEASURES.get)
    rows, partners = ranked_pairs(atlas, kind, by)
    st.caption(f"Every image with its mined {kind} partner ({len(rows):,} pairs), strongest first by "
               f"{_MEASURES[by]} (API-Net's pair head on the stored pooled features, image 1's class). "
               "Select a row to open the pair.")
    if len(rows) == 0:
        return
    page = _pager("dpairs", len(rows))
    sl = slice((page - 1) * PAGE_ROWS, page * PAGE_ROWS)
    shown, mates = rows[sl], partners[sl]
    thumbs = atlas.thumbnails(np.concatenate([shown, mates]))
    names = atlas.column("class_name")
    frame = pd.DataFrame({
        "image A": [_thumb_uri(t) for t in thumbs[:len(shown)]],
        "image B": [_thumb_uri(t) for t in thumbs[len(shown):]],
        "A": [f"{names[r]} · {atlas.column('id')[r]}" for r in shown],
        "B": [f"{names[r]} · {atlas.column('id')[r]}" for r in mates],
        **{label.split(" (")[0]: atlas.column(f"{kind}_{m}")[shown].astype(float) for m, label in _MEASURES.items()},
    })
    _table(atlas, "dpairs_table", frame, shown, _on_ranked)
