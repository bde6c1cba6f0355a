"""What if? The student changes the pair and API-Net recomputes: the teaching core of issue #22.

Controls: every gate = 0.5 (no attention), swap the gates, one channel's gate of A or B set to 0 or 1
(from this tab, a click on its gates chart, or the channel inspector of *Mutual & gates*), and
occlusion of cells of A or B on the feature-map grid (click a cell, drag a box, or use the sliders).
Every number comes from :mod:`apinet.explain.whatif` (the model's own layers; an occlusion runs the
trunk once for the changed image); nothing is approximated here. The interventions live in
``session_state["whatif"]`` in their text form, so the shared link carries them (``app.state``); they
are forgotten when the pair changes. The tab body is a fragment: a change reruns it alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from app import resources, state
from app.numbers import signed_sig
from app.tabs.common import Context, class_name, selected_points
from app.text import md, plotly_text
from app.theme import A_COLOUR, B_COLOUR, NEUTRAL

__all__ = ["KEY", "LABEL", "add", "cells_from_selection", "current", "draw", "export_section",
           "forget_if_pair_changed", "gate_buttons", "hidden_cells", "outcome_rows"]

KEY = "whatif"  # session_state + URL: the interventions' text form
LABEL = "What if?"
_PAIR = "_whatif_pair"  # the pair the interventions belong to
_GEN = "_whatif_gen"  # bumped after every change: charts start with no selection
_JUMP = "_whatif_jump"  # a control outside the tab asked to open it
CHANNEL = "whatif_channel"
_PLOT_HEIGHT = 300


# ----------------------------------------------------------------------------------------------
# State
# ----------------------------------------------------------------------------------------------


def current() -> tuple:
    """The interventions now applied (empty when none, or when the text cannot be read)."""
    from apinet.explain.whatif import parse_interventions

    try:
        return parse_interventions(st.session_state.get(KEY) or "")
    except ValueError:
        return ()


#: Longest text form kept: beyond it, occlusion steps that a later one superseded are dropped (undo
#: then goes back further in one step); a link stays well under browsers' URL limits.
_MAX_TEXT = 3000


def _save(items) -> None:
    from apinet.explain.whatif import Occlude, format_interventions

    items = list(items)
    text = format_interventions(items)
    if len(text) > _MAX_TEXT:
        last = {i.image: n for n, i in enumerate(items) if isinstance(i, Occlude)}
        items = [i for n, i in enumerate(items) if not isinstance(i, Occlude) or last[i.image] == n]
        text = format_interventions(items)
    st.session_state[KEY] = text
    st.session_state[_GEN] = st.session_state.get(_GEN, 0) + 1


def add(item) -> None:
    """Apply one more intervention (an occlusion step holds all hidden cells of its image)."""
    _save(list(current()) + [item])


def hidden_cells(image: int) -> set:
    """The cells of image ``image`` hidden now (the last occlusion step of that image)."""
    from apinet.explain.whatif import Occlude

    steps = [i for i in current() if isinstance(i, Occlude) and i.image == image]
    return set(steps[-1].cells) if steps else set()


def _set_cells(image: int, cells, grid, mode: str) -> None:
    """``mode``: "toggle" (one clicked cell), "add", "remove" or "replace" the image's occluded cells."""
    from apinet.explain.whatif import Occlude

    old = hidden_cells(image)
    cells = {tuple(int(v) for v in c) for c in cells}
    if mode == "toggle":
        new = old ^ cells
    elif mode == "add":
        new = old | cells
    elif mode == "remove":
        new = old - cells
    else:
        new = cells
    if new != old:
        add(Occlude(image, frozenset(new), tuple(grid)))


def _undo() -> None:
    items = list(current())
    if items:
        _save(items[:-1])


def _reset() -> None:
    _save([])


