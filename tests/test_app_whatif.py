"""Issue #22 in the app: the What if? tab, the logit gap and margin in the pair summary, the walk-through's
first-order step, the gate axes' zoom, the strongest-pair buttons and the ranked landing pair, through
``streamlit.testing.v1.AppTest`` on the tiny checkpoints of ``tests/app_checkpoints.py``. Every number the
page shows is compared with the library's (``apinet.explain.whatif``, ``facts``, ``pair_ranking``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.app_helpers import app_test, current_pair, explanation, ok as _ok, open_tab as _open

pytestmark = pytest.mark.slow

SIBLINGS = ("test_0000_red-crowned-finch", "test_0001_golden-crowned-finch")


_app = app_test
_found = current_pair
_expl = explanation


def _library(env, at, items):
    """The library's outcome, from a WhatIfPair built here (not the app's cached one)."""
    import torch

    from apinet import load_model
    from apinet.data import Preprocess, load_image
    from apinet.explain.whatif import WhatIfPair

    _, ckpt, _, a, b = _found(env, at)
    model, card = load_model(ckpt.path)
    pre = Preprocess.from_card(card)
    inputs = torch.stack([pre(load_image(a.data)), pre(load_image(b.data))])
    return WhatIfPair.from_explanation(model.eval(), _expl(env, at), inputs).run(items)


def _metrics(at) -> dict[str, tuple[str, str]]:
    """The What if? tab's metrics (the last four on the page): label -> (value, delta)."""
    return {m.label: (m.value, m.proto.delta) for m in at.metric[-4:]}


def _table(at) -> dict[str, list[str]]:
    text = next(m.value for m in at.markdown if m.value.startswith("| | A before"))
    rows = {}
    for line in text.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _check_outcome(at, result) -> None:
    from app.numbers import signed_sig

    b, a = result.before, result.after
    metrics = _metrics(at)
    rows = _table(at)
    for tag, i in (("A", 1), ("B", 2)):
        value, delta = metrics[f"{tag}: logit_self − logit_other"]
        assert value == signed_sig(a.logit_gap(i))
        change = a.logit_gap(i) - b.logit_gap(i)
        assert delta == (signed_sig(change) if change != 0 else "")
        assert metrics[f"{tag}: p_self − p_other"][0] == signed_sig(a.score_gap(i))
        col = 0 if i == 1 else 3
        assert rows["logit_self(c), own gate"][col:col + 2] == [f"{b.logit(i, 'self'):.4g}", f"{a.logit(i, 'self'):.4g}"]
        assert rows["logit_other(c), partner's gate"][col + 1] == f"{a.logit(i, 'other'):.4g}"
        assert rows["p_self(c)"][col + 1] == f"{a.score(i, 'self'):.4g}"
        assert rows["ranking-loss term"][col + 1] == f"{a.rank_term(i):.4g}"
        assert rows["margin 0.05 met"][col + 1] == ("yes" if a.margin_met(i) else "no")
        assert rows["test-path logit(c)"][col + 1] == f"{a.logit(i, 'test'):.4g}"


def test_pair_summary_shows_the_logit_gap_and_the_margin(env):
    from apinet.explain.facts import pair_facts
    from app.numbers import margin_text, signed_sig

    at = _app(a=SIBLINGS[0], b=SIBLINGS[1]).run()
    _ok(at)
    facts = pair_facts(_expl(env, at))
    table = next(m.value for m in at.markdown if m.value.startswith("| | Δ logit | Δ p | ranking loss"))
    for tag, i in (("A", 1), ("B", 2)):
        f = facts.image(i)
        assert f"| **{tag}** | {signed_sig(f.logit_gap)} | {signed_sig(f.score_gap)} | {margin_text(f)} |" in table
    assert margin_text(facts.image1).endswith("(met)") == facts.image1.margin_met
    captions = " ".join(c.value for c in at.caption)
    assert ("so p_self − p_other can hardly move" in captions) == facts.any_saturated
    # the walk-through's first-order step, with this pair's numbers
    fo = facts.first_order
    text = " ".join(m.value for m in at.markdown)
    assert "Why similar images can hardly rank themselves" in text
    assert f"the gates differ by **{fo.mean_abs_gate_diff:.3g}** per channel (first-order estimate " \
           f"{fo.mean_abs_first_order:.3g})" in text
    assert f"features differ by **{fo.mean_abs_feature_diff:.3g}**" in text
    assert any(r"g_1 - g_2 \approx \sigma'(z)" in eq.value for eq in at.latex)


