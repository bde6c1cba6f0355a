"""The training recipe: :class:`TrainConfig`, its presets, and how flags and saved runs become one.

A recipe is generic defaults < preset < explicit flags (:func:`build_config`); ``--resume`` takes the
resumed run's own recipe, overridden only by the flags given now (:func:`resume_config`). The run
folder's ``config.json`` and the model card's ``recipe`` store :meth:`TrainConfig.to_dict`, so runs
saved before the dataclass existed (plain dicts with the same keys) still resume.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["PRESETS", "TrainConfig", "build_config", "dataset_kwargs", "default_val_split", "model_kwargs",
           "parse_stages", "resume_config"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs. The defaults are the ``demo-scratch`` recipe (the recipe used
    when no preset is named); ``PRESETS`` holds the named ones. Frozen: derive variants with
    :meth:`replace`. ``config["lr"]`` reads a field as the recipe dicts of earlier versions did."""

    # model
    model: str = "apinet"  # "apinet" | "baseline"
    preset: str | None = None
    backbone: str = "resnet18"
    output_stride: int = 16
    pretrained: bool = False
    weights: str | None = None  # trunk weights file (implies pretrained)
    init_trunk: str | None = None  # start the trunk from a trained project checkpoint
    ltpa: str | None = None  # "STAGES[:pc|dp]"
    ltpa_weight: float = 1.0
    ltpa_normalize: str = "softmax"
    ltpa_aggregate: str = "concat"
    a2: str | None = None  # "STAGES"
    # data
    data: str = "synthbirds"
    val_split: str | None = None  # default: val for synthbirds and folders, else test
    image_size: int | None = 128  # SynthBirds render size
    per_class: int | None = 100  # SynthBirds training images per class
    val_per_class: int | None = 10
    input_size: int = 128
    resize: int = 128
    test_resize: int = 128
    resize_mode: str | None = "shorter"  # "square" | "shorter"
    n_classes: int = 8  # classes per batch
    n_samples: int = 4  # images per class in a batch
    # optimisation
    optimizer: str = "adamw"  # "sgd" | "adamw"
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 0.05
    epochs: int = 8
    warmup_epochs: float = 0.2
    freeze_epochs: int = 0
    max_steps: int | None = None  # stop early (the schedule still spans the whole recipe)
    margin: float = 0.05
    rank_weight: float = 1.0
    seed: int = 0
    # run
    out: str | None = None
    resume: str | None = None
    save_every: int = 200
    log_every: int = 10
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    amp: str = "auto"  # "auto" | "off" | "bf16" | "fp16"
    channels_last: bool | None = None  # None: on with CUDA
    workers: int | None = None  # None: 0 on <= 2 cores
    threads: int | None = None
    no_progress: bool = False
    command: str | None = None  # the command line that started the run (recorded, not a setting)

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                shown = ", ".join(repr(a) for a in allowed)
                raise ValueError(f"recipe: {name} must be one of {shown}, got {value!r}")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """A recipe from a dict (flags, a saved ``config.json``, a card's ``recipe``). Keys this
        version does not know are ignored (so older and newer run folders resume); missing keys
        take the defaults."""
        names = set(cls.keys())
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ``config.json`` and the card's ``recipe`` (every field)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default


#: The fields that take one of a few values (the command line's choices; ``None`` where it means "default").
_CHOICES: dict[str, tuple[Any, ...]] = {
    "model": ("apinet", "baseline"),
    "optimizer": ("sgd", "adamw"),
    "resize_mode": ("square", "shorter", None),
    "ltpa_normalize": ("softmax", "sigmoid"),
    "ltpa_aggregate": ("concat", "independent"),
    "device": ("auto", "cpu", "cuda"),
    "amp": ("auto", "off", "bf16", "fp16"),
}

