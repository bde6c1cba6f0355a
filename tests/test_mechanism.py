"""apinet.mechanism: interaction statistics checked against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apinet import APINet, mine_pairs
from apinet.mechanism import _mean_map_correlation, interaction_statistics


def test_map_correlation_of_known_maps():
    a = torch.arange(9.0).reshape(3, 3)
    assert _mean_map_correlation(torch.stack([a, a, -a])) == pytest.approx(-1 / 3)
    assert _mean_map_correlation(torch.stack([a, 2 * a + 1])) == pytest.approx(1.0)
    # constant maps have no correlation and are left out
    assert _mean_map_correlation(torch.stack([a, torch.ones(3, 3), a])) == pytest.approx(1.0)


@torch.no_grad()
def test_statistics_match_a_direct_computation():
    torch.manual_seed(0)
    model = APINet("resnet18", num_classes=4, dropout=0.0).eval()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    maps = torch.rand(8, 512, 2, 2) * 3
    pooled = maps.mean((2, 3))
    stats = interaction_statistics(model, pooled, maps, labels, k=3)
    intra, inter = mine_pairs(pooled, labels)
    for kind, partner in ((stats.intra, intra), (stats.inter, inter)):
        out = model.interact(pooled, pooled[partner])
        p_self = out.logits1_self.softmax(1)[torch.arange(8), labels]
        p_other = out.logits1_other.softmax(1)[torch.arange(8), labels]
        assert kind.pairs == 8
        assert kind.self_wins == pytest.approx(float((p_self > p_other).float().mean()))
        assert kind.mean_difference == pytest.approx(float((p_self - p_other).mean()), abs=1e-7)
        assert kind.mean_p_self == pytest.approx(float(p_self.mean()))
    gates = torch.cat([model.interact(pooled, pooled[intra]).gate1, model.interact(pooled, pooled[inter]).gate1])
    assert stats.gate_closed == pytest.approx(float((gates < 0.001).float().mean()))
    assert stats.images == 8 and stats.k == 3 and -1.0 <= stats.top_map_correlation <= 1.0
    with pytest.raises(ValueError, match="eval mode"):
        interaction_statistics(model.train(), pooled, maps, labels)


@torch.no_grad()
def test_pair_strength_matches_a_direct_computation():
    from apinet.mechanism import PairStrength, pair_strength, rank_pairs

    torch.manual_seed(1)
    model = APINet("resnet18", num_classes=4, dropout=0.0).eval()
    x1, x2 = torch.rand(5, 512) * 3, torch.rand(5, 512) * 3
    labels = torch.tensor([0, 1, 2, 3, 1])
    s = pair_strength(model, x1, x2, labels, batch_size=2)  # batches of 2 + 2 + 1 give the same numbers
    xm = model.mutual(torch.cat([x1, x2], 1))
    g1, g2 = torch.sigmoid(xm * x1), torch.sigmoid(xm * x2)
    ls, lo = model.fc(x1 + x1 * g1), model.fc(x1 + x1 * g2)
    rows = torch.arange(5)
    assert len(s) == 5
    assert s.gate_gap == pytest.approx((g1 - g2).abs().mean(1).numpy(), abs=1e-7)
    assert s.logit_gap == pytest.approx((ls[rows, labels] - lo[rows, labels]).numpy(), abs=1e-6)
    assert s.self_minus_other == pytest.approx(
        (ls.softmax(1)[rows, labels] - lo.softmax(1)[rows, labels]).numpy(), abs=1e-7)
    # identical partners: the gates coincide, nothing to rank
    same = pair_strength(model, x1, x1, labels)
    assert same.gate_gap == pytest.approx(0.0) and same.logit_gap == pytest.approx(0.0, abs=1e-6)

    known = PairStrength(gate_gap=np.array([0.1, 0.3, 0.2, 0.3]), logit_gap=np.array([-1.0, 0.5, 2.0, 0.0]),
                         self_minus_other=np.array([0.0, 0.01, -0.02, 0.03]))
    assert rank_pairs(known).tolist() == [1, 3, 2, 0]  # ties: lower index first
    assert rank_pairs(known, "logit_gap").tolist() == [2, 1, 3, 0]
    assert rank_pairs(known, "self_minus_other").tolist() == [3, 1, 0, 2]
    with pytest.raises(ValueError, match="unknown pair-strength measure 'size'"):
        rank_pairs(known, "size")
    with pytest.raises(ValueError, match="eval mode"):
        pair_strength(model.train(), x1, x2, labels)
    with pytest.raises(ValueError, match="3 labels for 5 pairs"):
        pair_strength(model.eval(), x1, x2, labels[:3])