def forget_if_pair_changed(ctx: Context) -> None:
    """Interventions belong to one pair (and reference classes, checkpoint): a new pair starts clean."""
    pair = (ctx.image_a.ref, ctx.image_b.ref, tuple(int(t) for t in ctx.expl.targets), ctx.apinet.sha256)
    if st.session_state.setdefault(_PAIR, pair) != pair:
        st.session_state[_PAIR] = pair
        st.session_state[KEY] = ""


def _set_gate(image: int, channel: int, value: float, jump: bool) -> None:
    from apinet.explain.whatif import SetGate

    add(SetGate(image, int(channel), float(value)))
    if jump:
        from app.tabs import TAB_KEY

        st.session_state[TAB_KEY] = LABEL
        st.session_state[_JUMP] = True


def gate_buttons(channel: int, where: str) -> None:
    """Four buttons that set channel ``channel``'s gate of A or B to 0 or 1; from outside the tab
    (``where != "tab"``) they open the What if? tab."""
    jump = where != "tab"
    st.caption(f"What if channel {channel}'s gate were…" + (" (opens the What if? tab)" if jump else ""))
    cols = st.columns(4, gap="small")
    for col, (image, value) in zip(cols, ((1, 0.0), (1, 1.0), (2, 0.0), (2, 1.0))):
        tag = "A" if image == 1 else "B"
        col.button(f"{tag}: {value:g}", key=f"whatif_gate_{where}_{image}_{int(value)}", width="stretch",
                   on_click=_set_gate, args=(image, channel, value, jump),
                   help=f"Set g{'₁' if image == 1 else '₂'}[{channel}] = {value:g}: "
                        + ("switch this channel off for " if value == 0 else "let this channel fully through for ")
                        + f"{tag}'s attentive features (and for the partner's 'other' features).")
    if st.session_state.pop(_JUMP, False):
        st.rerun()  # a fragment's button: the whole page reruns to open the tab


# ----------------------------------------------------------------------------------------------
# Occlusion grid
# ----------------------------------------------------------------------------------------------


def cells_from_selection(event: Any) -> tuple[list[tuple[int, int]], bool]:
    """The cells ``(row, col)`` of a grid chart's selection (``customdata`` = [row, col]) and whether it
    was a box (or lasso) rather than a click."""
    cells = []
    for point in selected_points(event):
        custom = point.get("customdata")
        if isinstance(custom, dict):
            custom = [custom.get("0", custom.get(0)), custom.get("1", custom.get(1))]
        try:
            cells.append((int(custom[0]), int(custom[1])))
        except (TypeError, ValueError, IndexError, KeyError):
            continue
    try:
        sel = event["selection"]
        boxed = bool(sel.get("box") or sel.get("lasso"))
    except (KeyError, TypeError, AttributeError):
        boxed = False
    return cells, boxed or len(cells) > 1


def _on_grid(image: int, key: str, grid) -> None:
    cells, boxed = cells_from_selection(st.session_state.get(key))
    if not cells:
        return
    if not boxed:
        _set_cells(image, cells, grid, "toggle")
        return
    old = hidden_cells(image)
    # a box over cells that are all occluded restores them; any other box occludes every cell in it
    _set_cells(image, cells, grid, "remove" if set(cells) <= old else "add")


def _hide_from_sliders(image: int, grid) -> None:
    """Hide the block of cells the Rows / Columns sliders span (read when the button is pressed)."""
    (r0, r1), (c0, c1) = st.session_state["whatif_rows"], st.session_state["whatif_cols"]
    _set_cells(image, [(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)], grid, "add")