#: Recipe defaults; explicit command-line flags override them.
PRESETS: dict[str, TrainConfig] = {
    "paper": TrainConfig(
        preset="paper", backbone="resnet101", output_stride=32, data="cub:data/CUB_200_2011", image_size=None,
        per_class=None, val_per_class=None, input_size=448, resize=512, test_resize=512,
        resize_mode="square",  # the official train.py: Resize((512, 512)) before the 448 crop
        n_classes=30, n_samples=4, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, epochs=100,
        warmup_epochs=0.0, freeze_epochs=8, margin=0.05, rank_weight=1.0, pretrained=True,
    ),
    # The embedded demo, the paper's recipe scaled to a 2-core CPU: EfficientNet-Lite0 with ImageNet
    # weights (they install offline), dilated to output stride 16 for 14 x 14 maps at 224 px, the trunk
    # frozen for the first epoch and then fine-tuned, SGD with the paper's momentum and weight decay on
    # a cosine schedule. SynthBirds is procedural, so the training split is as large as the budget
    # allows: 500 images per class (10,000). Batches of 8 classes x 4 images keep the paper's 4 images
    # per class, so intra pairs are actually mined.
    "demo": TrainConfig(
        preset="demo", backbone="efficientnet_lite0", output_stride=16, data="synthbirds", image_size=224,
        per_class=500, val_per_class=20, input_size=224, resize=240, test_resize=240,
        resize_mode="shorter",  # the renders are square: the same as "square"
        n_classes=8, n_samples=4, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, epochs=2,
        warmup_epochs=0.0, freeze_epochs=1, margin=0.05, rank_weight=1.0, pretrained=True,
        channels_last=True,  # 3x faster depthwise convolutions on CPU too (12 vs 4 img/s training)
    ),
    # The first demo: ResNet-18 (stride dropped to 16: 8x8 maps at 128 px) trained from scratch on 2,000
    # SynthBirds images; ~25 img/s with 2 threads, ~11 minutes per model. These are the field defaults.
    "demo-scratch": TrainConfig(preset="demo-scratch"),
}


def build_config(overrides: Mapping[str, Any]) -> TrainConfig:
    """Recipe = generic defaults < preset < explicit flags (``overrides`` holds only flags given)."""
    preset = overrides.get("preset")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
    base = PRESETS[preset] if preset else TrainConfig()
    flags = {k: v for k, v in overrides.items() if k not in ("func", "command")}
    config = TrainConfig.from_dict({**base.to_dict(), "preset": preset, **flags})
    return config.replace(pretrained=True) if config.weights else config


def resume_config(flags: Mapping[str, Any]) -> TrainConfig:
    """With ``--resume``, the resumed run's recipe, overridden only by the flags given now."""
    from .state import resolve_resume

    flags = {k: v for k, v in flags.items() if k not in ("func", "command")}
    saved = resolve_resume(flags["resume"]).parent / "config.json"
    base: dict[str, Any] = build_config({}).to_dict()
    if saved.is_file():
        try:
            base = json.loads(saved.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"--resume: cannot read the run's recipe {saved} ({error})") from None
        if not isinstance(base, dict):
            raise ValueError(f"--resume: the run's recipe {saved} is not a JSON object")
    base.pop("command", None)
    return TrainConfig.from_dict({**base, "max_steps": None, **flags})


def as_config(config: TrainConfig | Mapping[str, Any]) -> TrainConfig:
    """``config`` as a :class:`TrainConfig` (a dict is read with :meth:`TrainConfig.from_dict`)."""
    return config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)


def parse_stages(text: str | None, flag: str) -> tuple[list[str], str | None]:
    """``"layer3,layer4:pc"`` -> ``(["layer3", "layer4"], "pc")``."""
    if not text:
        return [], None
    stages, _, option = text.partition(":")
    names = [s.strip() for s in stages.split(",") if s.strip()]
    if not names:
        raise ValueError(f"{flag} needs stage names, e.g. layer3,layer4")
    return names, (option.strip() or None)


def model_kwargs(config: TrainConfig) -> dict[str, Any]:
    """Constructor arguments of the recipe's model beyond backbone, classes and weights."""
    kwargs: dict[str, Any] = {"output_stride": config.output_stride}
    stages, compat = parse_stages(config.ltpa, "--ltpa")
    if stages:
        if compat not in (None, "pc", "dp"):
            raise ValueError(f"--ltpa compatibility must be pc or dp, got {compat!r}")
        kwargs["ltpa"] = {
            "stages": stages,
            "compatibility": compat or "pc",
            "normalize": config.ltpa_normalize or "softmax",
            "aggregate": config.ltpa_aggregate or "concat",
        }
    stages, extra = parse_stages(config.a2, "--a2")
    if extra:
        raise ValueError(f"--a2 takes stage names only, got ':{extra}'")
    if stages:
        kwargs["a2"] = {"stages": stages}
    return kwargs


def dataset_kwargs(config: TrainConfig, split: str) -> dict[str, Any]:
    """The dataset options of a split of the recipe's data (:func:`apinet.data.split_options`)."""
    from ..data import split_options

    return split_options(config.data, split, image_size=config.image_size, per_class=config.per_class,
                         val_per_class=config.val_per_class)


def default_val_split(spec: str) -> str:
    return "val" if spec.strip().lower().split(":")[0] in ("synthbirds", "folder") else "test"
