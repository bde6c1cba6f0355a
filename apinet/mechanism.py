"""Is a trained API-Net's pairwise interaction active? Statistics over a whole split.

The score-ranking loss asks each image's own gate to raise its true-class probability more than its
partner's gate does: p_self(c) > p_other(c). These statistics check that on held-out images paired as
in training (each image with its nearest same-class "intra" and nearest other-class "inter" partner
by squared Euclidean distance of pooled features, :func:`apinet.pairs.mine_pairs`), and describe the
gates and the top-k gated channels the paper's figure shows:

* ``self_wins`` / ``mean_difference``: share of images with p_self > p_other and mean p_self - p_other;
* ``saturated``: share of images whose p_self and p_other are both above 0.999 (nothing left to rank);
* ``gate_open`` / ``gate_closed``: share of gate entries above 0.999 / below 0.001;
* ``top_map_correlation``: mean pairwise Pearson correlation of the top-k gated channels' maps (ranked
  as :func:`apinet.explain.gate_topk_channels` ranks them): 1 means the k maps are one blob.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from .pairs import mine_pairs

__all__ = ["InteractionStats", "PairKindStats", "collect_features", "interaction_statistics", "pair_kind_stats"]


@dataclass(frozen=True)
class PairKindStats:
    pairs: int
    self_wins: float  # share of pairs with p_self(c) > p_other(c), c = image 1's true class
    mean_difference: float  # mean of p_self(c) - p_other(c)
    saturated: float  # share of pairs with both probabilities above 0.999
    mean_p_self: float
    mean_p_other: float


@dataclass(frozen=True)
class InteractionStats:
    images: int
    intra: PairKindStats
    inter: PairKindStats
    gate_open: float  # share of gate entries > 0.999 (over both pair kinds)
    gate_closed: float  # share of gate entries < 0.001
    top_map_correlation: float  # mean pairwise Pearson correlation of the top-k gated channels' maps
    k: int

    def to_dict(self) -> dict:
        return asdict(self)


def collect_features(model: torch.nn.Module, loader) -> tuple[Tensor, Tensor, Tensor]:
    """Pooled features ``[N, D]`` (float32), maps before pooling ``[N, D, h, w]`` (float16, to keep a
    whole split in memory) and labels ``[N]`` of every image of ``loader``."""
    from .features import iterate_features

    pooled, maps, labels = [], [], []
    for batch in iterate_features(model, loader):
        pooled.append(batch.pooled.float().cpu())
        maps.append(batch.maps.half().cpu())
        labels.append(batch.labels)
    return torch.cat(pooled), torch.cat(maps), torch.cat(labels)


def pair_kind_stats(p_self: Tensor, p_other: Tensor) -> PairKindStats:
    """Statistics of one kind of pair from its true-class probabilities ``[N]`` through each gate."""
    diff = p_self - p_other
    return PairKindStats(
        pairs=int(diff.numel()),
        self_wins=float((diff > 0).float().mean()),
        mean_difference=float(diff.mean()),
        saturated=float(((p_self > 0.999) & (p_other > 0.999)).float().mean()),
        mean_p_self=float(p_self.mean()),
        mean_p_other=float(p_other.mean()),
    )


def _mean_map_correlation(maps: Tensor) -> float:
    """Mean off-diagonal Pearson correlation of ``maps [k, h, w]``; constant maps are left out."""
    flat = maps.double().flatten(1)
    flat = flat - flat.mean(1, keepdim=True)
    norm = flat.norm(dim=1)
    keep = norm > 1e-12
    if int(keep.sum()) < 2:
        return float("nan")
    unit = flat[keep] / norm[keep, None]
    corr = unit @ unit.T
    n = corr.shape[0]
    return float((corr.sum() - corr.diagonal().sum()) / (n * (n - 1)))


@torch.no_grad()
def interaction_statistics(model: torch.nn.Module, pooled: Tensor, maps: Tensor, labels: Tensor, *,
                           k: int = 5) -> InteractionStats:
    """The statistics above for an API-Net in eval mode, from :func:`collect_features`' output."""
    from .explain import gate_topk_channels

    if model.training:
        raise ValueError("interaction statistics need the model in eval mode (dropout off)")
    device = next(model.parameters()).device
    x = pooled.to(device)
    labels = labels.to(device)
    intra, inter = mine_pairs(x, labels)
    kinds, gates = {}, []
    for name, partner in (("intra", intra), ("inter", inter)):
        out = model.interact(x, x[partner])
        p_self = out.logits1_self.softmax(1).gather(1, labels[:, None])[:, 0]
        p_other = out.logits1_other.softmax(1).gather(1, labels[:, None])[:, 0]
        kinds[name] = pair_kind_stats(p_self.cpu(), p_other.cpu())
        gates.append(out.gate1.cpu())
        if name == "intra":
            logit = (out.mutual * x).cpu().numpy()  # z = x_m * x1, the ranking without sigmoid ties
            gate = out.gate1.cpu().numpy()
    g = torch.cat(gates)
    correlations = []
    for i in range(x.shape[0]):
        top, _ = gate_topk_channels(gate[i], k, gate_logit=logit[i])
        correlations.append(_mean_map_correlation(maps[i, torch.as_tensor(top)]))
    return InteractionStats(
        images=int(x.shape[0]), intra=kinds["intra"], inter=kinds["inter"],
        gate_open=float((g > 0.999).float().mean()), gate_closed=float((g < 0.001).float().mean()),
        top_map_correlation=float(np.nanmean(correlations)), k=k,
    )


