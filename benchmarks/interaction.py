"""Is the pairwise interaction of each shipped API-Net active? (issue #12; apinet.mechanism)

    python benchmarks/interaction.py [CHECKPOINT ...] [--split test] [--k 5] [--json OUT]

With no checkpoint, every API-Net checkpoint in assets/checkpoints is measured. Each image of the split
is paired as in training, with its nearest same-class (intra) and nearest other-class (inter) image by
pooled features; the table gives, for each kind of pair, the share of images with p_self(c) > p_other(c)
(c = the true class) and the mean difference, the share where both probabilities exceed 0.999, the
share of gates above 0.999 / below 0.001, and the mean pairwise correlation of the top-k gated
channels' maps. Choose recipes on ``--split val``; report ``--split test``.

A second table (issue #22, :func:`apinet.mechanism.gate_activity`) says whether the gates act, on the
same pairs: the mean standard deviation of a gate vector over channels, the mean |g1 - g2|, the share
of gates farther than 0.1 from 0.5, for each kind of pair p_self > p_other (share, mean difference),
the target-class logit difference logit_self - logit_other, the ranking-loss term and the share of
pairs meeting its margin (0.05), the first-order account of g1 - g2, and the test-path top-1.
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
from apinet.mechanism import collect_features, gate_activity, interaction_statistics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


_FEATURES: dict[str, tuple] = {}  # trunk digest -> (pooled, maps, labels): checkpoints that differ only in
# their mutual MLP (the interaction stage's input and output) share one trunk pass


def _trunk_key(model: torch.nn.Module, card: dict, split: str) -> str:
    import hashlib

    h = hashlib.sha256(json.dumps([card.get("preprocess"), card.get("dataset"), split], sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith(("mutual.", "fc.")):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def measure(checkpoint: Path, split: str, k: int) -> dict:
    model, card = load_model(checkpoint)
    dataset, spec = checkpoint_dataset(card, None, split)
    loader = torch.utils.data.DataLoader(dataset, batch_size=50, shuffle=False)
    start = time.perf_counter()
    key = _trunk_key(model, card, split)
    if key not in _FEATURES:
        _FEATURES[key] = collect_features(model, loader)
    pooled, maps, labels = _FEATURES[key]
    stats = interaction_statistics(model, pooled, maps, labels, k=k)
    activity = gate_activity(model, pooled, labels)
    return {"checkpoint": str(checkpoint.relative_to(ROOT) if checkpoint.is_relative_to(ROOT) else checkpoint),
            "backbone": card["config"]["backbone"], "maps": list(maps.shape[-2:]), "data": spec, "split": split,
            "seconds": round(time.perf_counter() - start, 1), **stats.to_dict(), "activity": activity.to_dict()}


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


def activity_markdown(rows: list[dict]) -> str:
    """Issue #22's table: do the gates act (targets: std >= 0.15, |g1 - g2| >= 0.08, inter p_self >
    p_other >= 90 % with mean >= +0.01)."""
    lines = [
        "| checkpoint | gate std over channels | mean \\|g1 - g2\\| | gates > 0.1 from 0.5 | "
        "inter: p_self > p_other, mean diff | inter: logit_self - logit_other (> 0) | "
        "intra: p_self > p_other, mean diff | intra: logit_self - logit_other (> 0) | "
        "rank term inter / intra (margin met) | relative feature gap inter / intra | "
        "first-order error of g1 - g2 inter / intra | test-path top-1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = r["activity"]
        e, i = a["inter"], a["intra"]
        lines.append(
            f"| {Path(r['checkpoint']).name} | {a['gate_std']:.3f} | {a['gate_gap']:.3f} | "
            f"{100 * a['gate_far']:.1f} % | {100 * e['self_wins']:.1f} %, {e['mean_difference']:+.4f} | "
            f"{e['logit_gap']:+.3f} ({100 * e['logit_wins']:.1f} %) | "
            f"{100 * i['self_wins']:.1f} %, {i['mean_difference']:+.4f} | "
            f"{i['logit_gap']:+.3f} ({100 * i['logit_wins']:.1f} %) | "
            f"{e['rank_loss']:.4f} ({100 * e['margin_met']:.1f} %) / {i['rank_loss']:.4f} ({100 * i['margin_met']:.1f} %) | "
            f"{e['feature_gap']:.3f} / {i['feature_gap']:.3f} | "
            f"{e['first_order_error']:.3f} / {i['first_order_error']:.3f} | {100 * a['test_path_top1']:.2f} % |")
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
    print(f"\nGate activity (issue #22), same pairs, {rows[0]['activity']['images'] if rows else 0} images:\n")
    print(activity_markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
