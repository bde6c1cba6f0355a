"""Two gloo processes on CPU: pairs are mined across ranks and DDP gradients equal the pooled batch's."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

B = 6  # images per rank: 3 classes x 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    # Every rank gets the same images: each image's nearest same-class image is its copy on the
    # other rank (distance 0), which single-rank mining could never find.
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, 3, 32, 32, generator=g), torch.tensor([0, 0, 1, 1, 2, 2])


def _worker(rank: int, world: int, port: int, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from apinet import APINet
        from apinet.distributed import gather_pooled
        from apinet.train import TrainStep

        torch.manual_seed(0)
        model = APINet("resnet18", 3, dropout=0.0)
        reference = APINet("resnet18", 3, dropout=0.0)
        reference.load_state_dict(model.state_dict())
        images, labels = _batch()

        out = model.forward_train(images, labels, gather=gather_pooled)
        offset = rank * B
        assert torch.equal(out.intra_index, torch.arange(B) + offset + (B if rank == 0 else -B))
        owner = torch.cat([out.intra_index, out.inter_index]) // B
        assert bool((owner != rank).any())
        assert torch.equal(out.labels1, labels.repeat(2)) and torch.equal(out.labels2[:B], labels)

        ddp = torch.nn.parallel.DistributedDataParallel(
            TrainStep(model, margin=0.05, rank_weight=1.0, ltpa_weight=1.0, gather=gather_pooled)
        )
        ddp(images, labels)["total"].backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        gathered = [torch.empty_like(grads) for _ in range(world)]
        dist.all_gather(gathered, grads)
        assert torch.equal(gathered[0], gathered[1]), "DDP left the ranks' gradients different"

        # Same loss on the pooled batch of both ranks in one process gives the same gradient.
        single = TrainStep(reference, margin=0.05, rank_weight=1.0, ltpa_weight=1.0)
        single(torch.cat([images] * world), labels.repeat(world))["total"].backward()
        ref = torch.cat([p.grad.flatten() for p in reference.parameters() if p.grad is not None])
        # (float32 sums in another order: compare relative to the largest gradient)
        error = float((grads - ref).abs().max() / ref.abs().max())
        assert error < 1e-3, error
        torch.save({"owner": owner, "max_grad": grads.abs().max()}, os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_rank_mining_crosses_ranks_and_gradients_are_synchronised(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert bool((result["owner"] != rank).any())
        assert float(result["max_grad"]) > 0
