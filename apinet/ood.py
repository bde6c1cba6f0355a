"""Is an image like the model's training data? A deep k-nearest-neighbour test on pooled features.

A classifier answers with one of its classes whatever it is shown: the SynthBirds demo calls a photo
of a cat a shrike. Following Sun et al., "Out-of-Distribution Detection with Deep Nearest Neighbors"
(ICML 2022), the pooled features (what the classifier sees) are L2-normalised and an image is scored
by its cosine distance to the k-th nearest of a bank of training images' features. The threshold is
a percentile of the validation images' scores (99: about 1 % of images like the training data are
flagged), and the false-alarm rate this gives on the test split is measured when the reference is
made and recorded in the model card, beside the threshold.

The reference travels inside the checkpoint: the bank as the ``reference.bank`` tensor of the
safetensors file (covered by the card's SHA-256), its settings and measured rates as the card's
``reference`` entry. ``python -m apinet evaluate --export`` makes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["BANK_KEY", "FeatureReference", "knn_scores", "make_reference"]

BANK_KEY = "reference.bank"


def _normalise(features: Tensor | np.ndarray) -> Tensor:
    x = torch.as_tensor(np.asarray(features) if not isinstance(features, Tensor) else features).float()
    if x.ndim == 1:
        x = x[None]
    return torch.nn.functional.normalize(x, dim=1)


def knn_scores(bank: Tensor, features: Tensor | np.ndarray, k: int, *, exclude_self: bool = False) -> np.ndarray:
    """Cosine distance of each row of ``features [B, D]`` to its ``k``-th nearest row of ``bank [N, D]``.

    ``bank`` must already be L2-normalised. ``exclude_self`` skips each row's nearest neighbour (use it
    when ``features`` are the bank's own rows).
    """
    x = _normalise(features)
    sims = x @ bank.float().T  # [B, N]
    kth = k + 1 if exclude_self else k
    if kth > bank.shape[0]:
        raise ValueError(f"k={k} needs at least {kth} reference images, the bank has {bank.shape[0]}")
    top = sims.topk(kth, dim=1).values[:, -1]
    return (1.0 - top).numpy()


@dataclass
class FeatureReference:
    """A bank of training features and the threshold beyond which an image counts as unusual."""

    bank: Tensor  # [N, D] float32, L2-normalised pooled features of training images
    k: int
    threshold: float  # cosine distance to the k-th neighbour; above it an image is unusual
    info: dict[str, Any] = field(default_factory=dict)  # percentile, splits, measured false-alarm rates

    def scores(self, features: Tensor | np.ndarray) -> np.ndarray:
        """``[B]`` distances of pooled features ``[B, D]`` (or one ``[D]``) to their k-th neighbour."""
        return knn_scores(self.bank, features, self.k)

    def unusual(self, features: Tensor | np.ndarray) -> np.ndarray:
        return self.scores(features) > self.threshold

    def message(self, score: float) -> str:
        """One line for a flagged image (say it beside its prediction)."""
        data = self.info.get("dataset") or "its training data"
        return (f"Unlike anything this model was trained on ({data}): distance {score:.3f} > {self.threshold:.3f}, "
                f"beyond {self.info.get('percentile', 99):g} % of its validation images; the prediction is a guess.")

    def card_entry(self) -> dict[str, Any]:
        return {"method": "knn-cosine (Sun et al., ICML 2022)", "k": self.k, "threshold": self.threshold,
                "bank_images": int(self.bank.shape[0]), **self.info}

    @classmethod
    def from_checkpoint(cls, path: str | Path, card: dict[str, Any]) -> "FeatureReference | None":
        """The reference stored in a checkpoint (``None`` when it has none). Pass the card that
        :func:`apinet.checkpoint.load_model` returned: the file was hash-checked against it."""
        entry = card.get("reference")
        if not isinstance(entry, dict):
            return None
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            if BANK_KEY not in fh.keys():
                return None
            bank = fh.get_tensor(BANK_KEY).float()
        info = {k: v for k, v in entry.items() if k not in ("method", "k", "threshold", "bank_images")}
        return cls(bank=bank, k=int(entry["k"]), threshold=float(entry["threshold"]), info=info)


def pooled_features(model: torch.nn.Module, loader) -> tuple[Tensor, Tensor]:
    """Pooled test-path features ``[N, D]`` and labels ``[N]`` of every image of a loader."""
    from .features import iterate_features

    feats, labels = [], []
    for batch in iterate_features(model, loader):
        feats.append(batch.pooled.float().cpu())
        labels.append(batch.labels)
    return torch.cat(feats), torch.cat(labels)


def make_reference(model: torch.nn.Module, bank_loader, calibration_loader, *, k: int = 5,
                   percentile: float = 99.0, dataset: str | None = None) -> FeatureReference:
    """Bank from ``bank_loader`` (training images), threshold at ``percentile`` of the scores of
    ``calibration_loader``'s images (validation images, never the test split)."""
    if not 50.0 <= percentile < 100.0:
        raise ValueError(f"percentile must be in [50, 100), got {percentile}")
    bank = _normalise(pooled_features(model, bank_loader)[0])
    calibration = knn_scores(bank, pooled_features(model, calibration_loader)[0], k)
    threshold = float(np.percentile(calibration, percentile))
    info = {"percentile": percentile, "dataset": dataset,
            "calibration_false_alarm": float((calibration > threshold).mean()),
            "calibration_images": int(calibration.size)}
    return FeatureReference(bank=bank, k=k, threshold=threshold, info=info)
