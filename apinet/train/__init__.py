"""``python -m apinet train``: train API-Net or the baseline (AMP, channels_last, DDP via torchrun).

A run directory holds ``log.jsonl`` (one JSON record per logged step and per validation),
``best.safetensors`` / ``last.safetensors`` with their JSON model cards, and ``last.state.pt``: the
full training state (model, optimizer, scheduler, sampler, RNG, step, best metric) for ``--resume``.
The state file holds tensors and plain Python values only and is read with
``torch.load(weights_only=True)``; every file is written to a temporary name and renamed, so a kill
at any moment leaves the previous complete file in place.

Resuming is exact: the sampler restarts inside its epoch, and each image's random augmentation is
seeded by (seed, epoch, index), so N steps straight and N/2 + resume + N/2 give identical weights.

The package: :mod:`~apinet.train.config` (the :class:`TrainConfig` recipe, presets, flags and saved
runs), :mod:`~apinet.train.step` (:class:`TrainStep`, model + losses), :mod:`~apinet.train.optim`
(optimiser, schedule, frozen trunk), :mod:`~apinet.train.state` (state files, run lock, folder
checks), :mod:`~apinet.train.build` (model, augmentation, device), :mod:`~apinet.train.loop`
(:func:`train`, :func:`evaluate_loader`) and :mod:`~apinet.train.export` (:func:`export_checkpoint`).
"""

from __future__ import annotations

from .build import (Precision, SeededTransformDataset, build_train_model, init_trunk_from, machine_info,
                    resolve_device)
from .config import PRESETS, TrainConfig, build_config, default_val_split, resume_config
from .export import export_checkpoint
from .loop import evaluate_loader, train
from .optim import TRUNK_PARTS, build_optimizer, set_trunk_frozen, total_steps, trunk_parameters
from .state import LOCK_FILE, RUN_FILES, STATE_FILE, RunLock, load_state, resolve_resume
from .step import TrainStep

_RunLock = RunLock  # the name tests and scripts used before the package


def _dataset_kwargs(spec: str, config, split: str) -> dict:
    """The single module's private helper, for code written against it: use
    :func:`apinet.data.split_options`."""
    from ..data import split_options

    return split_options(spec, split, image_size=config.get("image_size"), per_class=config.get("per_class"),
                         val_per_class=config.get("val_per_class"))

__all__ = [
    "LOCK_FILE",
    "PRESETS",
    "Precision",
    "RUN_FILES",
    "RunLock",
    "STATE_FILE",
    "SeededTransformDataset",
    "TRUNK_PARTS",
    "TrainConfig",
    "TrainStep",
    "build_config",
    "build_optimizer",
    "build_train_model",
    "default_val_split",
    "evaluate_loader",
    "export_checkpoint",
    "init_trunk_from",
    "load_state",
    "machine_info",
    "resolve_device",
    "resolve_resume",
    "resume_config",
    "set_trunk_frozen",
    "total_steps",
    "train",
    "trunk_parameters",
]