def _grid_figure(image: np.ndarray, grid, title: str, box: bool = False):
    import plotly.graph_objects as go

    big_h, big_w = image.shape[:2]
    h, w = grid
    rows, cols = np.mgrid[0:h, 0:w]
    fig = go.Figure(go.Image(z=image, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=((cols + 0.5) * big_w / w).ravel(), y=((rows + 0.5) * big_h / h).ravel(), mode="markers", name="cells",
        customdata=np.stack([rows.ravel(), cols.ravel()], axis=1),
        hovertemplate="cell (row %{customdata[0]}, col %{customdata[1]})<extra></extra>",
        marker={"symbol": "square", "size": max(6, int((_PLOT_HEIGHT - 40) / max(h, w)) - 2),
                "color": "rgba(255,255,255,0.01)", "line": {"width": 0.5, "color": "rgba(255,255,255,0.35)"}},
        selected={"marker": {"opacity": 1.0}}, unselected={"marker": {"opacity": 1.0}}))
    fig.update_layout(title={"text": plotly_text(title), "font": {"size": 13}}, margin={"l": 0, "r": 0, "t": 30, "b": 0},
                      height=_PLOT_HEIGHT, showlegend=False, clickmode="event+select",
                      dragmode="select" if box else False,  # Plotly selects no point on a click in select mode
                      xaxis={"visible": False, "range": [0, big_w]}, yaxis={"visible": False, "range": [big_h, 0]})
    return fig


