"""apinet.mechanism: interaction statistics checked against a direct computation."""

from __future__ import annotations

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
