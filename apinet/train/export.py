"""A copy of a checkpoint for sharing: cast (float16 by default), with extra metrics and the k-NN
reference in its card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..checkpoint import save_checkpoint

__all__ = ["export_checkpoint"]


def export_checkpoint(src: str | Path, dst: str | Path, *, dtype: torch.dtype | None = torch.float16,
                      metrics: dict[str, Any] | None = None, reference: Any = None) -> Path:
    """Copy a checkpoint (optionally cast, e.g. to float16) with its card, merging extra metrics;
    ``reference`` (an :class:`apinet.ood.FeatureReference`) is stored with it, replacing any it had."""
    from .._io import checkpoint_files, refuse_overwriting_inputs
    from ..checkpoint import load_model
    from ..ood import BANK_KEY, FeatureReference

    refuse_overwriting_inputs({"export": checkpoint_files(dst)}, {"checkpoint": checkpoint_files(src)})
    model, card = load_model(src)
    if reference is None:
        reference = FeatureReference.from_checkpoint(src, card)
    extra = {}
    card.pop("reference", None)
    if reference is not None:
        extra[BANK_KEY] = reference.bank
        card["reference"] = reference.card_entry()
    for key in ("format", "architecture", "backbone", "num_classes", "config", "weights_file", "weights_sha256",
                "weights_dtype", "saved_at"):
        card.pop(key, None)
    card["metrics"] = {**card.get("metrics", {}), **(metrics or {})}
    card["exported_from"] = str(src)
    return save_checkpoint(model, dst, dtype=dtype, extra_tensors=extra, **card)
