"""apinet.pair_ranking: mined pairs of a collection, ranked by mechanism strength."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apinet import APINet, mine_pairs
from apinet.mechanism import pair_strength
from apinet.pair_ranking import mine_and_rank


@torch.no_grad()
def test_pairs_are_the_paper_pairs_and_the_strongest_is_the_argmax():
    torch.manual_seed(0)
    model = APINet("resnet18", num_classes=3, dropout=0.0).eval()
    x = torch.rand(6, 512) * 3
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    mined = mine_and_rank(model, x.numpy(), labels.numpy())
    intra, inter = mine_pairs(x, labels)
    assert len(mined) == 12 and mined.intra.tolist() == [True] * 6 + [False] * 6
    assert mined.first.tolist() == list(range(6)) * 2
    assert mined.second.tolist() == intra.tolist() + inter.tolist()
    direct = pair_strength(model, x[mined.first], x[mined.second], labels[mined.first])
    np.testing.assert_allclose(mined.strength.logit_gap, direct.logit_gap)
    for kind, rows in (("intra", slice(0, 6)), ("inter", slice(6, 12))):
        for by in ("gate_gap", "logit_gap", "self_minus_other"):
            best = 6 * (kind == "inter") + int(np.argmax(getattr(direct, by)[rows]))
            assert mined.strongest(kind, by) == (int(mined.first[best]), int(mined.second[best]))
            assert mined.ranked(kind, by)[0] == best


@torch.no_grad()
def test_lonely_classes_and_one_class():
    model = APINet("resnet18", num_classes=3, dropout=0.0).eval()
    x = torch.rand(3, 512)
    mined = mine_and_rank(model, x, [0, 0, 1])  # class 1 has one image: no intra pair for it
    assert mined.intra.sum() == 2 and (~mined.intra).sum() == 3
    one = mine_and_rank(model, x, [2, 2, 2])
    assert one.strongest("inter") is None and one.strongest("intra") is not None
    assert mine_and_rank(model, x[:1], [0]).strongest("intra") is None
    with pytest.raises(ValueError, match="kind must be"):
        one.ranked("both")
