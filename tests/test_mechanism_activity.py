"""apinet.mechanism.gate_activity (issue #22) against a direct, loop-by-loop computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from apinet import APINet
from apinet.mechanism import gate_activity, pair_kind_activity


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def _direct(model, pooled, labels, partner, margin):
    """Every figure of one pair kind, computed image by image in float64 NumPy from the weights."""
    w1, b1 = model.mutual[0].weight.double().numpy(), model.mutual[0].bias.double().numpy()
    w2, b2 = model.mutual[2].weight.double().numpy(), model.mutual[2].bias.double().numpy()
    wf, bf = model.fc.weight.double().numpy(), model.fc.bias.double().numpy()
    x = pooled.double().numpy()
    rows = []
    for i, j in enumerate(partner.tolist()):
        x1, x2, c = x[i], x[j], int(labels[i])
        m = w2 @ (w1 @ np.concatenate([x1, x2]) + b1) + b2
        g1, g2 = _sig(m * x1), _sig(m * x2)
        ls, lo = wf @ (x1 + x1 * g1) + bf, wf @ (x1 + x1 * g2) + bf
        ps, po = np.exp(ls[c] - ls.max()) / np.exp(ls - ls.max()).sum(), np.exp(lo[c] - lo.max()) / np.exp(lo - lo.max()).sum()
        s = _sig(m * (x1 + x2) / 2)
        rows.append(dict(std=g1.std(), gap=np.abs(g1 - g2).mean(), far=np.mean(np.abs(g1 - 0.5) > 0.1), ps=ps, po=po,
                         ls=ls[c], lo=lo[c], fgap=np.linalg.norm(x1 - x2) / np.linalg.norm(x1),
                         actual=g1 - g2, predicted=s * (1 - s) * m * (x1 - x2)))
    actual = np.concatenate([r["actual"] for r in rows])
    predicted = np.concatenate([r["predicted"] for r in rows])
    return {
        "pairs": len(rows),
        "gate_std": np.mean([r["std"] for r in rows]),
        "gate_gap": np.mean([r["gap"] for r in rows]),
        "gate_far": np.mean([r["far"] for r in rows]),
        "self_wins": np.mean([r["ps"] > r["po"] for r in rows]),
        "mean_difference": np.mean([r["ps"] - r["po"] for r in rows]),
        "logit_wins": np.mean([r["ls"] > r["lo"] for r in rows]),
        "logit_gap": np.mean([r["ls"] - r["lo"] for r in rows]),
        "rank_loss": np.mean([max(0.0, r["po"] - r["ps"] + margin) for r in rows]),
        "margin_met": np.mean([r["ps"] - r["po"] >= margin for r in rows]),
        "feature_gap": np.mean([r["fgap"] for r in rows]),
        "first_order_error": np.linalg.norm(actual - predicted) / np.linalg.norm(actual),
    }


@torch.no_grad()
def test_gate_activity_matches_a_direct_computation():
    torch.manual_seed(0)
    model = APINet("resnet18", num_classes=4)
    model.mutual[2].weight.mul_(40)  # gates far from 0.5, so every figure is non-trivial
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3, 3, 3])
    pooled = torch.rand(10, 512) * 2
    pooled[labels == 1] += 0.3
    model.train()
    stats = gate_activity(model, pooled, labels, margin=0.02)
    assert model.training  # mode restored; dropout was off for the measurement
    model.eval()
    from apinet import mine_pairs

    intra, inter = mine_pairs(pooled, labels)
    for kind, partner in ((stats.intra, intra), (stats.inter, inter)):
        expected = _direct(model, pooled, labels, partner, 0.02)
        for name, value in expected.items():
            assert getattr(kind, name) == pytest.approx(float(value), rel=1e-4, abs=1e-6), name
    assert 0.0 < stats.inter.gate_far < 1.0 and 0.0 < stats.inter.margin_met < 1.0  # the data exercises both sides
    assert stats.gate_std == pytest.approx((stats.intra.gate_std + stats.inter.gate_std) / 2)
    assert stats.gate_gap == pytest.approx((stats.intra.gate_gap + stats.inter.gate_gap) / 2)
    assert stats.images == 10 and stats.margin == 0.02
    assert stats.test_path_top1 == pytest.approx(float((model.fc(pooled).argmax(1) == labels).float().mean()))


def test_first_order_relation_is_exact_for_small_differences_and_known_values():
    """Two nearly identical partners: the first-order account of g1 - g2 is almost exact; and a
    hand-checked row: equal features give equal gates, zero gap and a hinge of exactly the margin."""
    x1 = torch.tensor([[1.0, 2.0, 0.5]])
    x2 = x1 + torch.tensor([[1e-3, -2e-3, 1e-3]])
    m = torch.tensor([[0.7, -1.2, 3.0]])
    g1, g2 = torch.sigmoid(m * x1), torch.sigmoid(m * x2)
    logits = torch.tensor([[2.0, 0.0]])
    a = pair_kind_activity(x1, x2, m, g1, g2, logits, logits, torch.tensor([0]), margin=0.05)
    assert a.first_order_error < 1e-3
    same = pair_kind_activity(x1, x1, m, g1, g1, logits, logits, torch.tensor([0]), margin=0.05)
    assert same.gate_gap == 0.0 and same.logit_gap == 0.0 and same.self_wins == 0.0 and same.margin_met == 0.0
    assert same.rank_loss == pytest.approx(0.05) and same.feature_gap == 0.0
    assert same.gate_std == pytest.approx(float(np.std(_sig(np.array([0.7, -2.4, 1.5])))))
    assert same.gate_far == pytest.approx(1.0)  # 0.668, 0.083, 0.818 are all farther than 0.1 from 0.5
    assert math.isfinite(same.first_order_error)