def test_whatif_controls_show_the_libraries_numbers_and_travel_in_the_link(env):
    from apinet.explain.whatif import HalfGates, Occlude, SetGate, SwapGates, parse_interventions

    at = _open(_app(a=SIBLINGS[0], b=SIBLINGS[1]).run(), "What if?")
    assert any(c.value.startswith("No change applied yet") for c in at.caption)
    _check_outcome(at, _library(env, at, []))

    at.button(key="whatif_half").click().run()
    _ok(at)
    assert at.session_state.whatif == "half" and at.query_params["whatif"] in ("half", ["half"])
    result = _library(env, at, [HalfGates()])
    _check_outcome(at, result)
    assert _metrics(at)["A: logit_self − logit_other"][0] == "0"  # gates 0.5: self and other coincide

    at.button(key="whatif_undo").click().run()
    at.button(key="whatif_swap").click().run()
    _ok(at)
    assert at.session_state.whatif == "swap"
    _check_outcome(at, _library(env, at, [SwapGates()]))

    at.number_input(key="whatif_channel").set_value(7).run()
    at.button(key="whatif_gate_tab_2_1").click().run()  # B's gate of channel 7 -> 1
    _ok(at)
    items = (SwapGates(), SetGate(2, 7, 1.0))
    assert parse_interventions(at.session_state.whatif) == items
    _check_outcome(at, _library(env, at, items))

    # occlusion without a mouse: rows 0-1, columns 1-2 of A's grid
    at.slider(key="whatif_rows").set_value((0, 1))
    at.slider(key="whatif_cols").set_value((1, 2))
    at.button(key="whatif_hide1").click().run()
    _ok(at)
    occl = Occlude(1, frozenset({(0, 1), (0, 2), (1, 1), (1, 2)}), (4, 4))
    assert parse_interventions(at.session_state.whatif) == items + (occl,)
    _check_outcome(at, _library(env, at, items + (occl,)))
    assert "Recomputed in" in " ".join(c.value for c in at.caption)

    # the mouse mode: clicks select cells; "Drag a box" switches the grids to box selection
    grids = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "whatif_grid" in c.proto.id]
    assert len(grids) == 2 and all(g["layout"]["dragmode"] is False for g in grids)
    assert grids[0]["layout"]["title"]["text"] == "A: 4 of 16 cells hidden"
    at.get("button_group")[0].set_value("Drag a box").run()
    grids = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "whatif_grid" in c.proto.id]
    assert all(g["layout"]["dragmode"] == "select" for g in grids)

    # the link restores the changes in a new session
    link = {k: v[0] if isinstance(v, list) else v for k, v in at.query_params.items()}
    again = _app(**link).run()
    _ok(again)
    assert again.session_state.whatif == at.session_state.whatif
    _check_outcome(again, _library(env, again, items + (occl,)))

    at.button(key="whatif_clear1").click().run()  # "Show all of A": an occlusion step with no cells
    _ok(at)
    shown = Occlude(1, frozenset(), (4, 4))
    assert parse_interventions(at.session_state.whatif) == items + (occl, shown)
    _check_outcome(at, _library(env, at, items))
    at.button(key="whatif_reset").click().run()
    _ok(at)
    assert at.session_state.whatif == "" and "whatif" not in at.query_params


def test_a_new_pair_forgets_the_changes_and_bad_link_text_is_dropped(env):
    at = _open(_app(a=SIBLINGS[0], b=SIBLINGS[1]).run(), "What if?")
    at.button(key="whatif_half").click().run()
    assert at.session_state.whatif == "half"
    at.selectbox(key="b").set_value("g:test_0005_streaked-warbler").run()
    _ok(at)
    assert at.session_state.whatif == "" and "whatif" not in at.query_params
    bad = _app(a=SIBLINGS[0], b=SIBLINGS[1], whatif="g1:7=3;nonsense", tab="whatif").run()
    _ok(bad)
    assert "whatif" not in bad.session_state or not bad.session_state["whatif"]
    assert any(c.value.startswith("No change applied yet") for c in bad.caption)
    # a channel beyond the model's: a one-line warning and a reset, no traceback
    out = _app(a=SIBLINGS[0], b=SIBLINGS[1], whatif="g1:9999=0", tab="whatif").run()
    _ok(out)
    assert any("do not fit this pair" in w.value and "channel 9999 outside the 512 channels" in w.value
               for w in out.warning)


