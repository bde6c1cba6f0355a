"""``python -m apinet evaluate``: top-1, per-class accuracy and the most confused class pairs.

The checkpoint's model card says how to preprocess (input size, resize, mean, std) and, for
SynthBirds, at which size the images were rendered; the test path is the paper's (no pairing).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["EvaluationResult", "confused_pairs", "evaluate_checkpoint", "summarize"]


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
    from .data import Preprocess, build_dataset, split_options

    dataset_card = card.get("dataset") or {}
    data = data or dataset_card.get("spec")
    if not data:
        raise ValueError("--data is required: the model card names no dataset")
    kwargs = split_options(data, split, image_size=dataset_card.get("image_size"), per_class=per_class,
                           val_per_class=per_class)
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
