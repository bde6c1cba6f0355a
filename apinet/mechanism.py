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