def test_channel_inspector_sends_a_gate_to_the_whatif_tab(env):
    from apinet.explain.whatif import SetGate, parse_interventions
    from app.tabs import TAB_KEY

    at = _open(_app(a=SIBLINGS[0], b=SIBLINGS[1]).run(), "Mutual & gates")
    channel = int(at.session_state.channel)
    at.button(key="whatif_gate_inspector_1_0").click().run()
    _ok(at)
    assert parse_interventions(at.session_state.whatif) == (SetGate(1, channel, 0.0),)
    assert at.session_state[TAB_KEY] == "What if?"
    assert at.number_input(key="whatif_channel").value == channel
    _check_outcome(at, _library(env, at, [SetGate(1, channel, 0.0)]))


def test_export_offers_the_before_after_figure(env):
    at = _open(_app(a=SIBLINGS[0], b=SIBLINGS[1], whatif="swap").run(), "Export")
    keys = {b.proto.id for b in at.get("download_button")}
    assert any("dl_whatif_pdf" in k for k in keys) and any("dl_whatif_png" in k for k in keys)
    none = _open(_app(a=SIBLINGS[0], b=SIBLINGS[1]).run(), "Export")
    assert not any("dl_whatif" in b.proto.id for b in none.get("download_button"))
    assert any("to export a before / after figure" in c.value for c in none.caption)


def test_landing_pair_and_strongest_pair_buttons_follow_the_ranking(env):
    import torch

    from apinet import load_model
    from app import resources

    at = _app().run()
    _ok(at)
    gallery, ckpt, *_ = _found(env, at)
    model, _ = load_model(ckpt.path)
    from apinet.data import Preprocess, load_image
    from apinet.pair_ranking import mine_and_rank

    pre = Preprocess.from_card(load_model(ckpt.path)[1])
    with torch.no_grad():
        bank = model.eval().pool_features(model.forward_features(
            torch.stack([pre(load_image(i.data)) for i in gallery.items]))).numpy()
    ranked = mine_and_rank(model, bank, [i.label for i in gallery.items])
    ids = lambda pair: ("g:" + gallery.items[pair[0]].id, "g:" + gallery.items[pair[1]].id)  # noqa: E731
    assert (at.session_state.a, at.session_state.b) == ids(ranked.strongest("inter", "logit_gap"))
    assert gallery.get(at.session_state.a[2:]).label != gallery.get(at.session_state.b[2:]).label
    cached = resources.gallery_pairs(ckpt.path, ckpt.sha256, env["gallery"].as_posix(), gallery.key)
    np.testing.assert_allclose(cached.strength.logit_gap, ranked.strength.logit_gap, rtol=1e-4, atol=1e-6)

    at.button(key="btn_strong_intra").click().run()
    _ok(at)
    assert (at.session_state.a, at.session_state.b) == ids(ranked.strongest("intra", "logit_gap"))
    assert any("strongest intra pair by A's logit gap" in i.value for i in at.info)
    at.selectbox(key="strength_by").set_value("gate_gap").run()
    at.button(key="btn_strong_inter").click().run()
    _ok(at)
    assert (at.session_state.a, at.session_state.b) == ids(ranked.strongest("inter", "gate_gap"))


def test_gate_axes_zoom_to_the_data_with_the_full_frame_one_click_away(env):
    from apinet.explain.facts import pair_facts
    from app.tabs.gates import GATE_RANGE, gate_zoom_range

    at = _open(_app(a=SIBLINGS[0], b=SIBLINGS[1]).run(), "Mutual & gates")
    e = _expl(env, at)
    gates, scatter = (json.loads(c.proto.spec) for c in at.get("plotly_chart")[:2])
    zoom = list(gate_zoom_range(e.gate1, e.gate2))
    assert gates["layout"]["yaxis"]["range"] == pytest.approx(zoom)
    assert scatter["layout"]["xaxis"]["range"] == pytest.approx(zoom)
    for fig, axes in ((gates, ["yaxis.range"]), (scatter, ["xaxis.range", "yaxis.range"])):
        buttons = fig["layout"]["updatemenus"][0]["buttons"]
        assert [b["label"] for b in buttons] == ["Zoom to the gates", "Full 0–1"]
        assert sorted(buttons[1]["args"][0]) == axes and buttons[1]["args"][0][axes[0]] == list(GATE_RANGE)
    facts = pair_facts(e)
    captions = " ".join(c.value for c in at.caption)
    assert ("The cluster at g = 0.5" in captions) == facts.any_half
    assert ("tie at the top gate" in captions) == facts.any_tied
