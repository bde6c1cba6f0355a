"""One training step's objective: model + losses as one module (what DistributedDataParallel wraps)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import apinet_loss
from ..model import APINet

__all__ = ["TrainStep"]


class TrainStep(nn.Module):
    """Model + objective as one module, so DistributedDataParallel sees every parameter used.

    ``forward(images, labels)`` returns a dict of scalar tensors: ``total``, ``ce``, ``rank``
    (API-Net), ``ltpa`` (when the model has an LTPA estimator), ``acc`` and ``ltpa_acc``.
    """

    def __init__(self, model: nn.Module, *, margin: float, rank_weight: float, ltpa_weight: float, gather=None):
        super().__init__()
        self.model = model
        self.margin, self.rank_weight, self.ltpa_weight, self.gather = margin, rank_weight, ltpa_weight, gather

    def forward(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        model = self.model
        if isinstance(model, APINet):
            out = model.forward_train(images, labels, gather=self.gather)
            p = out.pairs
            terms = apinet_loss(
                p.logits1_self, p.logits1_other, p.logits2_self, p.logits2_other, out.labels1, out.labels2,
                margin=self.margin, rank_weight=self.rank_weight,
            )
            result = {"total": terms.total, "ce": terms.ce, "rank": terms.rank}
            batch = out.labels.numel()
            # the intra pairs' "self" logits of each image stand for its own prediction
            result["acc"] = (p.logits1_self[:batch].argmax(1) == out.labels).float().mean()
        else:
            out = model.forward_train(images, labels)
            ce = F.cross_entropy(out.logits.float(), out.labels)
            result = {"total": ce, "ce": ce, "acc": (out.logits.argmax(1) == out.labels).float().mean()}
        if out.ltpa is not None:
            ltpa_ce = F.cross_entropy(out.ltpa.logits.float(), out.labels)
            result["total"] = result["total"] + self.ltpa_weight * ltpa_ce
            result["ltpa"] = ltpa_ce
            result["ltpa_acc"] = (out.ltpa.logits.argmax(1) == out.labels).float().mean()
        return result