# --- mechanism strength of individual pairs (issue #22: find pairs where the mechanism shows) ------

__all__ += ["PAIR_STRENGTH_MEASURES", "PairStrength", "pair_strength", "rank_pairs"]

#: The measures :func:`rank_pairs` can rank by (fields of :class:`PairStrength`).
PAIR_STRENGTH_MEASURES = ("gate_gap", "logit_gap", "self_minus_other")


@dataclass(frozen=True)
class PairStrength:
    """How visibly the interaction acts on each of N pairs (x1[n], x2[n]); NumPy arrays ``[N]``."""

    gate_gap: np.ndarray  # mean over channels of |g1 - g2|
    logit_gap: np.ndarray  # logit_self(c1) - logit_other(c1) of image 1 (pair head, eval mode)
    self_minus_other: np.ndarray  # p_self(c1) - p_other(c1)

    def __len__(self) -> int:
        return int(self.gate_gap.shape[0])


@torch.no_grad()
def pair_strength(model: torch.nn.Module, x1: Tensor, x2: Tensor, labels1: Tensor, *,
                  batch_size: int = 1024) -> PairStrength:
    """Mechanism strength of N pairs from pooled features ``x1, x2: [N, D]``; ``labels1 [N]`` is the
    class c1 image 1's scores are read at (its true or predicted class). The model must be in eval
    mode (dropout off), as for :func:`interaction_statistics`."""
    if model.training:
        raise ValueError("pair strength needs the model in eval mode (dropout off)")
    if x1.shape != x2.shape or x1.ndim != 2:
        raise ValueError(f"x1 and x2 must both be [N, D], got {tuple(x1.shape)} and {tuple(x2.shape)}")
    labels1 = torch.as_tensor(labels1).long().reshape(-1)
    if labels1.numel() != x1.shape[0]:
        raise ValueError(f"{labels1.numel()} labels for {x1.shape[0]} pairs")
    device = next(model.parameters()).device
    gaps, logit_gaps, diffs = [], [], []
    for start in range(0, x1.shape[0], batch_size):
        a = x1[start:start + batch_size].to(device, torch.float32)
        b = x2[start:start + batch_size].to(device, torch.float32)
        c = labels1[start:start + batch_size].to(device)[:, None]
        out = model.interact(a, b)
        gaps.append((out.gate1 - out.gate2).abs().mean(1))
        logit_gaps.append((out.logits1_self.gather(1, c) - out.logits1_other.gather(1, c))[:, 0])
        diffs.append((out.logits1_self.softmax(1).gather(1, c) - out.logits1_other.softmax(1).gather(1, c))[:, 0])

    def cat(parts: list[Tensor]) -> np.ndarray:
        return (torch.cat(parts) if parts else torch.zeros(0)).double().cpu().numpy()

    return PairStrength(gate_gap=cat(gaps), logit_gap=cat(logit_gaps), self_minus_other=cat(diffs))


