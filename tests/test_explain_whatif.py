"""apinet.explain.whatif: interventions recomputed by the model, checked against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apinet import APINet
from apinet.explain.whatif import (HalfGates, Occlude, SetGate, SwapGates, WhatIfPair, cell_bounds,
                                   effective_interventions, format_interventions, occlude_cells,
                                   parse_interventions)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return APINet("resnet18", num_classes=5, output_stride=16).eval()


@pytest.fixture(scope="module")
def inputs():
    torch.manual_seed(1)
    return torch.randn(2, 3, 64, 64)


@pytest.fixture(scope="module")
def pair(model, inputs):
    return WhatIfPair(model, (1, 3), inputs=inputs)


@torch.no_grad()
def test_gate_override_reproduces_interact_exactly(model):
    x1, x2 = torch.rand(3, 512), torch.rand(3, 512)
    plain = model.interact(x1, x2)
    same = model.interact(x1, x2, gates=(plain.gate1, plain.gate2))
    for name in ("gate1", "gate2", "self1", "other1", "logits1_self", "logits1_other", "logits2_self",
                 "logits2_other"):
        assert torch.equal(getattr(plain, name), getattr(same, name)), name
    half = model.interact(x1, x2, gates=(torch.full((512,), 0.5), torch.full((512,), 0.5)))
    assert torch.equal(half.self1, x1 * 1.5) and torch.equal(half.logits1_self, half.logits1_other)


def test_untouched_pair_is_the_models(pair, model, inputs):
    with torch.no_grad():
        x = model.pool_features(model.forward_features(inputs))
        out = model.interact(x[0:1], x[1:2])
    result = pair.run([])
    assert result.trunk_passes == 0 and pair.grid == (4, 4)
    np.testing.assert_allclose(result.after.gate1, out.gate1[0].numpy(), rtol=0, atol=1e-6)
    assert result.after.logit(1, "self") == pytest.approx(float(out.logits1_self[0, 1]), abs=1e-5)
    assert result.after.logit(2, "other") == pytest.approx(float(out.logits2_other[0, 3]), abs=1e-5)
    assert result.delta_logit(1, "self") == 0.0 and result.delta_score(2, "other") == 0.0


def test_half_gates_make_self_and_other_equal(pair):
    r = pair.run([HalfGates()])
    assert r.trunk_passes == 0
    assert np.all(r.after.gate1 == 0.5) and np.all(r.after.gate2 == 0.5)
    for i in (1, 2):
        assert r.after.logit(i, "self") == r.after.logit(i, "other")
        assert r.after.logit_gap(i) == 0.0 and r.after.score_gap(i) == 0.0
        assert r.after.rank_term(i) == pytest.approx(0.05) and not r.after.margin_met(i)
        # test-path logits never see the gates
        assert r.after.logit(i, "test") == r.before.logit(i, "test")


def test_swap_exchanges_self_and_other(pair):
    r = pair.run([SwapGates()])
    b, a = r.before, r.after
    np.testing.assert_array_equal(a.gate1, b.gate2)
    np.testing.assert_array_equal(a.gate2, b.gate1)
    for i in (1, 2):
        assert a.logit(i, "self") == pytest.approx(b.logit(i, "other"), abs=1e-6)
        assert a.logit(i, "other") == pytest.approx(b.logit(i, "self"), abs=1e-6)
        assert a.logit_gap(i) == pytest.approx(-b.logit_gap(i), abs=1e-6)


def test_set_gate_changes_one_channel_by_its_weight(pair, model):
    c, k = 1, 7
    r = pair.run([SetGate(1, k, 1.0)])
    b, a = r.before, r.after
    assert a.gate1[k] == 1.0
    assert np.array_equal(np.delete(a.gate1, k), np.delete(b.gate1, k)) and np.array_equal(a.gate2, b.gate2)
    # logit_1^self(c) is linear in g1: it moves by W[c, k] * x1[k] * (1 - g1[k])
    w = float(model.fc.weight[c, k].detach())
    expected = w * float(b.features1[k]) * (1.0 - float(b.gate1[k]))
    assert r.delta_logit(1, "self") == pytest.approx(expected, abs=1e-5)
    assert r.delta_logit(1, "other") == 0.0  # image 1's other vector uses g2
    assert r.delta_logit(2, "other") == pytest.approx(w * 0 + float(model.fc.weight[3, k].detach()) * float(b.features2[k])
                                                      * (1.0 - float(b.gate1[k])), abs=1e-5)
    # gate edits apply in order: set, then swap
    r2 = pair.run([SetGate(1, k, 0.0), SwapGates()])
    assert r2.after.gate2[k] == 0.0
    with pytest.raises(ValueError, match="channel 999 outside the 512 channels"):
        pair.run([SetGate(1, 999, 0.0)])


def test_occlusion_runs_one_trunk_pass_and_matches_a_direct_computation(pair, model, inputs):
    empty = pair.run([Occlude(1, frozenset(), (4, 4))])
    assert empty.trunk_passes == 0 and empty.after.logits["1_self"].tolist() == empty.before.logits["1_self"].tolist()
    cells = frozenset({(0, 0), (2, 3)})
    r = pair.run([Occlude(2, cells, (4, 4))])
    assert r.trunk_passes == 1
    image = inputs[1].clone()
    image[:, 0:16, 0:16] = 0.0
    image[:, 32:48, 48:64] = 0.0
    with torch.no_grad():
        x2 = model.pool_features(model.forward_features(image[None]))
        x1 = model.pool_features(model.forward_features(inputs[0:1]))
        out = model.interact(x1, x2)
    assert r.after.logit(2, "self") == pytest.approx(float(out.logits2_self[0, 3]), abs=1e-4)
    assert r.after.logit(2, "test") == pytest.approx(float(model.fc(x2)[0, 3]), abs=1e-4)
    np.testing.assert_allclose(r.after.features1, r.before.features1)  # image 1 untouched, no pass
    assert r.occluded[0] is None and r.occluded[1].sum() == 2 and r.occluded[1][2, 3]
    again = pair.run([Occlude(2, cells, (4, 4)), HalfGates()])  # cached: no second pass
    assert again.trunk_passes == 0
    # the last occlusion of an image sets its hidden cells: a history whose last step shows all is untouched
    undone = pair.run([Occlude(2, cells, (4, 4)), Occlude(2, frozenset(), (4, 4))])
    assert undone.occluded == (None, None) and undone.after.logit(2, "self") == undone.before.logit(2, "self")
    with pytest.raises(ValueError, match="does not match"):
        pair.run([Occlude(1, frozenset({(0, 0)}), (14, 14))])


def test_occlude_cells_and_bounds():
    assert [cell_bounds(224, 14, i) for i in (0, 13)] == [(0, 16), (208, 224)]
    assert [cell_bounds(10, 3, i) for i in range(3)] == [(0, 3), (3, 7), (7, 10)]
    img = torch.ones(3, 8, 8)
    out = occlude_cells(img, [(1, 0)], (2, 2), fill=torch.tensor([-1.0, 0.0, 2.0]))
    assert out[0, 4:, :4].eq(-1).all() and out[2, 4:, :4].eq(2).all() and out[:, :4].eq(1).all()
    assert img.eq(1).all()  # a copy


def test_text_form_round_trips_and_refuses_garbage():
    items = (HalfGates(), SwapGates(), SetGate(2, 17, 0.0), SetGate(1, 3, 1.0),
             Occlude(1, frozenset({(0, 0), (13, 13), (5, 7)}), (14, 14)))
    text = format_interventions(items)
    assert text.startswith("half;swap;g2:17=0;g1:3=1;o1:14x14:")
    assert parse_interventions(text) == items
    assert parse_interventions("") == ()
    for bad in ("g3:1=0", "g1:1=2", "o1:2x2:1f", "nonsense", "o1:0x4:0"):
        with pytest.raises(ValueError, match="unreadable what-if intervention"):
            parse_interventions(bad)
    with pytest.raises(ValueError, match="outside the 2 x 2 grid"):
        Occlude(1, frozenset({(2, 0)}), (2, 2))


def test_effective_interventions_keep_each_images_last_occlusion_then_the_gate_edits():
    a1, a2 = Occlude(1, frozenset({(0, 0)}), (2, 2)), Occlude(1, frozenset({(0, 0), (1, 1)}), (2, 2))
    b_shown = Occlude(2, frozenset(), (2, 2))
    items = (a1, SwapGates(), a2, Occlude(2, frozenset({(1, 0)}), (2, 2)), SetGate(1, 3, 0.0), b_shown)
    assert effective_interventions(items) == (a2, SwapGates(), SetGate(1, 3, 0.0))
    assert effective_interventions(()) == ()
