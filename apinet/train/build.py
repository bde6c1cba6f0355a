"""What a recipe builds before the loop: the model, the seeded augmentation, the device and precision."""

from __future__ import annotations

import os
import platform
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..model import APINet, Baseline
from .config import TrainConfig, as_config, model_kwargs
from .optim import TRUNK_PARTS

__all__ = ["Precision", "SeededTransformDataset", "build_train_model", "init_trunk_from", "machine_info",
           "resolve_device"]


def build_train_model(config: TrainConfig | dict[str, Any], num_classes: int, *, init: bool = True) -> nn.Module:
    """The model of a recipe; ``init=False`` skips ``--init-trunk`` (a resumed run loads its own state)."""
    config = as_config(config)
    cls = APINet if config.model == "apinet" else Baseline
    model = cls(config.backbone, num_classes, pretrained=bool(config.pretrained), weights_path=config.weights,
                **model_kwargs(config))
    if init and config.init_trunk:
        init_trunk_from(model, config.init_trunk)
    return model


def init_trunk_from(model: nn.Module, checkpoint: str | Path) -> None:
    """Copy the trunk (stem, stages, tail) of a trained project checkpoint into ``model``.

    Two-stage fine-tuning: e.g. API-Net started from the baseline's trained trunk, the way the paper
    starts from ImageNet weights. The checkpoint is loaded with :func:`load_model` (hash-checked,
    never unpickled); a different backbone or output stride is a ``ValueError`` naming both.
    """
    from ..checkpoint import load_model

    source, _ = load_model(checkpoint)
    mine, theirs = model.config, source.config
    for key in ("backbone", "output_stride", "dilated"):
        if mine.get(key) != theirs.get(key):
            raise ValueError(f"--init-trunk {checkpoint}: its {key} is {theirs.get(key)!r}, this recipe's is "
                             f"{mine.get(key)!r}")
    state = {k: v for k, v in source.trunk.state_dict().items() if k.startswith(TRUNK_PARTS)}
    missing, unexpected = model.trunk.load_state_dict(state, strict=False)
    missing = [k for k in missing if k.startswith(TRUNK_PARTS)]
    if missing or unexpected:  # cannot happen for equal backbone + stride; guards future trunk changes
        raise ValueError(f"--init-trunk {checkpoint}: trunk weights do not fit ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected)")


class SeededTransformDataset(torch.utils.data.Dataset):
    """Applies a random transform with the RNG seeded by (seed, epoch, index): reproducible
    augmentation whatever the worker count, and exactly resumable in the middle of an epoch."""

    def __init__(self, dataset, transform, seed: int):
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, int(seed), 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + int(index))
            return self.transform(image), label


@dataclass
class Precision:
    """Where and in which number format a run computes."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def resolve_device(config: TrainConfig, local_rank: int = 0) -> Precision:
    """The recipe's ``device``, ``amp`` and ``channels_last`` resolved on this machine."""
    want = config.device
    if want == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    use_cuda = want == "cuda" or (want == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    amp = config.amp
    if amp == "auto":
        amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if use_cuda else "off"
    if amp == "fp16" and not use_cuda:
        raise ValueError("--amp fp16 needs CUDA (use bf16 or off on CPU)")
    dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    channels_last = config.channels_last
    if channels_last is None:
        channels_last = use_cuda
    return Precision(device, dtype, bool(channels_last))


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU model, cores, device and threads (and the GPU): recorded in every card."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_cores": os.cpu_count(), "device": device.type, "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_count"] = torch.cuda.device_count()
    return info
