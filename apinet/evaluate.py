"""``python -m apinet evaluate``: top-1, per-class accuracy and the most confused class pairs.

The checkpoint's model card says how to preprocess (input size, resize, mean, std) and, for
SynthBirds, at which size the images were rendered; the test path is the paper's (no pairing).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
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
        extra = {k: v for k, v in self.extra.items() if k != "reference"}  # the object goes into the export
        data = asdict(self.__class__(**{**self.__dict__, "extra": {}}))
        if data["ltpa_top1"] is None:
            del data["ltpa_top1"]
        data.pop("extra")
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


def checkpoint_dataset(card: dict[str, Any], data: str | None, split: str, *, per_class: int | None = None):
    """A split of the checkpoint's dataset (or ``data``), preprocessed as its card says.

    ``per_class`` keeps the first that many images of each class (SynthBirds renders just those).
    Returns ``(dataset, spec)``.
    """
    from .data import Preprocess, build_dataset
    from .train import _dataset_kwargs

    dataset_card = card.get("dataset") or {}
    data = data or dataset_card.get("spec")
    if not data:
        raise ValueError("--data is required: the model card names no dataset")
    kwargs = _dataset_kwargs(data, {"image_size": dataset_card.get("image_size"), "per_class": per_class,
                                    "val_per_class": per_class}, split)
    dataset = build_dataset(data, split, Preprocess.from_card(card).transform(False), **kwargs)
    names = list(card.get("class_names") or dataset.classes)
    if len(dataset.classes) != len(names):
        raise ValueError(
            f"{data} ({split}) has {len(dataset.classes)} classes but the checkpoint was trained on {len(names)}"
        )
    if per_class is not None and "per_class" not in kwargs:
        taken: Counter[int] = Counter()
        keep = []
        for index, label in enumerate(getattr(dataset, "labels", [])):
            if taken[label] < per_class:
                taken[label] += 1
                keep.append(index)
        dataset = torch.utils.data.Subset(dataset, keep)
    return dataset, data


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "test",
    *,
    batch_size: int = 64,
    workers: int = 0,
    device: str = "cpu",
    reference_per_class: int | None = None,
) -> EvaluationResult:
    """Accuracy of a checkpoint on a split. ``reference_per_class`` also makes the checkpoint's
    :class:`~apinet.ood.FeatureReference` (bank: that many training images per class; threshold: the
    99th percentile of the validation images) and measures its false alarms on ``split``; it is
    returned in ``extra["reference"]`` (the object) and ``extra["reference_false_alarm"]``."""
    from .checkpoint import load_model
    from .train import evaluate_loader

    model, card = load_model(checkpoint, map_location=device)
    dataset, data = checkpoint_dataset(card, data, split)
    names = list(card.get("class_names") or dataset.classes)

    def loader(ds):
        return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)

    result = evaluate_loader(model, loader(dataset), return_pooled=reference_per_class is not None)
    summary = summarize(result["pred"], result["target"], names)
    extra: dict[str, Any] = {}
    if reference_per_class is not None:
        from .ood import make_reference

        calibration = "val" if split != "val" else "train"
        reference = make_reference(
            model, loader(checkpoint_dataset(card, data, "train", per_class=reference_per_class)[0]),
            loader(checkpoint_dataset(card, data, calibration)[0]),
            dataset=(card.get("dataset") or {}).get("name") or data)
        reference.info.update({"bank_split": "train", "calibration_split": calibration})
        flagged = reference.unusual(result["pooled"])
        reference.info[f"{split}_false_alarm"] = float(flagged.mean())
        reference.info[f"{split}_images"] = int(flagged.size)
        extra = {"reference": reference, "reference_false_alarm": float(flagged.mean())}
    return EvaluationResult(
        checkpoint=str(checkpoint),
        data=data,
        split=split,
        ltpa_top1=result.get("ltpa_top1"),
        extra=extra,
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
    p.add_argument("--reference-per-class", type=int_range(0, 10_000), default=20, metavar="N",
                   help="with --export: store a reference of N training images per class, so apps can say when "
                        "an image is unlike the training data (0: none)")
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
        per_class = args.reference_per_class if args.export and args.reference_per_class > 0 else None
        result = evaluate_checkpoint(args.checkpoint, args.data, args.split, batch_size=args.batch_size,
                                     workers=args.workers, device=args.device, reference_per_class=per_class)
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
        dst = export_checkpoint(args.checkpoint, args.export, dtype=getattr(torch, args.export_dtype), metrics=metrics,
                                reference=result.extra.get("reference"))
        print(f"exported {dst} ({args.export_dtype}) with the {split} metrics in its card", file=sys.stderr)
    return 0
