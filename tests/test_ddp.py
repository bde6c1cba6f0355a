"""Two gloo processes on CPU, each with its own images: pairs are mined across ranks, and DDP's
gradient equals one process's on both ranks' images with BatchNorm statistics per rank, as in the
real run (``train`` wraps plain BatchNorm in DDP: each rank normalises with its own batch)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

B = 6  # images per rank: 3 classes x 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Rank 1's images are rank 0's with another contrast and brightness: different images whose
    # batch statistics differ, but whose features after a BatchNorm stay close (a per-channel
    # affine change of the input is mostly normalised away; the zero padding is not), so an image's
    # nearest same-class image is usually its counterpart on the other rank.
    g = torch.Generator().manual_seed(1)
    base = torch.randn(B, 3, 32, 32, generator=g)
    return (base if rank == 0 else base * 1.5 + 0.3), torch.tensor([0, 0, 1, 1, 2, 2])


def _per_rank_batchnorm(model: nn.Module, world: int) -> None:
    """Make every BatchNorm normalise each rank's chunk of the batch with that chunk's statistics."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            forward = module.forward
            module.forward = lambda x, f=forward: torch.cat([f(c) for c in x.chunk(world)])


def _grads(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _worker(rank: int, world: int, port: int, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from apinet import APINet, mine_pairs
        from apinet.distributed import gather_pooled
        from apinet.train import TrainStep

        torch.manual_seed(0)
        model = APINet("resnet18", 3, dropout=0.0)
        per_rank, pooled_bn = APINet("resnet18", 3, dropout=0.0), APINet("resnet18", 3, dropout=0.0)
        per_rank.load_state_dict(model.state_dict())
        pooled_bn.load_state_dict(model.state_dict())
        _per_rank_batchnorm(per_rank, world)
        images, labels = _batch(rank)
        all_images = torch.cat([_batch(r)[0] for r in range(world)])
        all_labels = labels.repeat(world)
        assert not torch.equal(_batch(0)[0], _batch(1)[0])

        out = model.forward_train(images, labels, gather=gather_pooled)
        with torch.no_grad():  # one process, per-rank BatchNorm: the same features, so the same pairs
            features = per_rank.pool_features(per_rank.forward_features(all_images))
        intra, inter = mine_pairs(features, all_labels)
        mine = slice(rank * B, (rank + 1) * B)
        assert torch.equal(out.intra_index[:B], intra[mine]) and torch.equal(out.inter_index[:B], inter[mine])
        owner = torch.cat([out.intra_index, out.inter_index]) // B
        assert bool((owner != rank).any()), "no pair crossed the ranks"

        ddp = torch.nn.parallel.DistributedDataParallel(
            TrainStep(model, margin=0.05, rank_weight=1.0, ltpa_weight=1.0, gather=gather_pooled)
        )
        ddp(images, labels)["total"].backward()
        grads = _grads(model)
        gathered = [torch.empty_like(grads) for _ in range(world)]
        dist.all_gather(gathered, grads)
        assert torch.equal(gathered[0], gathered[1]), "DDP left the ranks' gradients different"

        # One process on both ranks' images, BatchNorm per rank's chunk: the same gradient.
        TrainStep(per_rank, margin=0.05, rank_weight=1.0, ltpa_weight=1.0)(all_images, all_labels)["total"].backward()
        ref = _grads(per_rank)
        error = float((grads - ref).abs().max() / ref.abs().max())  # float32 sums in another order
        assert error < 1e-3, error
        # ... and the test can tell: BatchNorm over the whole pooled batch gives another gradient.
        TrainStep(pooled_bn, margin=0.05, rank_weight=1.0, ltpa_weight=1.0)(all_images, all_labels)["total"].backward()
        other = float((grads - _grads(pooled_bn)).abs().max() / ref.abs().max())
        assert other > 1e-2, other
        torch.save({"owner": owner, "max_grad": grads.abs().max(), "error": error, "other": other},
                   os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_rank_mining_crosses_ranks_and_gradients_match_one_process_with_per_rank_batchnorm(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert bool((result["owner"] != rank).any())
        assert float(result["max_grad"]) > 0
        assert float(result["error"]) < 1e-3 < 1e-2 < float(result["other"])
