"""How selective is a trained API-Net's gate? Statistics of z = x_m * x_i and g_i = sigmoid(z) over
SynthBirds sibling pairs (the pairs ``evaluate-explanations`` scores).

    python benchmarks/gate_statistics.py [--checkpoint CKPT] [--split val] [--pairs 380]

Prints the share of channels with z < 0 (gate below 0.5), the median and 5 / 95 % quantiles of z,
the share of gates that are exactly 1.0 in float32 (z above ~17: the top of the gate ranking, which
``gate_topk_channels`` therefore orders by z) and how many such channels an image has on average.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from apinet.data import build_dataset
from apinet.explain import DEFAULT_APINET_CHECKPOINT, load_pair_models, preprocess_from_card
from apinet.data.contrast_pairs import synthbirds_pairs


def gate_statistics(checkpoint: str, split: str, pairs: int) -> dict[str, float]:
    model, card, _, _ = load_pair_models(checkpoint, None)
    pre = preprocess_from_card(card)
    data = build_dataset("synthbirds", split, image_size=pre.resize)
    zs, saturated = [], []
    with torch.no_grad():
        for pair in synthbirds_pairs(data, pre, pairs):
            pooled = model.pool_features(model.forward_features(torch.stack([pre(pair.image1), pre(pair.image2)])))
            out = model.interact(pooled[0:1], pooled[1:2])
            for x, g in ((pooled[0], out.gate1[0]), (pooled[1], out.gate2[0])):
                zs.append((out.mutual[0] * x).double().numpy())
                saturated.append((g == 1.0).double().numpy())
    z, sat = np.concatenate(zs), np.stack(saturated)
    q5, q50, q95 = np.percentile(z, [5, 50, 95])
    return {"images": len(zs), "channels": sat.shape[1], "z_negative": float(np.mean(z < 0)), "z_median": float(q50),
            "z_q05": float(q5), "z_q95": float(q95), "gate_exactly_1": float(sat.mean()),
            "gates_exactly_1_per_image": float(sat.sum(1).mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(DEFAULT_APINET_CHECKPOINT))
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--pairs", type=int, default=380)
    args = p.parse_args()
    torch.set_num_threads(2)
    s = gate_statistics(args.checkpoint, args.split, args.pairs)
    print(f"{args.checkpoint}, SynthBirds {args.split}, {s['images']} images x {s['channels']} channels")
    print(f"z = x_m * x < 0 (gate < 0.5): {100 * s['z_negative']:.1f} % of channels; z quantiles 5 / 50 / 95 %: "
          f"{s['z_q05']:.2f} / {s['z_median']:.2f} / {s['z_q95']:.2f}")
    print(f"gate exactly 1.0 in float32: {100 * s['gate_exactly_1']:.1f} % of channels, "
          f"{s['gates_exactly_1_per_image']:.1f} per image")


if __name__ == "__main__":
    main()
