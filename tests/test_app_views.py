"""The views' behaviour: the Mutual & gates charts and inspector, the opt-in baseline row, the A² hint.

Pure helpers (a click's selection to a channel, the g = 0.5 counts) are tested on synthetic inputs; the
views run through ``streamlit.testing.v1.AppTest`` on the tiny checkpoints of ``tests/app_checkpoints.py``
and are checked against the explanation the app draws.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from app.tabs.gates import GATE_RANGE, channel_from_selection, gate_zoom_range, half_gate_caption, half_gate_count
from tests.app_helpers import app_test, explanation, open_tab, send_label


# ---------------------------------------------------------------------------------------------- pure helpers

def test_channel_from_selection_reads_the_first_points_channel():
    point = {"curve_number": 1, "point_number": 3, "point_index": 3, "x": 0.57, "y": 0.6}
    # customdata as a list (the documented shape) and as Streamlit 1.67 sends a 2-D array's row
    assert channel_from_selection({"selection": {"points": [{**point, "customdata": [537, 0.57, 0.6]}]}}, 1280) == 537
    assert channel_from_selection({"selection": {"points": [{**point, "customdata": {"0": 12, "1": 0.5}}]}},
                                  512) == 12
    assert channel_from_selection({"selection": {"points": [{**point, "customdata": 7.0}]}}, 512) == 7
    # the first point with a valid channel wins; invalid ones are skipped
    points = [{**point, "customdata": [9999]}, {**point, "customdata": ["x"]}, {**point, "customdata": [4]}]
    assert channel_from_selection({"selection": {"points": points}}, 512) == 4
    for empty in (None, {}, {"selection": None}, {"selection": {"points": []}},
                  {"selection": {"points": [{**point}]}}, {"selection": {"points": [{**point, "customdata": []}]}},
                  {"selection": {"points": [{**point, "customdata": [-1]}]}}):
        assert channel_from_selection(empty, 512) is None, empty


def test_half_gate_caption_counts_zero_activations_and_float32_ties():
    xm = np.array([0.5, -1.0, 2.0, 1e-9, 3.0, 0.0], dtype=np.float32)
    x1 = np.array([0.0, 0.0, 1.0, 1.0, 2.0, 5.0], dtype=np.float32)  # two zero activations on A
    x2 = np.array([0.0, 1.0, 1.0, 1.0, 0.0, 5.0], dtype=np.float32)
    sig = lambda z: (1 / (1 + np.exp(-z.astype(np.float64)))).astype(np.float32)  # noqa: E731
    e = SimpleNamespace(mutual=xm, features1=x1, features2=x2, gate1=sig(xm * x1), gate2=sig(xm * x2))
    # g1 = 0.5 at 0, 1 (x = 0), 3 (z = 1e-9: σ rounds to 0.5 in float32) and 5 (x_m = 0)
    assert half_gate_count(e.gate1) == 4 and half_gate_count(e.gate2) == 4
    text = half_gate_caption(e)
    assert "4 channels have g₁ = 0.5 exactly: 3 because x = 0 on A, so z = x_m·x = 0" in text
    assert "; 1 because |z| is too small for float32" in text
    assert "4 channels have g₂ = 0.5 exactly: 3 because x = 0 on B" in text
    assert "3 on both, at (0.5, 0.5)" in text  # channels 0, 3, 5


# ------------------------------------------------------------------------------------------------- the views

_app, _open = app_test, open_tab


def _explanation(env, at):
    """The explanation of the app's current pair (gates do not depend on the baseline)."""
    return explanation(env, at, baseline=False)


