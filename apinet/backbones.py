"""Convolutional trunks (torchvision ResNet / DenseNet) that stop before global pooling.

A :class:`Trunk` runs the backbone stage by stage, so callers can ask for the last feature maps
(the maps API-Net's gates select channels of) or for every stage's maps (LTPA uses earlier stages),
without hooks.  Optional blocks (for example an A^2 double-attention block) can be inserted after a
named stage through :attr:`Trunk.inserts`.

Pretrained ImageNet weights are never downloaded: they are resolved from the local torch hub cache
(``$TORCH_HOME/hub/checkpoints``) or from an explicit file, and asking for them when they are absent
raises :class:`PretrainedWeightsNotFound` with the file name and where to put it.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "PretrainedWeightsNotFound",
    "Trunk",
    "build_trunk",
    "expected_weights_path",
]


@dataclass(frozen=True)
class BackboneSpec:
    """Static facts about one torchvision architecture."""

    builder: str  # torchvision.models function name
    weights_enum: str  # torchvision.models weights enum name
    stage_names: tuple[str, ...]
    stage_channels: tuple[int, ...]  # channels after each stage
    family: str  # "resnet" or "densenet"


_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
_DENSENET_STAGES = ("block1", "block2", "block3", "block4")

BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec("resnet18", "ResNet18_Weights", _RESNET_STAGES, (64, 128, 256, 512), "resnet"),
    "resnet34": BackboneSpec("resnet34", "ResNet34_Weights", _RESNET_STAGES, (64, 128, 256, 512), "resnet"),
    "resnet50": BackboneSpec("resnet50", "ResNet50_Weights", _RESNET_STAGES, (256, 512, 1024, 2048), "resnet"),
    "resnet101": BackboneSpec("resnet101", "ResNet101_Weights", _RESNET_STAGES, (256, 512, 1024, 2048), "resnet"),
    "resnet152": BackboneSpec("resnet152", "ResNet152_Weights", _RESNET_STAGES, (256, 512, 1024, 2048), "resnet"),
    "densenet161": BackboneSpec(
        "densenet161", "DenseNet161_Weights", _DENSENET_STAGES, (192, 384, 1056, 2208), "densenet"
    ),
}


class PretrainedWeightsNotFound(FileNotFoundError):
    """Pretrained weights were asked for but are not on disk (they are never downloaded)."""


def _weights_entry(name: str):
    spec = BACKBONES[name]
    return getattr(torchvision.models, spec.weights_enum).IMAGENET1K_V1


def expected_weights_path(name: str) -> Path:
    """Where torchvision would cache ImageNet weights for ``name`` (``$TORCH_HOME/hub/checkpoints``)."""
    url = _weights_entry(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


# torchvision's DenseNet checkpoints predate a renaming of the layer keys ("norm.1" -> "norm1").
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _load_weights_file(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    # weights_only refuses anything but tensors and plain containers: no code runs from the file.
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict of tensors, found {type(state).__name__}")
    return state


def _resolve_pretrained(name: str, weights_path: str | Path | None) -> dict[str, Tensor]:
    path = Path(weights_path) if weights_path is not None else expected_weights_path(name)
    if not path.is_file():
        where = (
            f"the file {path} does not exist"
            if weights_path is not None
            else f"expected {path.name} in {path.parent} (the torch hub cache; set TORCH_HOME to move it)"
        )
        raise PretrainedWeightsNotFound(
            f"ImageNet weights for {name} are not available offline: {where}. Download "
            f"{_weights_entry(name).url} on a machine with internet and copy it there, pass "
            f"weights_path=FILE, or use pretrained=False to train from scratch."
        )
    state = _load_weights_file(path)
    if BACKBONES[name].family == "densenet":
        state = {_DENSENET_KEY.sub(r"\1\2", k): v for k, v in state.items()}
    return state


class Trunk(nn.Module):
    """A backbone cut before global pooling, run as an ordered sequence of named stages.

    ``forward(x)`` returns the last feature maps ``[B, D, h, w]``; ``forward_stages(x)`` returns an
    ordered dict of every stage's output (after any inserted block).
    """

    def __init__(self, name: str, stem: nn.Module, stages: "OrderedDict[str, nn.Module]", tail: nn.Module):
        super().__init__()
        self.name = name
        self.stem = stem
        self.stages = nn.ModuleDict(stages)
        self.tail = tail  # applied after the last stage (DenseNet's final norm + ReLU)
        self.inserts = nn.ModuleDict()  # stage name -> block applied after that stage
        spec = BACKBONES[name]
        self.stage_channels: dict[str, int] = dict(zip(spec.stage_names, spec.stage_channels))
        self.out_channels = spec.stage_channels[-1]

    def forward_stages(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        x = self.stem(x)
        outputs: OrderedDict[str, Tensor] = OrderedDict()
        last = next(reversed(self.stages.keys()))
        for stage_name, stage in self.stages.items():
            x = stage(x)
            if stage_name == last:
                x = self.tail(x)
            if stage_name in self.inserts:
                x = self.inserts[stage_name](x)
            outputs[stage_name] = x
        return outputs

    def forward(self, x: Tensor) -> Tensor:
        return next(reversed(self.forward_stages(x).values()))


def _resnet_trunk(name: str, net: nn.Module, output_stride: int) -> Trunk:
    if output_stride == 16:
        # Keep layer4 at the resolution of layer3: finer maps for small demo inputs.
        first = net.layer4[0]
        conv = first.conv2 if hasattr(first, "conv3") else first.conv1
        conv.stride = (1, 1)
        if first.downsample is not None:
            first.downsample[0].stride = (1, 1)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    stages = OrderedDict((s, getattr(net, s)) for s in _RESNET_STAGES)
    return Trunk(name, stem, stages, nn.Identity())


def _densenet_trunk(name: str, net: nn.Module, output_stride: int) -> Trunk:
    if output_stride != 32:
        raise ValueError("output_stride=16 is only supported for ResNet backbones")
    f = net.features
    stem = nn.Sequential(f.conv0, f.norm0, f.relu0, f.pool0)
    stages = OrderedDict(
        [
            ("block1", nn.Sequential(f.denseblock1, f.transition1)),
            ("block2", nn.Sequential(f.denseblock2, f.transition2)),
            ("block3", nn.Sequential(f.denseblock3, f.transition3)),
            ("block4", f.denseblock4),
        ]
    )
    return Trunk(name, stem, stages, nn.Sequential(f.norm5, nn.ReLU(inplace=False)))


def build_trunk(
    name: str = "resnet101",
    pretrained: bool = False,
    weights_path: str | Path | None = None,
    output_stride: int = 32,
) -> Trunk:
    """Build a torchvision trunk; ``pretrained`` loads ImageNet weights from disk or raises.

    ``output_stride`` 32 is the architecture as published; 16 removes the last stage's stride
    (ResNets only) to get 2x finer feature maps at the same input size.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if output_stride not in (16, 32):
        raise ValueError(f"output_stride must be 16 or 32, got {output_stride}")
    spec = BACKBONES[name]
    net = getattr(torchvision.models, spec.builder)(weights=None)
    if pretrained or weights_path is not None:
        state = _resolve_pretrained(name, weights_path)
        try:
            missing, _ = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            first = str(exc).split("\n\t")[1:2] or [str(exc)]
            raise ValueError(f"pretrained weights do not fit {name}: {first[0].strip()}") from None
        head = ("fc.", "classifier.")
        missing = [k for k in missing if not k.startswith(head)]
        if missing:
            raise ValueError(
                f"pretrained weights for {name} do not fit the architecture: "
                f"{len(missing)} missing keys (first: {missing[:3]})"
            )
    builder = _resnet_trunk if spec.family == "resnet" else _densenet_trunk
    return builder(name, net, output_stride)
