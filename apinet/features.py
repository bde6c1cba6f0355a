"""One loop over a loader's images: each batch's stage outputs, pooled features and labels.

Evaluation (:func:`apinet.train.evaluate_loader`), the k-NN reference (:func:`apinet.ood.pooled_features`)
and the mechanism statistics (:func:`apinet.mechanism.collect_features`) all read the test path this
way: ``forward_stages``, then global pooling of the last stage (the same maps ``forward_features``
returns).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["FeatureBatch", "iterate_features"]


@dataclass
class FeatureBatch:
    """The test path's intermediate results for one batch (on the model's device)."""

    stages: OrderedDict[str, Tensor]  # stage name -> [B, C_s, h_s, w_s]
    pooled: Tensor  # [B, D] globally pooled last stage
    labels: Tensor  # [B] as the loader gave them (CPU)

    @property
    def maps(self) -> Tensor:
        """The feature maps before pooling, ``[B, D, h, w]``."""
        return next(reversed(self.stages.values()))


def iterate_features(model: nn.Module, loader, *, autocast: Callable[[], AbstractContextManager] | None = None,
                     channels_last: bool = False) -> Iterator[FeatureBatch]:
    """Run ``model``'s trunk (``forward_stages``, else ``forward_features``) and pooling over every ``(images, labels)`` batch of ``loader`` without
    gradients (the model's train / eval mode is left as it is). ``autocast``: a context factory
    the forward runs in (e.g. ``Precision.autocast``); ``channels_last``: the images' memory format."""
    device = next(model.parameters()).device
    context = autocast or nullcontext
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), context():
            if hasattr(model, "forward_stages"):
                stages = model.forward_stages(images)
            else:  # any module with forward_features + pool_features (its maps as the one stage)
                stages = OrderedDict(features=model.forward_features(images))
            pooled = model.pool_features(next(reversed(stages.values())))
        yield FeatureBatch(stages, pooled, torch.as_tensor(labels))
