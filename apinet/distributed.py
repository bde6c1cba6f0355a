"""Multi-process training helpers (``torchrun`` + DistributedDataParallel).

Each rank draws its own balanced batch (sampler seed ``seed + rank``).  API-Net's pairs are mined
over the pooled features of *all* ranks: :func:`gather_pooled` collects them with the differentiable
``torch.distributed.nn.functional.all_gather``, whose backward sums every rank's gradient into the
owning rank's features, so a pair whose partner lives on another rank trains both trunks.  DDP then
averages the parameter gradients, which gives exactly the gradient of the mean of the ranks' losses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["DistInfo", "gather_pooled", "init_distributed", "is_main", "barrier"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (no-op when alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def gather_pooled(pooled: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, int]:
    """``(pooled [B, D], labels [B])`` of this rank -> every rank's, concatenated, and this rank's offset.

    Features keep their autograd graph across ranks; labels are gathered without one.  Every rank
    must have the same batch size (the balanced sampler guarantees it).
    """
    from torch.distributed.nn.functional import all_gather

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return pooled, labels, 0
    features = torch.cat(all_gather(pooled), dim=0)
    label_list = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
    dist.all_gather(label_list, labels.contiguous())
    return features, torch.cat(label_list), dist.get_rank() * labels.numel()
