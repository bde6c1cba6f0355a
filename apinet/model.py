"""API-Net (Zhuang et al., AAAI 2020) and a baseline classifier on the same trunk.

Both models answer the same questions (timm style), so explanations never need hooks for the maps
they show:

* ``forward_features(images)`` -> feature maps before global pooling ``[B, D, h, w]``
* ``forward_stages(images)``   -> every trunk stage's maps (for LTPA at earlier stages)
* ``forward_head(pooled)``     -> logits ``[B, C]``
* ``forward(images)``          -> test-path logits ``[B, C]`` (no pairing at test time, as in the paper)

API-Net adds ``forward_pair`` (attentive pairwise interaction of two batches of images) and
``forward_train`` (mines the 2B intra / inter pairs of a batch and interacts them).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .backbones import BACKBONES, build_trunk
from .pairs import check_minable, mine_pairs

__all__ = ["APINet", "Baseline", "PairOutput", "TrainOutput", "build_model"]


@dataclass
class PairOutput:
    """Everything API-Net computes for B pairs (x1[b], x2[b])."""

    features1: Tensor  # [B, D] pooled features of image 1
    features2: Tensor  # [B, D] pooled features of image 2
    mutual: Tensor  # [B, D] x_m = f_m([x1, x2])
    gate1: Tensor  # [B, D] g1 = sigmoid(x_m * x1)
    gate2: Tensor  # [B, D] g2 = sigmoid(x_m * x2)
    self1: Tensor  # [B, D] x1 + x1 * g1
    other1: Tensor  # [B, D] x1 + x1 * g2
    self2: Tensor  # [B, D] x2 + x2 * g2
    other2: Tensor  # [B, D] x2 + x2 * g1
    logits1_self: Tensor  # [B, C]
    logits1_other: Tensor  # [B, C]
    logits2_self: Tensor  # [B, C]
    logits2_other: Tensor  # [B, C]


@dataclass
class TrainOutput:
    """A training forward of one batch of B images."""

    labels: Tensor  # [B] labels of the batch (on the model's device)
    logits: Tensor | None = None  # [B, C] plain classifier logits (baseline)
    pairs: PairOutput | None = None  # API-Net: 2B pairs, first the B intra pairs, then the B inter pairs
    labels1: Tensor | None = None  # [2B] labels of the first image of each pair
    labels2: Tensor | None = None  # [2B] labels of the second image of each pair
    intra_index: Tensor | None = None  # [B] nearest same-class partner of each image
    inter_index: Tensor | None = None  # [B] nearest other-class partner of each image
    ltpa: Any = None  # LTPAOutput of the trainable attention estimator, when the model has one
    extra: dict[str, Tensor] = field(default_factory=dict)


class _FineGrainedNet(nn.Module):
    """Trunk + adaptive global average pooling + linear classifier (+ optional LTPA / A^2)."""

    architecture = "base"

    def __init__(
        self,
        backbone: str = "resnet101",
        num_classes: int = 200,
        pretrained: bool = False,
        *,
        weights_path: str | Path | None = None,
        output_stride: int = 32,
        dilated: bool | None = None,
        dropout: float = 0.0,
        a2: dict | None = None,
        ltpa: dict | None = None,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.trunk = build_trunk(backbone, pretrained=pretrained, weights_path=weights_path,
                                 output_stride=output_stride, dilated=dilated)
        dim = self.trunk.out_channels
        self.feature_dim = dim
        self.num_classes = num_classes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)
        self._config: dict[str, Any] = {
            "architecture": self.architecture,
            "backbone": backbone,
            "num_classes": num_classes,
            "output_stride": output_stride,
            "dilated": self.trunk.dilated,
            "dropout": dropout,
            "a2": copy.deepcopy(a2),
            "ltpa": copy.deepcopy(ltpa),
        }
        if a2:
            from .attention import DoubleAttention

            a2 = dict(a2)
            for stage in a2.pop("stages"):
                if stage not in self.trunk.stage_channels:
                    raise ValueError(f"A^2 stage {stage!r} is not one of {list(self.trunk.stage_channels)}")
                self.trunk.inserts[stage] = DoubleAttention(self.trunk.stage_channels[stage], **a2)
        self.ltpa = None
        if ltpa:
            from .attention import LTPAEstimator

            ltpa = dict(ltpa)
            stages = ltpa.pop("stages")
            unknown = [s for s in stages if s not in self.trunk.stage_channels]
            if unknown:
                raise ValueError(f"LTPA stages {unknown} are not among {list(self.trunk.stage_channels)}")
            self.ltpa = LTPAEstimator(
                {s: self.trunk.stage_channels[s] for s in stages}, dim, num_classes, **ltpa
            )

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (``build_model(config)`` rebuilds the model)."""
        return copy.deepcopy(self._config)

    def forward_stages(self, images: Tensor):
        return self.trunk.forward_stages(images)

    def forward_features(self, images: Tensor) -> Tensor:
        """Feature maps before global pooling, ``[B, D, h, w]``."""
        return self.trunk(images)

    def pool_features(self, maps: Tensor) -> Tensor:
        """Global average pooling ``[B, D, h, w] -> [B, D]`` (adaptive: any input size, any batch)."""
        return torch.flatten(self.pool(maps), 1)

    def forward_head(self, pooled: Tensor) -> Tensor:
        return self.fc(self.drop(pooled))

    def forward(self, images: Tensor) -> Tensor:
        """Test-path logits ``[B, C]``: classifier on globally pooled features."""
        return self.forward_head(self.pool_features(self.forward_features(images)))

    def forward_ltpa(self, stages, pooled: Tensor):
        """The LTPA estimator's output (``.logits``, attention) on the ``forward_stages`` output and
        the pooled features, or ``None`` for a model without one."""
        if self.ltpa is None:
            return None
        return self.ltpa({s: stages[s] for s in self.ltpa.stages}, pooled)

    def _prepare_labels(self, labels: Tensor, device: torch.device) -> Tensor:
        labels = torch.as_tensor(labels)
        return labels.to(device, non_blocking=True).long()