def rank_pairs(strength: PairStrength, by: str = "gate_gap") -> np.ndarray:
    """Indices of the pairs, strongest first by ``by`` (one of :data:`PAIR_STRENGTH_MEASURES`; larger
    is stronger, so a negative logit gap ranks last); ties keep the lower index first."""
    if by not in PAIR_STRENGTH_MEASURES:
        raise ValueError(f"unknown pair-strength measure {by!r}; expected one of {list(PAIR_STRENGTH_MEASURES)}")
    values = np.asarray(getattr(strength, by), dtype=np.float64)
    return np.argsort(-values, kind="stable").astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Gate activity (issue #22): do the gates act, and where does the effect show?
# --------------------------------------------------------------------------------------------------
#
# Each image is image 1 of two pairs, as in training: with its nearest same-class (intra) and nearest
# other-class (inter) image by pooled features. For each pair kind: how far the gates move from 0.5,
# how much an image's own gate differs from its partner's, the true-class probability and logit
# through each gate (p_self / p_other, logit_self / logit_other), the ranking-loss term
# max(0, p_other - p_self + margin) and whether the margin is met, and the first-order account of
# the gate difference, g1 - g2 ~= sigmoid'(z_mid) * x_m * (x1 - x2) with z_mid = x_m * (x1 + x2) / 2:
# partners with near-identical features (intra pairs) get near-identical gates.

__all__ += ["GateActivity", "PairKindActivity", "gate_activity", "pair_kind_activity"]


@dataclass(frozen=True)
class PairKindActivity:
    """Gate activity of one kind of pair (``pairs`` = images, each image 1 of one such pair)."""

    pairs: int
    gate_std: float  # mean over images of the std of the image's own gate vector over channels (ddof 0)
    gate_gap: float  # mean |g1 - g2| over images and channels
    gate_far: float  # share of the image's own gate entries with |g1 - 0.5| > 0.1
    self_wins: float  # share with p_self(c) > p_other(c), c = image 1's true class
    mean_difference: float  # mean p_self(c) - p_other(c)
    logit_wins: float  # share with logit_self(c) > logit_other(c)
    logit_gap: float  # mean logit_self(c) - logit_other(c)
    rank_loss: float  # mean max(0, p_other(c) - p_self(c) + margin)
    margin_met: float  # share with p_self(c) - p_other(c) >= margin (the hinge is 0)
    feature_gap: float  # mean ||x1 - x2|| / ||x1||: how different the partners' pooled features are
    first_order_error: float  # ||(g1 - g2) - sigmoid'(z_mid) x_m (x1 - x2)|| / ||g1 - g2||, over all entries


@dataclass(frozen=True)
class GateActivity:
    """:func:`gate_activity`'s result; the overall gate figures average both pair kinds."""

    images: int
    margin: float
    gate_std: float
    gate_gap: float
    gate_far: float
    test_path_top1: float  # accuracy of fc(x) on the same pooled features (the paper's test path)
    intra: PairKindActivity
    inter: PairKindActivity

    def to_dict(self) -> dict:
        return asdict(self)


def pair_kind_activity(x1: Tensor, x2: Tensor, mutual: Tensor, gate1: Tensor, gate2: Tensor, logits_self: Tensor,
                       logits_other: Tensor, labels: Tensor, *, margin: float = 0.05) -> PairKindActivity:
    """:class:`PairKindActivity` from one kind's pair outputs (rows = pairs; image 1 is the image)."""
    rows = torch.arange(labels.numel(), device=labels.device)
    p_self = logits_self.double().softmax(1)[rows, labels]
    p_other = logits_other.double().softmax(1)[rows, labels]
    l_self = logits_self.double()[rows, labels]
    l_other = logits_other.double()[rows, labels]
    diff, gap = p_self - p_other, l_self - l_other
    g1, g2 = gate1.double(), gate2.double()
    x1, x2, m = x1.double(), x2.double(), mutual.double()
    s = torch.sigmoid(m * (x1 + x2) / 2)
    predicted = s * (1 - s) * m * (x1 - x2)
    actual = g1 - g2
    return PairKindActivity(
        pairs=int(labels.numel()),
        gate_std=float(g1.std(dim=1, correction=0).mean()),
        gate_gap=float(actual.abs().mean()),
        gate_far=float(((g1 - 0.5).abs() > 0.1).double().mean()),
        self_wins=float((diff > 0).double().mean()),
        mean_difference=float(diff.mean()),
        logit_wins=float((gap > 0).double().mean()),
        logit_gap=float(gap.mean()),
        rank_loss=float(torch.relu(-diff + margin).mean()),
        margin_met=float((diff >= margin).double().mean()),
        feature_gap=float(((x1 - x2).norm(dim=1) / x1.norm(dim=1).clamp_min(1e-12)).mean()),
        first_order_error=float((actual - predicted).norm() / actual.norm().clamp_min(1e-300)),
    )


@torch.no_grad()
def gate_activity(model: torch.nn.Module, pooled: Tensor, labels: Tensor, *, margin: float = 0.05) -> GateActivity:
    """Gate activity of an API-Net over pooled features ``[N, D]`` with ``labels [N]``, each image
    paired as in training (:func:`apinet.pairs.mine_pairs`). Dropout is off for the measurement
    (the model's train / eval mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x = pooled.to(device).float()
        y = labels.to(device).long()
        intra, inter = mine_pairs(x, y)
        kinds = {}
        for name, partner in (("intra", intra), ("inter", inter)):
            out = model.interact(x, x[partner])
            kinds[name] = pair_kind_activity(x, x[partner], out.mutual, out.gate1, out.gate2, out.logits1_self,
                                             out.logits1_other, y, margin=margin)
        top1 = float((model.forward_head(x).argmax(1) == y).double().mean())
    finally:
        model.train(was_training)
    a, e = kinds["intra"], kinds["inter"]
    return GateActivity(
        images=int(y.numel()), margin=margin,
        gate_std=(a.gate_std + e.gate_std) / 2, gate_gap=(a.gate_gap + e.gate_gap) / 2,
        gate_far=(a.gate_far + e.gate_far) / 2, test_path_top1=top1, intra=a, inter=e,
    )
