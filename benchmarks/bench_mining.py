"""Pair mining: on-device vectorised ``apinet.mine_pairs`` vs the official code's numpy + Python-loop form.

    python benchmarks/bench_mining.py [--device cpu|cuda] [--dim 2048] [--batches 8,30,60,120,240,480]
                                      [--step-batch 32 --step-size 128]

The official form (``get_pairs`` in the API-Net repository) computes the distance matrix on the device,
copies it to the host, masks it with numpy, runs a Python loop over the batch to build the pair
arrays, and copies them back.  Both forms are timed in the same run, interleaved, median of repeats.
With ``--step-batch`` it also times one demo training step (ResNet-18, output stride 16) to put the
mining time in proportion.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install needed
from apinet import mine_pairs  # noqa: E402


def official_get_pairs(embeddings: torch.Tensor, labels: torch.Tensor):
    """The official code's mining, kept as written there (numpy on the host, Python loop)."""
    device = embeddings.device
    vectors = embeddings.detach()
    distance_matrix = (
        -2 * vectors.mm(vectors.t())
        + vectors.pow(2).sum(dim=1).view(1, -1)
        + vectors.pow(2).sum(dim=1).view(-1, 1)
    )
    distance_matrix = distance_matrix.cpu().numpy()
    labels_np = labels.detach().cpu().numpy().reshape(-1, 1)
    num = labels_np.shape[0]
    dia_inds = np.diag_indices(num)
    lb_eqs = labels_np == labels_np.T
    lb_eqs[dia_inds] = False
    dist_same = distance_matrix.copy()
    dist_same[lb_eqs == False] = np.inf  # noqa: E712 (as in the original)
    intra_idxs = np.argmin(dist_same, axis=1)
    dist_diff = distance_matrix.copy()
    lb_eqs[dia_inds] = True
    dist_diff[lb_eqs == True] = np.inf  # noqa: E712
    inter_idxs = np.argmin(dist_diff, axis=1)
    intra_pairs = np.zeros([num, 2])
    inter_pairs = np.zeros([num, 2])
    intra_labels = np.zeros([num, 2])
    inter_labels = np.zeros([num, 2])
    for i in range(num):
        intra_labels[i, 0] = labels_np[i, 0]  # [i] in the original; NumPy 2 needs the scalar
        intra_labels[i, 1] = labels_np[intra_idxs[i], 0]
        intra_pairs[i, 0] = i
        intra_pairs[i, 1] = intra_idxs[i]
        inter_labels[i, 0] = labels_np[i, 0]
        inter_labels[i, 1] = labels_np[inter_idxs[i], 0]
        inter_pairs[i, 0] = i
        inter_pairs[i, 1] = inter_idxs[i]
    return (
        torch.from_numpy(intra_pairs).long().to(device),
        torch.from_numpy(inter_pairs).long().to(device),
        torch.from_numpy(intra_labels).long().to(device),
        torch.from_numpy(inter_labels).long().to(device),
    )


def vectorised_pairs(embeddings: torch.Tensor, labels: torch.Tensor):
    """What a training step does: mine on device and gather the pair labels, no host round trip."""
    intra, inter = mine_pairs(embeddings, labels, check=False)
    return intra, inter, labels[intra], labels[inter]


def _time(fn, sync, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _demo_step_time(device: torch.device, batch: int, size: int, sync, repeats: int) -> float:
    from apinet import APINet, apinet_loss

    model = APINet("resnet18", num_classes=20, output_stride=16).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.arange(batch // 4).repeat_interleave(4)

    def step():
        out = model.forward_train(images, labels)
        p = out.pairs
        loss = apinet_loss(p.logits1_self, p.logits1_other, p.logits2_self, p.logits2_other, out.labels1, out.labels2)
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        opt.step()

    step()  # warm-up
    return _time(step, sync, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--batches", default="8,30,60,120,240,480")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--step-batch", type=int, default=32, help="demo training step batch (0: skip)")
    parser.add_argument("--step-size", type=int, default=128)
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}, D={args.dim}")
    print("| batch | official numpy + loop (ms) | vectorised on device (ms) | speed-up |")
    print("|---:|---:|---:|---:|")
    g = torch.Generator().manual_seed(0)
    vector_ms = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        emb = torch.randn(batch, args.dim, generator=g).to(device)
        labels = torch.arange((batch + 3) // 4).repeat_interleave(4)[:batch].to(device)  # 4 per class
        ref = official_get_pairs(emb, labels)
        new = vectorised_pairs(emb, labels)
        assert torch.equal(ref[0][:, 1], new[0]) and torch.equal(ref[1][:, 1], new[1]), "forms disagree"
        t_off = _time(lambda: official_get_pairs(emb, labels), sync, args.repeats)
        t_vec = _time(lambda: vectorised_pairs(emb, labels), sync, args.repeats)
        vector_ms[batch] = t_vec * 1e3
        print(f"| {batch} | {t_off * 1e3:.3f} | {t_vec * 1e3:.3f} | {t_off / t_vec:.1f}x |")
    if args.step_batch:
        step = _demo_step_time(device, args.step_batch, args.step_size, sync, repeats=5)
        emb = torch.randn(args.step_batch, 512, generator=g).to(device)
        labels = torch.arange(args.step_batch // 4).repeat_interleave(4).to(device)
        t_mine = _time(lambda: vectorised_pairs(emb, labels), sync, args.repeats)
        print(
            f"\ndemo training step (ResNet-18/16, batch {args.step_batch}, {args.step_size} px): "
            f"{step * 1e3:.1f} ms; mining at D=512: {t_mine * 1e3:.3f} ms = {100 * t_mine / step:.3f}% of the step"
        )


if __name__ == "__main__":
    main()