def _arr(value) -> np.ndarray:
    """A Plotly JSON array: a list, or plotly 6's typed array {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        import base64

        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if isinstance(shape, str):
            shape = tuple(int(n) for n in shape.split(","))
        return data.reshape(shape) if shape else data
    return np.asarray(value)


@pytest.mark.slow
def test_gates_charts_pad_the_range_highlight_the_top_k_and_explain_the_half_gates(env):
    from app.theme import HIGHLIGHT

    at = _open(_app().run(), "Mutual & gates")
    e = _explanation(env, at)
    k = at.session_state.k
    assert at.radio(key="vec_order").value == "sorted by g₁"  # the readable order is the default
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == 2
    gates, scatter = charts
    # zoomed to the data; the full frame (padded so dots at 1 are not clipped) is the second button
    zoom = list(gate_zoom_range(e.gate1, e.gate2))
    assert gates["layout"]["yaxis"]["range"] == pytest.approx(zoom)
    assert scatter["layout"]["xaxis"]["range"] == scatter["layout"]["yaxis"]["range"] == pytest.approx(zoom)
    full = gates["layout"]["updatemenus"][0]["buttons"][1]
    assert full["label"] == "Full 0–1" and full["args"][0]["yaxis.range"] == list(GATE_RANGE) == [-0.02, 1.08]
    traces = {t["name"]: t for t in gates["data"]}
    # all channels as markers (no crossing lines), in g1's ranking; x_m in its own subplot
    assert traces["g₁ (A)"]["mode"] == "markers" and traces["mutual x_m"]["yaxis"] == "y2"
    assert np.allclose(_arr(traces["g₁ (A)"]["y"]), np.asarray(e.gate1, dtype=np.float64)[e.gate_order1])
    assert _arr(traces["g₁ (A)"]["customdata"])[:, 0].astype(int).tolist() == e.gate_order1.tolist()
    assert {int(t) for t in traces["top-k of g₁"]["text"]} == set(e.gate_order1[:k].tolist())
    assert {int(t) for t in traces["top-k of g₂"]["text"]} == set(e.gate_order2[:k].tolist())
    assert "z₁ = x_m·x₁" in traces["g₁ (A)"]["hovertemplate"]
    # z = x_m * x travels with every point (customdata[4], [5])
    row = _arr(traces["top-k of g₁"]["customdata"])[0]
    c = int(row[0])
    assert row[4] == pytest.approx(float(e.mutual[c]) * float(e.features1[c]), rel=1e-6)
    # the scatter's highlighted top-k: a separate trace in the highlight colour, legend above the plot
    top = {t["name"]: t for t in scatter["data"]}["top-k of g₁ or g₂"]
    assert top["marker"]["color"] == HIGHLIGHT
    assert {int(r[0]) for r in _arr(top["customdata"])} == set(e.gate_order1[:k].tolist()) | set(e.gate_order2[:k].tolist())
    assert scatter["layout"]["legend"]["y"] > 1 and gates["layout"]["legend"]["y"] > 1
    # the caption's count of g = 0.5 channels is the explanation's (shown only when the pair has some)
    n1, n2 = int(np.sum(e.gate1 == 0.5)), int(np.sum(e.gate2 == 0.5))
    captions = " ".join(c.value for c in at.caption)
    assert (f"{n1} channels have g₁ = 0.5 exactly" in captions) == (n1 + n2 > 0)
    assert (f"{n2} channels have g₂ = 0.5 exactly" in captions) == (n1 + n2 > 0)


@pytest.mark.slow
def test_inspector_shows_z_and_any_channel_and_the_channel_order_changes_the_chart(env):
    at = _open(_app().run(), "Mutual & gates")
    e = _explanation(env, at)
    outside = int(e.gate_order1[-1])  # the weakest channel: no maps kept for it
    at.session_state["channel"] = outside
    at.run()
    text = " ".join(m.value for m in at.markdown)
    z1 = float(e.mutual[outside]) * float(e.features1[outside])
    assert f"z₁ = x_m·x₁ = **{z1:.3f}**" in text
    # the tie note only for a gate that rounds to exactly 1 (the weakest channel's does not)
    tied = e.gate1[outside] == 1.0 or e.gate2[outside] == 1.0
    assert ("so z ranks it among the tied gates" in " ".join(c.value for c in at.caption)) == tied
    assert f"Rank {e.gate1.shape[0]} of {e.gate1.shape[0]} in g₁" in " ".join(c.value for c in at.caption)
    assert any(f"Channel {outside} is outside the top-10" in i.value for i in at.info)
    assert at.query_params["channel"] == str(outside)
    # a label the browser kept from another pair (other gate values) still names its channel
    second = int(e.gate_order1[1])
    send_label(at.selectbox(key="channel"), f"#{second}  (g₁ 0.12, g₂ 0.34)")
    at.run()
    assert at.session_state["channel"] == second and at.query_params["channel"] == str(second)
    at.radio(key="vec_order").set_value("channel index").run()
    gates = json.loads(at.get("plotly_chart")[0].proto.spec)
    traces = {t["name"]: t for t in gates["data"]}
    assert traces["top-k of g₁"]["mode"] == "markers+text"  # indices as labels only where they do not overlap
    assert _arr(traces["g₂ (B)"]["customdata"])[:, 0].astype(int).tolist() == list(range(len(e.gate1)))


@pytest.mark.slow
def test_baseline_at_apinet_indices_is_opt_in(env):
    from app.tabs.channels import BASELINE_AT_APINET_LABEL

    at = _open(_app().run(), "Top-k channels")
    heading = "Baseline · at API-Net's g₁ channel indices"
    assert heading not in " ".join(m.value for m in at.markdown)
    assert "Baseline · its own top-5 channels" in " ".join(m.value for m in at.markdown)
    toggle = at.toggle(key="ch_baseline_at_apinet")
    assert toggle.label == BASELINE_AT_APINET_LABEL and toggle.value is False
    n_images = len(at.get("image"))
    toggle.set_value(True).run()
    assert heading in " ".join(m.value for m in at.markdown)
    assert len(at.get("image")) == n_images + 2 * at.session_state.k  # one more row of A and B maps


@pytest.mark.slow
def test_large_maps_toggle_keeps_every_map(env):
    at = _open(_app().run(), "LTPA attention")
    images = [sub.caption for img in at.get("image") for sub in img.proto.imgs]
    at.toggle(key="large_maps").set_value(True).run()
    assert [sub.caption for img in at.get("image") for sub in img.proto.imgs] == images
    _open(at, "Top-k channels")
    assert at.toggle(key="large_maps").value is True  # one key for every map tab
    captions = [sub.caption for img in at.get("image") for sub in img.proto.imgs if sub.caption.startswith("#")]
    k = at.session_state.k
    assert len(captions) == 2 * 2 * k + 2 * k  # two gate sets and the baseline, A and B rows each


@pytest.mark.slow
def test_a2_tab_says_how_to_train_a_checkpoint_with_a2(env):
    at = _open(_app().run(), "A² maps")
    assert any("has no A² block" in i.value and "--a2" in i.value for i in at.info)
    code = " ".join(c.value for c in at.code)
    assert "python -m apinet train" in code and "--a2 layer4" in code and "--backbone resnet18" in code