class Baseline(_FineGrainedNet):
    """The plain fine-grained classifier API-Net is compared with: trunk + pooling + linear."""

    architecture = "baseline"

    def forward_train(self, images: Tensor, labels: Tensor) -> TrainOutput:
        stages = self.forward_stages(images)
        pooled = self.pool_features(next(reversed(stages.values())))
        labels = self._prepare_labels(labels, pooled.device)
        return TrainOutput(labels=labels, logits=self.forward_head(pooled), ltpa=self.forward_ltpa(stages, pooled))


class APINet(_FineGrainedNet):
    """Attentive Pairwise Interaction Network.

    x_m = f_m([x1, x2]) with f_m = Linear(2D, 512) -> Dropout -> Linear(512, D) (no activation, as
    in the official code); g_i = sigmoid(x_m * x_i); x_i^self = x_i + x_i * g_i,
    x_i^other = x_i + x_i * g_j; one shared classifier with dropout before it scores all four.
    """

    architecture = "apinet"

    def __init__(
        self,
        backbone: str = "resnet101",
        num_classes: int = 200,
        pretrained: bool = False,
        *,
        mutual_hidden: int = 512,
        dropout: float = 0.5,
        **kwargs: Any,
    ):
        super().__init__(backbone, num_classes, pretrained, dropout=dropout, **kwargs)
        dim = self.feature_dim
        self.mutual = nn.Sequential(
            nn.Linear(2 * dim, mutual_hidden), nn.Dropout(dropout), nn.Linear(mutual_hidden, dim)
        )
        self._config["mutual_hidden"] = mutual_hidden

    def forward(self, images: Tensor) -> Tensor:
        # The paper's test path: no pairing, no dropout-in-eval surprises, classifier on pooled features.
        return self.fc(self.pool_features(self.forward_features(images)))

    def interact(self, x1: Tensor, x2: Tensor, *, gates: tuple[Tensor, Tensor] | None = None) -> PairOutput:
        """Attentive pairwise interaction of pooled features ``x1, x2: [B, D]``.

        ``gates=(g1, g2)`` (each ``[B, D]``) replaces the gates the mutual vector would give (a
        what-if intervention, :mod:`apinet.explain.whatif`); the rest of the pair head is unchanged.
        """
        mutual = self.mutual(torch.cat([x1, x2], dim=1))
        if gates is None:
            gate1 = torch.sigmoid(mutual * x1)
            gate2 = torch.sigmoid(mutual * x2)
        else:
            gate1, gate2 = (g.to(x1.dtype).expand_as(x1) for g in gates)
        self1, other1 = x1 + x1 * gate1, x1 + x1 * gate2
        self2, other2 = x2 + x2 * gate2, x2 + x2 * gate1
        head = self.forward_head
        return PairOutput(
            features1=x1,
            features2=x2,
            mutual=mutual,
            gate1=gate1,
            gate2=gate2,
            self1=self1,
            other1=other1,
            self2=self2,
            other2=other2,
            logits1_self=head(self1),
            logits1_other=head(other1),
            logits2_self=head(self2),
            logits2_other=head(other2),
        )

    def forward_pair(self, images1: Tensor, images2: Tensor) -> PairOutput:
        """Interaction of two batches of images ``[B, 3, H, W]`` (image 1 of pair b is images1[b])."""
        if images1.shape[0] != images2.shape[0]:
            raise ValueError(f"forward_pair needs equal batch sizes, got {images1.shape[0]} and {images2.shape[0]}")
        if images1.shape == images2.shape:
            pooled = self.pool_features(self.forward_features(torch.cat([images1, images2])))
            x1, x2 = pooled.chunk(2)
        else:
            x1 = self.pool_features(self.forward_features(images1))
            x2 = self.pool_features(self.forward_features(images2))
        return self.interact(x1, x2)

    def forward_train(self, images: Tensor, labels: Tensor, *, gather: Any = None) -> TrainOutput:
        """Mine each image's intra and inter pair in the batch and interact all 2B pairs.

        ``labels`` should come as a CPU tensor (as a data loader yields them): they are validated
        there, so the step never waits on the device.  ``gather`` (multi-GPU training, see
        :mod:`apinet.distributed`) maps the local ``(pooled [B, D], labels [B])`` to the pooled
        features and labels of every rank plus the offset of this rank's rows in them; partners
        are then mined among all ranks' images, and the returned indices are global.
        """
        if labels.device.type == "cpu":
            check_minable(labels)
            checked = True
        else:
            checked = False
        stages = self.forward_stages(images)
        pooled = self.pool_features(next(reversed(stages.values())))
        labels = self._prepare_labels(labels, pooled.device)
        pool_all, labels_all, offset = (pooled, labels, 0) if gather is None else gather(pooled, labels)
        intra, inter = mine_pairs(pool_all.detach(), labels_all, check=not checked)
        local = slice(offset, offset + labels.numel())
        intra, inter = intra[local], inter[local]
        first = torch.arange(offset, offset + labels.numel(), device=labels.device).repeat(2)
        second = torch.cat([intra, inter])
        pairs = self.interact(pool_all[first], pool_all[second])
        return TrainOutput(
            labels=labels,
            pairs=pairs,
            labels1=labels_all[first],
            labels2=labels_all[second],
            intra_index=intra,
            inter_index=inter,
            ltpa=self.forward_ltpa(stages, pooled),
        )


_ARCHITECTURES: dict[str, type[_FineGrainedNet]] = {"apinet": APINet, "baseline": Baseline}


def build_model(config: dict[str, Any], **overrides: Any) -> _FineGrainedNet:
    """Rebuild a model from its :attr:`config` (as stored in a model card)."""
    config = {**copy.deepcopy(config), **overrides}
    if "dilated" not in config and BACKBONES.get(config.get("backbone"), None) is not None \
            and BACKBONES[config["backbone"]].family != "efficientnet":
        config["dilated"] = False  # cards written before dilation existed: output stride 16 dropped a stride
    arch = config.pop("architecture", None)
    if arch not in _ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {list(_ARCHITECTURES)}")
    return _ARCHITECTURES[arch](**config)
