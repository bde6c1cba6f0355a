"""Tiny randomly initialised checkpoints + gallery for the app tests (fast on a CPU)."""

from __future__ import annotations

from pathlib import Path

import torch

import apinet
from apinet.data import SynthBirds, export_gallery

INPUT_SIZE = 64  # the gallery's 128 px images are resized for the tiny models: a pair explains in < 1 s


def make_app_assets(root: Path, *, per_class: int = 2) -> dict[str, Path]:
    """Write demo-named API-Net and baseline checkpoints (ResNet-18, os 16) and a small gallery.

    Returns the folders to put in APINET_CHECKPOINT_DIR / APINET_RUNS_DIR / APINET_GALLERY_DIR.
    """
    root = Path(root)
    names = list(SynthBirds.CLASSES)
    checkpoints, runs, gallery = root / "checkpoints", root / "runs", root / "gallery"
    preprocess = {"input_size": INPUT_SIZE, "resize": INPUT_SIZE}
    torch.manual_seed(0)
    model = apinet.APINet("resnet18", num_classes=len(names), output_stride=16).eval()
    apinet.save_checkpoint(model, checkpoints / "apinet_synthbirds.safetensors", class_names=names,
                           preprocess=preprocess, metrics={"test_accuracy": 0.05})
    torch.manual_seed(1)
    baseline = apinet.Baseline("resnet18", num_classes=len(names), output_stride=16).eval()
    apinet.save_checkpoint(baseline, checkpoints / "baseline_synthbirds.safetensors", class_names=names,
                           preprocess=preprocess)
    # A second API-Net in the runs folder (with a trained LTPA estimator) to exercise discovery.
    torch.manual_seed(2)
    extra = apinet.APINet("resnet18", num_classes=len(names), output_stride=16,
                          ltpa={"stages": ["layer3", "layer4"]}).eval()
    apinet.save_checkpoint(extra, runs / "ltpa-run" / "best.safetensors", class_names=names, preprocess=preprocess)
    export_gallery(gallery, per_class=per_class)
    return {"checkpoints": checkpoints, "runs": runs, "gallery": gallery}


if __name__ == "__main__":
    import sys

    print(make_app_assets(Path(sys.argv[1])))
