"""Diagnostic for issue #12 (validation split only): does more training of API-Net's interaction head
activate the interaction?

    python benchmarks/interaction_head_only.py [--checkpoint CKPT] [--steps 4000]

Caches the pooled features of 100 training images per class and of the validation split (the trunk
stays as it is), trains only the mutual MLP and the classifier with the API-Net loss on balanced
batches of 8 classes x 4 (pairs mined in each batch, as in training; SGD lr 0.01, momentum 0.9, wd
5e-4), and prints p_self > p_other on validation pairs mined as in training, after 250, 1000, 2000
and ``--steps`` steps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install needed
from apinet import BalancedBatchSampler, apinet_loss, load_model, mine_pairs  # noqa: E402
from apinet.evaluate import checkpoint_dataset  # noqa: E402
from apinet.mechanism import pair_kind_stats  # noqa: E402


@torch.no_grad()
def _features(model, card, split, per_class):
    dataset, _ = checkpoint_dataset(card, None, split, per_class=per_class)
    xs, ys = [], []
    for x, y in torch.utils.data.DataLoader(dataset, batch_size=50):
        xs.append(model.pool_features(model.forward_features(x)))
        ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys)


@torch.no_grad()
def _report(model, x, y, tag):
    model.eval()
    intra, inter = mine_pairs(x, y)
    for kind, partner in (("intra", intra), ("inter", inter)):
        out = model.interact(x, x[partner])
        rows = torch.arange(len(y))
        s = pair_kind_stats(out.logits1_self.softmax(1)[rows, y], out.logits1_other.softmax(1)[rows, y])
        print(f"{tag:>10} {kind}: p_self > p_other {100 * s.self_wins:.1f} %, mean diff {s.mean_difference:+.4f}, "
              f"mean |g1 - g2| {float((out.gate1 - out.gate2).abs().mean()):.4f}, "
              f"val top-1 {float((model.fc(x).argmax(1) == y).float().mean()):.3f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="assets/checkpoints/apinet_synthbirds.safetensors")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, card = load_model(args.checkpoint)
    x_train, y_train = _features(model, card, "train", 100)
    x_val, y_val = _features(model, card, "val", None)
    _report(model, x_val, y_val, "start")
    opt = torch.optim.SGD([*model.mutual.parameters(), *model.fc.parameters()], lr=0.01, momentum=0.9,
                          weight_decay=5e-4)
    sampler = BalancedBatchSampler(y_train.tolist(), 8, 4, seed=0)
    step = 0
    while step < args.steps:
        for batch in sampler:
            model.train()
            x, y = x_train[batch], y_train[batch]
            intra, inter = mine_pairs(x, y)
            first, second = torch.arange(len(y)).repeat(2), torch.cat([intra, inter])
            out = model.interact(x[first], x[second])
            loss = apinet_loss(out.logits1_self, out.logits1_other, out.logits2_self, out.logits2_other,
                               y[first], y[second]).total
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step in (250, 1000, 2000, args.steps):
                _report(model, x_val, y_val, f"step {step}")
            if step >= args.steps:
                break


if __name__ == "__main__":
    main()
