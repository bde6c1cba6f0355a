"""Tiny randomly initialised checkpoints + gallery for the app tests (fast on a CPU)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import torch

import apinet
from apinet.data import SynthBirds, export_gallery

INPUT_SIZE = 64  # the gallery's 128 px images are resized for the tiny models: a pair explains in < 1 s


_WRITTEN: dict[int, Path] = {}  # per_class -> this process's first set, copied by later calls


def make_app_assets(root: Path, *, per_class: int = 2) -> dict[str, Path]:
    """Write demo-named API-Net and baseline checkpoints (ResNet-18, os 16) and a small gallery.

    Returns the folders to put in APINET_CHECKPOINT_DIR / APINET_RUNS_DIR / APINET_GALLERY_DIR.
    The files are the same on every call (seeded models, the procedural gallery; only the cards'
    ``saved_at`` differed), so a process writes them once and copies them into every later ``root``:
    0.05 s instead of 0.8 s, about fifteen times a run. The app's caches are keyed by path, so each
    copy is still new to it.
    """
    first = _WRITTEN.get(per_class)
    if first is None or not first.is_dir():
        first = Path(tempfile.mkdtemp(prefix="apinet-app-assets-"))
        atexit.register(shutil.rmtree, first, ignore_errors=True)
        _write_app_assets(first, per_class=per_class)
        _WRITTEN[per_class] = first
    root = Path(root)
    shutil.copytree(first, root, dirs_exist_ok=True)
    return {"checkpoints": root / "checkpoints", "runs": root / "runs", "gallery": root / "gallery"}


def _write_app_assets(root: Path, *, per_class: int) -> None:
    """The files of :func:`make_app_assets`, written under ``root``."""
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


if __name__ == "__main__":
    import sys

    print(make_app_assets(Path(sys.argv[1])))
