"""API-Net's objective: cross-entropy on the four interaction logits + score-ranking regularisation.

    L = L_ce + lambda * L_rk,
    L_rk = max(0, p_i^other(c_i) - p_i^self(c_i) + margin),   i in {1, 2}

where p are softmax scores of the true class c_i.  As in the official training script, both terms are
means (over the 4 x P logits and over the 2 x P score pairs of P pairs); the paper writes sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LossTerms", "apinet_loss", "score_ranking_loss"]


@dataclass
class LossTerms:
    total: Tensor  # scalar, ce + rank_weight * rank
    ce: Tensor  # scalar, cross-entropy averaged over all four logits of every pair
    rank: Tensor  # scalar, score-ranking hinge averaged over both images of every pair


def score_ranking_loss(logits_self: Tensor, logits_other: Tensor, labels: Tensor, margin: float = 0.05) -> Tensor:
    """Mean of ``max(0, p_other(c) - p_self(c) + margin)`` over rows, p = softmax scores."""
    rows = torch.arange(labels.numel(), device=labels.device)
    p_self = logits_self.float().softmax(dim=1)[rows, labels]
    p_other = logits_other.float().softmax(dim=1)[rows, labels]
    return F.relu(p_other - p_self + margin).mean()


def apinet_loss(
    logits1_self: Tensor,
    logits1_other: Tensor,
    logits2_self: Tensor,
    logits2_other: Tensor,
    labels1: Tensor,
    labels2: Tensor,
    *,
    margin: float = 0.05,
    rank_weight: float = 1.0,
) -> LossTerms:
    """Total loss and each term for P pairs: logits ``[P, C]``, labels ``[P]`` (paper: margin 0.05, weight 1)."""
    logits = torch.cat([logits1_self, logits1_other, logits2_self, logits2_other]).float()
    targets = torch.cat([labels1, labels1, labels2, labels2])
    ce = F.cross_entropy(logits, targets)
    rank = score_ranking_loss(
        torch.cat([logits1_self, logits2_self]),
        torch.cat([logits1_other, logits2_other]),
        torch.cat([labels1, labels2]),
        margin,
    )
    return LossTerms(total=ce + rank_weight * rank, ce=ce, rank=rank)