def _occlusion_section(ctx: Context, result, grid) -> None:
    from apinet.explain.whatif import OCCLUSION_BASELINE
    from apinet.render.whatif import baseline_colour, occluded_image

    e = ctx.expl
    h, w = grid
    st.markdown("##### Occlude part of an image")
    st.caption(f"**Click cells**: a click hides a cell ({h} × {w} cells, one per position of the feature map) or "
               "brings it back. **Drag a box**: every cell in the box is hidden (a box over hidden cells brings "
               "them back). Hidden pixels "
               f"are set to {OCCLUSION_BASELINE}, and the changed image goes through the backbone once.")
    box = st.segmented_control("Mouse", ["Click cells", "Drag a box"], default="Click cells", key="whatif_mouse",
                               label_visibility="collapsed") == "Drag a box"
    colour = baseline_colour(e)
    gen = st.session_state.get(_GEN, 0)
    cols = st.columns(2, gap="large")
    for col, image, tag in ((cols[0], 1, "A"), (cols[1], 2, "B")):
        picture = occluded_image(e.image1 if image == 1 else e.image2, result.occluded[image - 1], colour)
        key = f"whatif_grid{image}_{gen}"
        with col:
            n = 0 if result.occluded[image - 1] is None else int(result.occluded[image - 1].sum())
            st.plotly_chart(_grid_figure(picture, grid, f"{tag}: {n} of {h * w} cells hidden", box), key=key,
                            on_select=lambda image=image, key=key: _on_grid(image, key, grid),
                            selection_mode=("points", "box"), config={"displayModeBar": False, "displaylogo": False},
                            width="stretch")
    with st.expander("Hide cells by row and column (without a mouse)", icon=":material/grid_on:"):
        rr = st.slider("Rows", 0, h - 1, (h // 2 - 1, h // 2), key="whatif_rows")
        cc = st.slider("Columns", 0, w - 1, (w // 2 - 1, w // 2), key="whatif_cols")
        st.caption(f"Rows {rr[0]}–{rr[1]}, columns {cc[0]}–{cc[1]}: "
                   f"{(rr[1] - rr[0] + 1) * (cc[1] - cc[0] + 1)} cells (row 0 is the top, column 0 the left).")
        b = st.columns(4, gap="small")
        for col, image, tag in ((b[0], 1, "A"), (b[1], 2, "B")):
            col.button(f"Hide on {tag}", key=f"whatif_hide{image}", width="stretch",
                       on_click=_hide_from_sliders, args=(image, grid))
        for col, image, tag in ((b[2], 1, "A"), (b[3], 2, "B")):
            col.button(f"Show all of {tag}", key=f"whatif_clear{image}", width="stretch",
                       on_click=_set_cells, args=(image, [], grid, "replace"),
                       disabled=result.occluded[image - 1] is None)


# ----------------------------------------------------------------------------------------------
# Outcome
# ----------------------------------------------------------------------------------------------


def _num(v: float) -> str:
    return f"{v:.4g}"


def _pred(e, state, image: int, path: str) -> str:
    c = state.predicted(image, path)
    p = float(state.probabilities[f"{image}_{path}"][c])
    return f"{md(class_name(e, c))} ({p:.0%})"


def outcome_rows(e, result) -> list[tuple[str, str, str, str, str, str, str]]:
    """The outcome table: quantity, then A before / after / change, then B before / after / change."""
    b, a = result.before, result.after
    rows = []

    def add_row(name, fn, fmt=_num, delta=True):
        cells = [name]
        for i in (1, 2):
            vb, va = fn(b, i), fn(a, i)
            cells += [fmt(vb), fmt(va), (signed_sig(va - vb) if va != vb else "—") if delta else
                      ("changed" if va != vb else "—")]
        rows.append(tuple(cells))

    add_row("logit_self(c), own gate", lambda s, i: s.logit(i, "self"))
    add_row("logit_other(c), partner's gate", lambda s, i: s.logit(i, "other"))
    add_row("**logit_self − logit_other**", lambda s, i: s.logit_gap(i), signed_sig)
    add_row("p_self(c)", lambda s, i: s.score(i, "self"))
    add_row("p_other(c)", lambda s, i: s.score(i, "other"))
    add_row("**p_self − p_other**", lambda s, i: s.score_gap(i), signed_sig)
    add_row("ranking-loss term", lambda s, i: s.rank_term(i))
    add_row("margin 0.05 met", lambda s, i: s.margin_met(i), lambda v: "yes" if v else "no", delta=False)
    add_row("test-path logit(c)", lambda s, i: s.logit(i, "test"))
    rows.append(("test-path prediction",) + tuple(
        x for i in (1, 2) for x in (_pred(e, b, i, "test"), _pred(e, a, i, "test"),
                                    "changed" if b.predicted(i) != a.predicted(i) else "—")))
    rows.append(("prediction with own gate",) + tuple(
        x for i in (1, 2) for x in (_pred(e, b, i, "self"), _pred(e, a, i, "self"),
                                    "changed" if b.predicted(i, "self") != a.predicted(i, "self") else "—")))
    return rows


def _table(rows) -> str:
    head = "| | A before | A after | A change | B before | B after | B change |\n|---|---:|---:|---:|---:|---:|---:|\n"
    return head + "\n".join("| " + " | ".join(r) + " |" for r in rows)


def _gates_figure(e, result):
    import plotly.graph_objects as go

    from app.tabs.gates import gate_zoom_range, zoom_menu

    order = np.asarray(e.gate_order1)
    xs = np.arange(order.size)
    zoom = gate_zoom_range(result.before.gate1, result.before.gate2, result.after.gate1, result.after.gate2)
    fig = go.Figure()
    for state_, name, opacity in ((result.before, "before", 0.25), (result.after, "after", 0.85)):
        for g, colour, sym in ((state_.gate1, A_COLOUR, "g₁"), (state_.gate2, B_COLOUR, "g₂")):
            fig.add_trace(go.Scatter(
                x=xs, y=np.asarray(g, np.float64)[order], mode="markers", name=f"{sym} {name}",
                customdata=np.stack([order, order], axis=1),
                hovertemplate=f"channel %{{customdata[0]}}<br>{sym} {name} %{{y:.4f}}<extra></extra>",
                marker=dict(color=colour if name == "after" else NEUTRAL, size=4 if name == "after" else 3,
                            opacity=opacity)))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=50, b=10), clickmode="event+select",
                      showlegend=False,  # the caption says which is which; a legend would sit under the buttons
                      xaxis=dict(title="channel (in the order of the untouched g₁)"),
                      yaxis=dict(title="gate g", range=list(zoom)), updatemenus=zoom_menu(zoom, ("yaxis",)))
    return fig


def _on_gates_click(key: str, n: int) -> None:
    from app.tabs.gates import channel_from_selection

    channel = channel_from_selection(st.session_state.get(key), n)
    if channel is not None:
        st.session_state[CHANNEL] = channel


def _metrics(result) -> None:
    b, a = result.before, result.after
    cols = st.columns(4)
    for col, (tag, i) in zip(cols[:2], (("A", 1), ("B", 2))):
        col.metric(f"{tag}: logit_self − logit_other", signed_sig(a.logit_gap(i)),
                   delta=signed_sig(a.logit_gap(i) - b.logit_gap(i)) if a.logit_gap(i) != b.logit_gap(i) else None,
                   border=True, help="After the change; the small number is the change against the untouched pair.")
    for col, (tag, i) in zip(cols[2:], (("A", 1), ("B", 2))):
        col.metric(f"{tag}: p_self − p_other", signed_sig(a.score_gap(i)),
                   delta=signed_sig(a.score_gap(i) - b.score_gap(i)) if a.score_gap(i) != b.score_gap(i) else None,
                   border=True, help="After the change; the ranking loss wants at least +0.05.")


# ----------------------------------------------------------------------------------------------
# The tab
# ----------------------------------------------------------------------------------------------


def _whatif_pair(ctx: Context):
    e = ctx.expl
    return resources.whatif_pair(ctx.apinet.path, ctx.apinet.sha256, ctx.image_a.sha256, ctx.image_b.sha256,
                                 tuple(int(t) for t in e.targets), e, ctx.image_a.data, ctx.image_b.data)


def draw(ctx: Context) -> None:
    _body(ctx)


@st.fragment
def _body(ctx: Context) -> None:
    """A fragment: each change reruns this tab alone (and writes the link itself)."""
    try:
        _draw(ctx)
    finally:
        state.write_url_once_restored()


def _draw(ctx: Context) -> None:
    from apinet.render.whatif import describe_intervention

    e = ctx.expl
    st.markdown("#### What if? Change the pair, and API-Net recomputes")
    st.caption("Each button changes one thing. API-Net then recomputes everything after it with its own layers "
               "— the gates, the four scores, the ranking-loss term and the predictions — and the table compares "
               "them with the untouched pair. Changes add up; **Undo** takes back the last one, **Reset** all.")
    items = current()
    wp = _whatif_pair(ctx)
    try:
        result = wp.run(items)
    except ValueError as exc:
        st.warning(f"These changes do not fit this pair ({md(str(exc))}).", icon=":material/warning:")
        st.button("Reset the changes", key="whatif_reset_bad", on_click=_reset)
        return
    from apinet.explain.whatif import HalfGates, SwapGates, effective_interventions

    c = st.columns(4, gap="small")
    c[0].button("All gates = 0.5", key="whatif_half", on_click=add, args=(HalfGates(),), width="stretch",
                icon=":material/horizontal_rule:",
                help="The “no attention” control: with every gate at 0.5 each image's self and other features are "
                     "both 1.5 x, so logit_self = logit_other and p_self = p_other exactly.")
    c[1].button("Swap the gates", key="whatif_swap", on_click=add, args=(SwapGates(),), width="stretch",
                icon=":material/swap_horiz:",
                help="A gets B's gate and B gets A's: each image's self and other scores trade places.")
    c[2].button("Undo last change", key="whatif_undo", on_click=_undo, disabled=not items, width="stretch",
                icon=":material/undo:")
    c[3].button("Reset", key="whatif_reset", on_click=_reset, disabled=not items, width="stretch",
                icon=":material/restart_alt:")
    applied = effective_interventions(items)
    if applied:
        st.markdown("**Applied now:** " + "; ".join(f"{n}. {md(describe_intervention(i))}"
                                                   for n, i in enumerate(applied, 1)))
    else:
        st.caption("No change applied yet: the numbers below are the untouched pair's.")

    _metrics(result)
    grid = wp.grid
    left, right = st.columns([3, 2], gap="large")
    with left:
        if grid is None:
            st.info("This explanation keeps no feature grid, so occlusion is not available.")
        else:
            _occlusion_section(ctx, result, grid)
    with right:
        _channel_section(e, result)

    st.markdown("##### Before and after")
    st.markdown(_table(outcome_rows(e, result)))
    t1, t2 = e.targets
    st.caption(f"c = each image's target class (A: {md(class_name(e, t1))}, B: {md(class_name(e, t2))}). "
               f"Mean |g₁ − g₂|: {result.before.gate_gap:.3g} untouched, {result.after.gate_gap:.3g} now. "
               f"Recomputed in {result.seconds * 1000:.0f} ms"
               + (f" with {result.trunk_passes} backbone pass" + ("es" if result.trunk_passes != 1 else "")
                  if result.trunk_passes else " (pair head only; occluded images' features are reused)")
               + ". The test path (classifier on one image's pooled features) never sees the gates: only an "
                 "occlusion changes it.")


def _channel_section(e, result) -> None:
    d = int(np.asarray(e.gate1).shape[0])
    st.markdown("##### Switch one channel's gate")
    default = st.session_state.get("channel")
    if st.session_state.get(CHANNEL) is None or not 0 <= int(st.session_state[CHANNEL]) < d:
        st.session_state[CHANNEL] = int(default) if default is not None and 0 <= int(default) < d \
            else int(e.gate_order1[0])
    channel = int(st.number_input("Channel", 0, d - 1, key=CHANNEL, step=1,
                                  help="The channel inspected in Mutual & gates, a dot clicked below, or any index."))
    a = result.after
    st.caption(f"Now g₁[{channel}] = {float(a.gate1[channel]):.4f}, g₂[{channel}] = {float(a.gate2[channel]):.4f} "
               f"(untouched {float(result.before.gate1[channel]):.4f}, {float(result.before.gate2[channel]):.4f}); "
               f"pooled x₁ = {float(a.features1[channel]):.3g}, x₂ = {float(a.features2[channel]):.3g}. A gate "
               "scales its channel's pooled activation: with x = 0 it changes nothing.")
    gate_buttons(channel, "tab")
    key = f"whatif_gates_{st.session_state.get(_GEN, 0)}"
    st.plotly_chart(_gates_figure(e, result), key=key, on_select=lambda: _on_gates_click(key, d),
                    selection_mode="points", config={"displaylogo": False, "displayModeBar": False}, width="stretch")
    st.caption("Gates now (coloured) and untouched (grey), every channel in the order of the untouched g₁. "
               "Click a dot to choose its channel.")


def export_section(ctx: Context, width: str = "double", font_size: float = 7.0, background: str = "white") -> None:
    """The Export tab's before / after figure of the current interventions (apinet.render.whatif)."""
    from apinet.render.whatif import whatif_figure

    items = current()
    if not items:
        st.caption("Apply a change in the **What if?** tab to export a before / after figure of it.")
        return
    result = _whatif_pair(ctx).run(items)
    from app.tabs.export import FORMATS, _save, _slug

    stem = _slug(f"apinet_whatif_{ctx.image_a.name}_vs_{ctx.image_b.name}")
    cols = st.columns(len(FORMATS))
    for col, (fmt, mime) in zip(cols, FORMATS):
        col.download_button(f"Before / after · {fmt.upper()}",
                            data=lambda fmt=fmt: _save(whatif_figure(ctx.expl, result, width=width, font_size=font_size,
                                                                     background=background), fmt, 300),
                            file_name=f"{stem}.{fmt}", mime=mime, key=f"dl_whatif_{fmt}", on_click="ignore",
                            icon=":material/download:", width="stretch")
    st.image(_save(whatif_figure(ctx.expl, result, width=width, font_size=font_size, background=background), "png", 100),
             width="stretch")
