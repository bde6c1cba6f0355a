"""Which pairs of a collection show the pairwise mechanism best (issue #22, item 4).

Every image is paired as in training (:func:`apinet.pairs.mine_pairs`: its nearest same-class "intra"
and nearest other-class "inter" partner by squared distance of pooled features), and each ordered pair
(image 1, image 2) is scored by :func:`apinet.mechanism.pair_strength` at image 1's class.
:meth:`MinedPairs.strongest` then names the strongest intra or inter pair by one measure. The app
ranks its gallery with it; the atlas can rank a dataset the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .mechanism import PAIR_STRENGTH_MEASURES, PairStrength, pair_strength, rank_pairs
from .pairs import squared_distances

__all__ = ["MinedPairs", "mine_and_rank"]


@dataclass(frozen=True)
class MinedPairs:
    first: np.ndarray  # [M] int64 index of image 1 of each pair
    second: np.ndarray  # [M] int64 index of image 2
    intra: np.ndarray  # [M] bool: same class
    strength: PairStrength  # [M] measures, at image 1's class

    def __len__(self) -> int:
        return int(self.first.shape[0])

    def ranked(self, kind: str | None = None, by: str = "logit_gap") -> np.ndarray:
        """Pair indices strongest first by ``by``, only ``kind`` ("intra" / "inter") when given."""
        if kind not in (None, "intra", "inter"):
            raise ValueError(f"kind must be 'intra', 'inter' or None, got {kind!r}")
        order = rank_pairs(self.strength, by)
        if kind is None:
            return order
        keep = self.intra[order] if kind == "intra" else ~self.intra[order]
        return order[keep]

    def strongest(self, kind: str, by: str = "logit_gap") -> tuple[int, int] | None:
        """``(image 1, image 2)`` of the strongest ``kind`` pair by ``by``; None when there is none."""
        order = self.ranked(kind, by)
        if order.size == 0:
            return None
        return int(self.first[order[0]]), int(self.second[order[0]])


def mine_and_rank(model: torch.nn.Module, pooled: torch.Tensor | np.ndarray, labels) -> MinedPairs:
    """Mine each image's intra and inter partner among ``pooled [N, D]`` and score the pairs.

    Unlike training's :func:`~apinet.pairs.mine_pairs` this accepts classes with one image (no
    intra pair for it) and a single class (no inter pairs). ``model`` must be in eval mode.
    """
    x = torch.as_tensor(np.ascontiguousarray(pooled, dtype=np.float32) if isinstance(pooled, np.ndarray)
                        else pooled).float()
    lab = torch.as_tensor(np.asarray(labels)).reshape(-1).long()
    if x.ndim != 2 or lab.numel() != x.shape[0]:
        raise ValueError(f"{lab.numel()} labels for pooled features of shape {tuple(x.shape)}")
    n = x.shape[0]
    firsts, seconds, intra = [], [], []
    if n >= 2:
        dist = squared_distances(x)
        same = lab[:, None] == lab[None, :]
        eye = torch.eye(n, dtype=torch.bool)
        inf = torch.tensor(float("inf"))
        for mask, is_intra in ((same & ~eye, True), (~same, False)):
            masked = torch.where(mask, dist, inf)
            partner = masked.argmin(1)
            ok = torch.isfinite(masked.min(1).values)
            idx = torch.nonzero(ok)[:, 0]
            firsts.append(idx)
            seconds.append(partner[idx])
            intra.append(torch.full((idx.numel(),), is_intra))
    first = torch.cat(firsts) if firsts else torch.zeros(0, dtype=torch.long)
    second = torch.cat(seconds) if seconds else torch.zeros(0, dtype=torch.long)
    strength = pair_strength(model, x[first], x[second], lab[first]) if first.numel() else PairStrength(
        *(np.zeros(0) for _ in PAIR_STRENGTH_MEASURES))
    return MinedPairs(first=first.numpy().astype(np.int64), second=second.numpy().astype(np.int64),
                      intra=(torch.cat(intra) if intra else torch.zeros(0, dtype=torch.bool)).numpy(),
                      strength=strength)
