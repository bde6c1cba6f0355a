"""Optimiser, learning-rate schedule and the frozen trunk of a recipe."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .config import TrainConfig

__all__ = ["TRUNK_PARTS", "build_optimizer", "lr_lambda", "set_trunk_frozen", "total_steps", "trunk_parameters"]

#: The trunk's own layers (what pretrained weights or ``--init-trunk`` provide and ``--freeze-epochs``
#: freezes), as key prefixes under ``model.trunk``; inserted A^2 blocks (``inserts.``) are new layers.
TRUNK_PARTS = ("stem.", "stages.", "tail.")


def lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_steps``, then a cosine to 0 at ``total_steps`` (per step)."""
    def cosine(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return cosine


def trunk_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The pretrained trunk's parameters (frozen for --freeze-epochs); inserted A^2 blocks are new layers."""
    trunk_prefixes = tuple(f"trunk.{part}" for part in TRUNK_PARTS)
    return [p for n, p in model.named_parameters() if n.startswith(trunk_prefixes)]


def set_trunk_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (or release) the trunk as the official code does: its parameters stop requiring grad.

    A frozen parameter then has no ``.grad``, so SGD and AdamW skip it entirely: no step, no weight
    decay, and no momentum or moment estimates accumulate before it is unfrozen (a learning rate of 0
    alone would still build them up). BatchNorm statistics keep updating in train mode, as in the
    official code. No graph is recorded through a frozen trunk, so the frozen phase costs a forward.
    """
    for p in trunk_parameters(model):
        p.requires_grad_(not frozen)


def build_optimizer(model: nn.Module, config: TrainConfig, steps_per_epoch: int):
    """SGD or AdamW with two parameter groups (trunk, then head) and one per-step schedule for both.

    The trunk needs no schedule of its own while frozen: :func:`set_trunk_frozen` leaves it without
    gradients, so the optimiser does not touch it whatever its learning rate. (Runs saved when the
    trunk group had a separate lambda, 0 while frozen, resume unchanged: a ``LambdaLR`` stores no
    function state, and from the release on both lambdas were the same cosine.)
    """
    trunk_params = trunk_parameters(model)
    trunk_ids = {id(p) for p in trunk_params}
    head_params = [p for p in model.parameters() if id(p) not in trunk_ids]
    groups = [{"params": trunk_params}, {"params": head_params}]
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    # The schedule spans the whole recipe; --max-steps only stops early (so a smoke run follows
    # the same curve as the full run, and a resumed run the same as a straight one).
    total = int(config.epochs) * steps_per_epoch
    cosine = lr_lambda(total, int(round(config.warmup_epochs * steps_per_epoch)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    return opt, sched


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    total = int(config.epochs) * steps_per_epoch
    return total if config.max_steps is None else min(total, int(config.max_steps))
