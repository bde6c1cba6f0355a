"""``python -m apinet evaluate``: top-1, per-class accuracy and the most confused class pairs.

The checkpoint's model card says how to preprocess (input size, resize, mean, std) and, for
SynthBirds, at which size the images were rendered; the test path is the paper's (no pairing).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._args import int_range

__all__ = ["EvaluationResult", "confused_pairs", "evaluate_checkpoint", "register", "summarize"]


@dataclass
class EvaluationResult:
    checkpoint: str
    data: str
    split: str
    num_images: int
    top1: float
    per_class: dict[str, float]  # class name -> accuracy on its images (NaN-free: classes with images only)
    confused_pairs: list[dict[str, Any]]  # [{"true", "predicted", "count"}], most frequent first, at most 10
    ltpa_top1: float | None = None  # accuracy of the LTPA estimator's own classifier, when the model has one
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["ltpa_top1"] is None:
            del data["ltpa_top1"]
        extra = data.pop("extra")
        return {**data, **extra}


def confused_pairs(pred: torch.Tensor, target: torch.Tensor, class_names: list[str], top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` most frequent (true, predicted) pairs with true != predicted."""
    n = len(class_names)
    wrong = pred != target
    if not bool(wrong.any()):
        return []
    counts = torch.bincount(target[wrong] * n + pred[wrong], minlength=n * n)
    order = torch.argsort(counts, descending=True, stable=True)[:top]
    return [
        {"true": class_names[int(i) // n], "predicted": class_names[int(i) % n], "count": int(counts[i])}
        for i in order
        if counts[i] > 0
    ]


def summarize(pred: torch.Tensor, target: torch.Tensor, class_names: list[str]) -> dict[str, Any]:
    pred, target = pred.long().cpu(), target.long().cpu()
    per_class = {}
    for c, name in enumerate(class_names):
        mask = target == c
        if bool(mask.any()):
            per_class[name] = float((pred[mask] == c).float().mean())
    return {
        "num_images": int(target.numel()),
        "top1": float((pred == target).float().mean()) if target.numel() else 0.0,
        "per_class": per_class,
        "confused_pairs": confused_pairs(pred, target, class_names),
    }


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "test",
    *,
    batch_size: int = 64,
    workers: int = 0,
    device: str = "cpu",
) -> EvaluationResult:
    from .checkpoint import load_model
    from .data import Preprocess, build_dataset
    from .train import _dataset_kwargs, evaluate_loader

    model, card = load_model(checkpoint, map_location=device)
    dataset_card = card.get("dataset") or {}
    data = data or dataset_card.get("spec")
    if not data:
        raise ValueError("--data is required: the model card names no dataset")
    preprocess = Preprocess.from_card(card)
    kwargs = _dataset_kwargs(data, {"image_size": dataset_card.get("image_size")}, split)
    dataset = build_dataset(data, split, preprocess.transform(False), **kwargs)
    names = list(card.get("class_names") or dataset.classes)
    if len(dataset.classes) != len(names):
        raise ValueError(
            f"{data} ({split}) has {len(dataset.classes)} classes but the checkpoint was trained on {len(names)}"
        )
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    result = evaluate_loader(model, loader)
    summary = summarize(result["pred"], result["target"], names)
    return EvaluationResult(
        checkpoint=str(checkpoint),
        data=data,
        split=split,
        ltpa_top1=result.get("ltpa_top1"),
        **summary,
    )


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="accuracy of a checkpoint on a dataset split")
    p.add_argument("--checkpoint", required=True, help="a .safetensors file with its .json card beside it")
    p.add_argument("--data", default=None, help="dataset spec (default: the one in the model card)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", default=None, help="write the metrics JSON here")
    p.add_argument("--batch-size", type=int_range(1, 4096), default=64)
    p.add_argument("--workers", type=int_range(0, 256), default=0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int_range(1, 1024), default=None, help="torch CPU threads")
    p.add_argument("--export", default=None, metavar="PATH",
                   help="also write a copy of the checkpoint (float16 by default) whose card holds these metrics")
    p.add_argument("--export-dtype", choices=["float16", "float32"], default="float16")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError
    from .cli import UserError

    from ._io import checkpoint_files, dataset_root, refuse_overwriting_inputs

    data = args.data
    if data is None:  # the card's dataset: its files are inputs too (an unreadable card fails below)
        from .checkpoint import load_card

        try:
            recorded = load_card(args.checkpoint).get("dataset")
            data = recorded.get("spec") if isinstance(recorded, dict) else None
        except (CheckpointError, OSError, ValueError):
            data = None
    # Before anything is computed: neither output may replace the checkpoint, its card or the data.
    refuse_overwriting_inputs(
        {"--out": args.out, "--export": checkpoint_files(args.export)},
        {"--checkpoint": checkpoint_files(args.checkpoint), "--data": dataset_root(data)},
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    try:
        result = evaluate_checkpoint(args.checkpoint, args.data, args.split, batch_size=args.batch_size,
                                     workers=args.workers, device=args.device)
    except CheckpointError as exc:
        raise UserError(str(exc)) from None
    text = json.dumps(result.to_dict(), indent=2)
    print(text)
    if args.out:
        from ._io import atomic_write

        atomic_write(Path(args.out), lambda tmp: tmp.write_text(text + "\n"))
    if args.export:
        from .train import export_checkpoint

        split = args.split
        kept = ("top1", "ltpa_top1", "num_images", "per_class", "confused_pairs")
        metrics = {f"{split}_{k}": v for k, v in result.to_dict().items() if k in kept}
        metrics[f"{split}_split"] = split
        dst = export_checkpoint(args.checkpoint, args.export, dtype=getattr(torch, args.export_dtype), metrics=metrics)
        print(f"exported {dst} ({args.export_dtype}) with the {split} metrics in its card", file=sys.stderr)
    return 0
