"""Is the pairwise interaction of each shipped API-Net active? (issue #12; apinet.mechanism)

    python benchmarks/interaction.py [CHECKPOINT ...] [--split test] [--k 5] [--json OUT]

With no checkpoint, every API-Net checkpoint in assets/checkpoints is measured. Each image of the split
is paired as in training, with its nearest same-class (intra) and nearest other-class (inter) image by
pooled features; the table gives, for each kind of pair, the share of images with p_self(c) > p_other(c)
(c = the true class) and the mean difference, the share where both probabilities exceed 0.999, the
share of gates above 0.999 / below 0.001, and the mean pairwise correlation of the top-k gated
channels' maps. Choose recipes on ``--split val``; report ``--split test``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install needed
from apinet.checkpoint import load_model  # noqa: E402
from apinet.evaluate import checkpoint_dataset  # noqa: E402
from apinet.mechanism import collect_features, interaction_statistics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def measure(checkpoint: Path, split: str, k: int) -> dict:
    model, card = load_model(checkpoint)
    dataset, spec = checkpoint_dataset(card, None, split)
    loader = torch.utils.data.DataLoader(dataset, batch_size=50, shuffle=False)
    start = time.perf_counter()
    pooled, maps, labels = collect_features(model, loader)
    stats = interaction_statistics(model, pooled, maps, labels, k=k)
    return {"checkpoint": str(checkpoint.relative_to(ROOT) if checkpoint.is_relative_to(ROOT) else checkpoint),
            "backbone": card["config"]["backbone"], "maps": list(maps.shape[-2:]), "data": spec, "split": split,
            "seconds": round(time.perf_counter() - start, 1), **stats.to_dict()}


def markdown(rows: list[dict]) -> str:
    lines = [
        "| checkpoint | maps | intra: p_self > p_other | intra: mean diff | inter: p_self > p_other | "
        "inter: mean diff | both p > 0.999 (intra / inter) | gates > 0.999 | gates < 0.001 | top-k map corr. |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, e = r["intra"], r["inter"]
        lines.append(
            f"| {Path(r['checkpoint']).name} ({r['backbone']}) | {r['maps'][0]} x {r['maps'][1]} | "
            f"{100 * a['self_wins']:.1f} % | {a['mean_difference']:+.4f} | {100 * e['self_wins']:.1f} % | "
            f"{e['mean_difference']:+.4f} | {100 * a['saturated']:.1f} % / {100 * e['saturated']:.1f} % | "
            f"{100 * r['gate_open']:.1f} % | {100 * r['gate_closed']:.1f} % | {r['top_map_correlation']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="*", type=Path)
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    paths = args.checkpoints or sorted(
        c.with_suffix(".safetensors") for c in (ROOT / "assets" / "checkpoints").glob("*.json")
        if json.loads(c.read_text()).get("architecture") == "apinet")
    rows = [measure(path, args.split, args.k) for path in paths]
    print(f"SynthBirds {args.split} split, each image paired as in training; top-{args.k} gated channels\n")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
