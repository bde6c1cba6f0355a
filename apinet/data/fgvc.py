"""FGVC-Aircraft and Stanford Cars from files already on disk (never downloaded).

torchvision parses the annotation files; apinet decodes the images (:func:`load_image`) and, when
files are absent, says exactly what to put where instead of torchvision's "Dataset not found".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from apinet.data.base import DatasetError, FileImageDataset, OnError
from apinet.data.images import DEFAULT_MAX_PIXELS

__all__ = ["FGVCAircraft", "StanfordCars"]

_AIRCRAFT_FOLDER = "fgvc-aircraft-2013b"
_CARS_FOLDER = "stanford_cars"
_MISSING_EXAMPLES = 5


class FGVCAircraft(FileImageDataset):
    """FGVC-Aircraft 2013b (100 variants, 10,000 images).

    Args:
        root: folder containing ``fgvc-aircraft-2013b/`` (or that folder itself).
        split: "train", "val", "trainval" or "test".
        annotation_level: "variant" (100 classes, the paper's setting), "family" or "manufacturer".

    Note: the images keep the 20-pixel copyright banner at their bottom edge, as in torchvision.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Callable[[Image.Image], Any] | None = None,
        on_error: OnError = "raise",
        annotation_level: str = "variant",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        from torchvision.datasets import FGVCAircraft as _TorchvisionAircraft

        if split not in ("train", "val", "trainval", "test"):
            raise DatasetError(f"FGVC-Aircraft splits are train, val, trainval and test, got {split!r}")
        levels = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}
        if annotation_level not in levels:
            raise DatasetError(f"annotation_level must be one of {sorted(levels)}, got {annotation_level!r}")
        parent = _parent_of(Path(root).expanduser(), _AIRCRAFT_FOLDER)
        data = f"{_AIRCRAFT_FOLDER}/data"
        _require(
            "FGVC-Aircraft",
            parent,
            files=[f"{data}/{levels[annotation_level]}", f"{data}/images_{annotation_level}_{split}.txt"],
            folders=[f"{data}/images"],
            how="download fgvc-aircraft-2013b.tar.gz from "
            "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ and extract it there",
        )
        inner = _TorchvisionAircraft(parent, split=split, annotation_level=annotation_level, download=False)
        paths = [Path(p) for p in _internal(inner, "_image_files")]
        _require_images("FGVC-Aircraft", parent, paths)
        self.root = parent
        self.split = split
        super().__init__(
            name=f"aircraft:{parent}",
            paths=paths,
            labels=_internal(inner, "_labels"),
            classes=list(inner.classes),
            transform=transform,
            on_error=on_error,
            max_pixels=max_pixels,
        )


class StanfordCars(FileImageDataset):
    """Stanford Cars (196 classes, 8,144 train / 8,041 test images); needs scipy for the .mat files.

    Args:
        root: folder containing ``stanford_cars/`` (or that folder itself) laid out as torchvision
            expects: ``devkit/cars_meta.mat``, ``devkit/cars_train_annos.mat``, ``cars_train/``,
            ``cars_test_annos_withlabels.mat``, ``cars_test/``.
        split: "train" or "test" (there is no validation split).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Callable[[Image.Image], Any] | None = None,
        on_error: OnError = "raise",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        from torchvision.datasets import StanfordCars as _TorchvisionCars

        if split not in ("train", "test"):
            raise DatasetError(
                f"Stanford Cars has splits 'train' and 'test' (no validation split), got {split!r}"
            )
        parent = _parent_of(Path(root).expanduser(), _CARS_FOLDER)
        annotations = "devkit/cars_train_annos.mat" if split == "train" else "cars_test_annos_withlabels.mat"
        _require(
            "Stanford Cars",
            parent,
            files=[f"{_CARS_FOLDER}/devkit/cars_meta.mat", f"{_CARS_FOLDER}/{annotations}"],
            folders=[f"{_CARS_FOLDER}/cars_{split}"],
            how="the original download is offline; obtain the archives (e.g. a Kaggle mirror) and "
            "arrange them as torchvision.datasets.StanfordCars documents",
        )
        try:
            inner = _TorchvisionCars(parent, split=split, download=False)
        except RuntimeError as error:  # scipy missing
            raise DatasetError(f"Stanford Cars: {error}") from None
        samples = _internal(inner, "_samples")
        paths = [Path(path) for path, _ in samples]
        _require_images("Stanford Cars", parent, paths)
        self.root = parent
        self.split = split
        super().__init__(
            name=f"cars:{parent}",
            paths=paths,
            labels=[int(label) for _, label in samples],
            classes=[str(c) for c in inner.classes],
            transform=transform,
            on_error=on_error,
            max_pixels=max_pixels,
        )


def _parent_of(root: Path, folder: str) -> Path:
    """torchvision wants the parent of the dataset folder; accept either."""
    return root.parent if root.name == folder else root


def _require(dataset: str, parent: Path, *, files: list[str], folders: list[str], how: str) -> None:
    missing = [f for f in files if not (parent / f).is_file()]
    missing += [f"{d}/" for d in folders if not (parent / d).is_dir()]
    if missing:
        raise DatasetError(f"{dataset} not found under {parent}: missing {', '.join(missing)}; {how}")


def _require_images(dataset: str, parent: Path, paths: list[Path]) -> None:
    absent = [p for p in paths if not p.is_file()]
    if absent:
        examples = ", ".join(str(p) for p in absent[:_MISSING_EXAMPLES])
        raise DatasetError(
            f"{dataset} under {parent} is incomplete: "
            f"missing {len(absent)} of {len(paths)} image files (e.g. {examples})"
        )


def _internal(dataset: object, attribute: str) -> Any:
    # torchvision exposes no public file list; fail clearly if its internals ever change.
    if not hasattr(dataset, attribute):
        raise DatasetError(
            f"this torchvision version's {type(dataset).__name__} has no {attribute!r}; "
            "apinet.data.fgvc needs updating"
        )
    return getattr(dataset, attribute)
