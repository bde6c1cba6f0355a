"""CE + score-ranking loss on known logits."""

from __future__ import annotations

import math

import pytest
import torch

from apinet import apinet_loss, score_ranking_loss


def test_loss_terms_on_known_logits():
    ln3 = math.log(3.0)
    # one pair, two classes, both images of class 0
    l1_self = torch.tensor([[0.0, 0.0]])  # p(0) = 0.5
    l1_other = torch.tensor([[ln3, 0.0]])  # p(0) = 0.75
    l2_self = torch.tensor([[ln3, 0.0]])  # p(0) = 0.75
    l2_other = torch.tensor([[0.0, 0.0]])  # p(0) = 0.5
    y = torch.tensor([0])
    terms = apinet_loss(l1_self, l1_other, l2_self, l2_other, y, y)
    ce = (-math.log(0.5) - math.log(0.75) - math.log(0.75) - math.log(0.5)) / 4
    # image 1: max(0, 0.75 - 0.5 + 0.05) = 0.30 ; image 2: max(0, 0.5 - 0.75 + 0.05) = 0
    rank = (0.30 + 0.0) / 2
    assert terms.ce.item() == pytest.approx(ce, abs=1e-6)
    assert terms.rank.item() == pytest.approx(rank, abs=1e-6)
    assert terms.total.item() == pytest.approx(ce + rank, abs=1e-6)
    weighted = apinet_loss(l1_self, l1_other, l2_self, l2_other, y, y, rank_weight=2.0, margin=0.1)
    assert weighted.rank.item() == pytest.approx((0.35 + 0.0) / 2, abs=1e-6)
    assert weighted.total.item() == pytest.approx(ce + 2 * 0.175, abs=1e-6)


def test_ranking_uses_the_true_class_of_each_row():
    logits_self = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    logits_other = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2])
    # self is confident in the true class: p_self = e^2 / (e^2 + 2) > 1/3 + margin -> zero loss
    assert score_ranking_loss(logits_self, logits_other, labels).item() == 0.0
    flipped = score_ranking_loss(logits_other, logits_self, labels).item()
    p = math.exp(2) / (math.exp(2) + 2)
    assert flipped == pytest.approx(p - 1 / 3 + 0.05, abs=1e-6)


def test_loss_is_differentiable_and_float32_under_half_logits():
    logits = [torch.randn(4, 5, dtype=torch.bfloat16, requires_grad=True) for _ in range(4)]
    y = torch.tensor([0, 1, 2, 3])
    terms = apinet_loss(*logits, y, y)
    assert terms.total.dtype == torch.float32
    terms.total.backward()
    assert all(t.grad is not None for t in logits)
