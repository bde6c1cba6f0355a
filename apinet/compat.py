"""Which baselines an API-Net checkpoint can be compared with, decided from the model cards alone.

The app and :func:`apinet.explain.explain_pair` feed the baseline the very tensor API-Net gets (API-Net's
preprocessing) and set its maps beside API-Net's, class for class and position for position. A
baseline is **compatible** with an API-Net when

1. **the classes agree**: the same class names in the same order (a card without names has
   ``class 0``, ``class 1``, ...), so "class 12" means the same bird in both models;
2. **the input agrees**: the same input size and normalisation (mean, std) in the cards, so the tensor
   API-Net's preprocessing makes is the input the baseline was trained on;
3. **the map size agrees**: at that input size, the baseline's last feature maps (before global
   pooling) have API-Net's height and width. The side is :func:`feature_map_side`: ``ceil(S / s)``
   for an input of ``S`` px and output stride ``s`` (16 or 32, from the card's ``config``) for ResNets
   and EfficientNet-Lite (every stride-2 step rounds up), and ``floor(ceil(S / 4) / 8)`` for
   DenseNet-161 (its three transitions average-pool 2 x 2, rounding down).

The backbone itself may differ (a ResNet-50 baseline beside a ResNet-101 API-Net); the card says
which. :func:`baseline_mismatch` returns the first reason a pair fails, in one line, or ``None``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ModelInterface", "baseline_mismatch", "feature_map_side"]


def feature_map_side(backbone: str, output_stride: int, input_size: int) -> int:
    """Side of the last feature maps for a square ``input_size`` input (see the module docstring)."""
    from .backbones import BACKBONES

    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}")
    if BACKBONES[backbone].family == "densenet":
        return math.ceil(input_size / 4) // 8  # stem: conv and max-pool round up; transitions round down
    return math.ceil(input_size / output_stride)


@dataclass(frozen=True)
class ModelInterface:
    """What a model card promises about a model's inputs and outputs."""

    class_names: tuple[str, ...]
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    backbone: str
    output_stride: int

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> "ModelInterface":
        """Read it from a card (as :func:`apinet.load_card` returns it); ``ValueError`` if it cannot."""
        from .data.transforms import Preprocess

        config = card.get("config") or {}
        num_classes = int(card.get("num_classes", config.get("num_classes", 0)))
        names = card.get("class_names") or [f"class {i}" for i in range(num_classes)]
        with warnings.catch_warnings():  # a card without preprocessing gets the documented default
            warnings.simplefilter("ignore")
            pre = Preprocess.from_card(card)
        return cls(
            class_names=tuple(str(n) for n in names),
            input_size=int(pre.input_size),
            mean=tuple(round(float(v), 6) for v in pre.mean),
            std=tuple(round(float(v), 6) for v in pre.std),
            backbone=str(card.get("backbone", config.get("backbone", "?"))),
            output_stride=int(config.get("output_stride", 32)),
        )

    def map_side(self, input_size: int | None = None) -> int:
        """Side of the last feature maps at ``input_size`` (default: the card's own)."""
        return feature_map_side(self.backbone, self.output_stride, input_size or self.input_size)


def _names(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:2])
    return f"{len(names)} classes ({shown}{', ...' if len(names) > 2 else ''})"


def _classes_reason(apinet: ModelInterface, baseline: ModelInterface) -> str | None:
    a, b = apinet.class_names, baseline.class_names
    if a == b:
        return None
    if len(a) != len(b):
        return f"other classes: {_names(b)}, API-Net has {_names(a)}"
    if sorted(a) == sorted(b):
        first = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        return f"the same {len(a)} classes in another order (class {first} is {b[first]!r}, API-Net's {a[first]!r})"
    first = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    return f"other class names (class {first} is {b[first]!r}, API-Net's {a[first]!r})"


def baseline_mismatch(apinet: ModelInterface, baseline: ModelInterface) -> str | None:
    """Why ``baseline`` cannot be compared with ``apinet`` (one line), or ``None`` when it can."""
    reason = _classes_reason(apinet, baseline)
    if reason:
        return reason
    if baseline.input_size != apinet.input_size:
        return f"input {baseline.input_size} px, API-Net's is {apinet.input_size} px"
    if (baseline.mean, baseline.std) != (apinet.mean, apinet.std):
        return (f"inputs normalised with mean {list(baseline.mean)} / std {list(baseline.std)}, API-Net's with "
                f"mean {list(apinet.mean)} / std {list(apinet.std)}")
    try:
        side, own = baseline.map_side(apinet.input_size), apinet.map_side()
    except ValueError:  # a card naming a backbone this project cannot build
        return f"unknown backbone {baseline.backbone!r} (API-Net: {apinet.backbone!r})"
    if side != own:
        return (f"maps {side}×{side} ({baseline.backbone}, output stride {baseline.output_stride}), "
                f"API-Net's are {own}×{own} at {apinet.input_size} px")
    return None
