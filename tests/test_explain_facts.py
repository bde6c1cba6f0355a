"""apinet.explain.facts: the conditions the app's captions depend on, each tested both ways."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from apinet.explain.facts import first_order, pair_facts


def _expl(g1, g2, x1=None, x2=None, xm=None, p=(0.6, 0.5, 0.7, 0.7), targets=(0, 1)):
    d = len(g1)
    x1 = np.ones(d, np.float32) if x1 is None else np.asarray(x1, np.float32)
    x2 = np.ones(d, np.float32) if x2 is None else np.asarray(x2, np.float32)
    xm = np.ones(d, np.float32) if xm is None else np.asarray(xm, np.float32)
    logits = {"1_self": np.array([2.0, 0.0]), "1_other": np.array([1.5, 0.0]),
              "2_self": np.array([0.0, -1.0]), "2_other": np.array([0.0, -0.25])}
    terms = [max(0.0, p[1] - p[0] + 0.05), max(0.0, p[3] - p[2] + 0.05)]
    return SimpleNamespace(gate1=np.asarray(g1, np.float32), gate2=np.asarray(g2, np.float32), features1=x1,
                           features2=x2, mutual=xm, logits=logits, targets=targets, p_self1=p[0], p_other1=p[1],
                           p_self2=p[2], p_other2=p[3], rank_term1=terms[0], rank_term2=terms[1], rank_margin=0.05)


def test_logit_gap_and_margin():
    f = pair_facts(_expl([0.2, 0.9], [0.3, 0.8]))
    assert f.image1.logit_gap == 0.5 and f.image2.logit_gap == -0.75
    assert f.image1.score_gap == pytest.approx(0.1) and f.image1.margin_met and f.image1.rank_term == 0.0
    assert not f.image2.margin_met and f.image2.rank_term == pytest.approx(0.05)
    assert not f.intra and pair_facts(_expl([0.2], [0.3], targets=(1, 1))).intra


def test_saturation_only_when_both_scores_are_near_one():
    assert pair_facts(_expl([0.2], [0.3], p=(0.9995, 0.9992, 0.5, 0.5))).any_saturated
    f = pair_facts(_expl([0.2], [0.3], p=(0.9995, 0.99, 0.5, 0.5)))
    assert not f.image1.scores_saturated and not f.any_saturated


def test_ties_at_one_and_the_half_cluster_only_when_present():
    f = pair_facts(_expl([1.0, 1.0, 0.3], [0.5, 0.2, 0.5], x2=[1.0, 1.0, 0.0]))
    assert f.image1.gates_at_one == 2 and f.image1.top_tied == 2 and f.any_tied
    assert f.image2.half_gates == 2 and f.image2.half_gates_zero_x == 1 and f.any_half
    g = pair_facts(_expl([0.9, 0.8, 0.3], [0.6, 0.2, 0.4]))
    assert not g.any_tied and not g.any_half and g.image1.top_tied == 1 and g.image1.gates_at_one == 0


def test_first_order_relation_predicts_the_gate_difference():
    rng = np.random.default_rng(0)
    x1 = rng.uniform(0, 2, 256)
    x2 = x1 + rng.normal(0, 1e-3, 256)  # near-identical partner
    xm = rng.normal(0, 1, 256)
    g1, g2 = (1 / (1 + np.exp(-xm * x))for x in (x1, x2))
    fo = first_order(x1, x2, xm, g1, g2)
    assert fo.mean_abs_gate_diff == pytest.approx(fo.mean_abs_first_order, rel=1e-3)
    assert fo.mean_abs_feature_diff == pytest.approx(np.abs(x1 - x2).mean())
    assert 0 < fo.mean_slope <= 0.25 and fo.relative_feature_diff < 1e-2
    same = first_order(x1, x1, xm, g1, g1)
    assert same.mean_abs_gate_diff == 0.0 and same.mean_abs_first_order == 0.0
