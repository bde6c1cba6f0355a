"""Datasets and image decoding for API-Net Explorer.

``build_dataset(spec, split)`` turns a short spec string into a dataset with the common interface
(:class:`LabelledImageDataset`)::

    synthbirds            the embedded procedural dataset (seed 0)
    synthbirds:SEED       another seed
    cub:PATH              CUB-200-2011 (the CUB_200_2011 folder or its parent)
    folder:PATH           class-per-folder images, optionally under train/ val/ test/
    aircraft:PATH         FGVC-Aircraft 2013b (folder containing fgvc-aircraft-2013b/)
    cars:PATH             Stanford Cars (folder containing stanford_cars/)
"""

from __future__ import annotations

from typing import Any, Callable

from PIL import Image

from apinet.data.base import DatasetError, LabelledImageDataset, readable_class_name
from apinet.data.cub import CUB200
from apinet.data.fgvc import FGVCAircraft, StanfordCars
from apinet.data.folder import ImageFolderDataset
from apinet.data.images import DEFAULT_MAX_PIXELS, ImageDecodeError, image_sha256, load_image
from apinet.data.synthbirds import PARTS, SynthBirds, SynthBirdsSample, export_gallery
from apinet.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    build_transforms,
    denormalize,
)

__all__ = [
    "CUB200",
    "DATASET_SPECS",
    "DEFAULT_MAX_PIXELS",
    "DatasetError",
    "FGVCAircraft",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageDecodeError",
    "ImageFolderDataset",
    "LabelledImageDataset",
    "PARTS",
    "Preprocess",
    "StanfordCars",
    "SynthBirds",
    "SynthBirdsSample",
    "build_dataset",
    "build_transforms",
    "denormalize",
    "export_gallery",
    "image_sha256",
    "load_image",
    "readable_class_name",
    "split_options",
]

#: The accepted ``build_dataset`` spec forms, as shown in error messages and CLI help.
DATASET_SPECS: tuple[str, ...] = (
    "synthbirds",
    "synthbirds:SEED",
    "cub:PATH",
    "folder:PATH",
    "aircraft:PATH",
    "cars:PATH",
)

_BY_PATH: dict[str, Callable[..., LabelledImageDataset]] = {
    "cub": CUB200,
    "folder": ImageFolderDataset,
    "aircraft": FGVCAircraft,
    "cars": StanfordCars,
}


def build_dataset(
    spec: str,
    split: str,
    transform: Callable[[Image.Image], Any] | None = None,
    **kwargs: Any,
) -> LabelledImageDataset:
    """Build the dataset named by ``spec`` (see the module docstring) for ``split``.

    Extra keyword arguments go to the dataset class (e.g. ``image_size`` / ``per_class`` /
    ``cache_dir`` for SynthBirds, ``on_error`` for file datasets).

    Raises:
        DatasetError: unknown spec, bad seed, missing path, or a missing / incomplete dataset folder.
    """
    kind, has_argument, argument = spec.strip().partition(":")
    kind = kind.strip().lower()
    argument = argument.strip()
    if kind == "synthbirds":
        if has_argument and not _is_int(argument):
            raise DatasetError(f"dataset spec {spec!r}: SEED must be an integer, as in 'synthbirds:1'")
        seed = int(argument) if has_argument else 0
        try:
            return SynthBirds(split=split, seed=seed, transform=transform, **kwargs)
        except ValueError as error:
            raise DatasetError(f"dataset spec {spec!r}: {error}") from None
    if kind in _BY_PATH:
        if not argument:
            raise DatasetError(f"dataset spec {spec!r} needs a path, as in '{kind}:/data/{kind}'")
        return _BY_PATH[kind](argument, split=split, transform=transform, **kwargs)
    raise DatasetError(f"unknown dataset spec {spec!r}; accepted forms: {', '.join(DATASET_SPECS)}")


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def split_options(spec: str, split: str, *, image_size: int | None = None, per_class: int | None = None,
                  val_per_class: int | None = None) -> dict[str, Any]:
    """The ``build_dataset`` keyword arguments of one split of a recipe: for SynthBirds its render
    size and images per class (``per_class`` for the training split, ``val_per_class`` for the
    others); ``{}`` for datasets read from files."""
    if spec.strip().lower().split(":")[0] != "synthbirds":
        return {}
    kwargs: dict[str, Any] = {}
    if image_size:
        kwargs["image_size"] = int(image_size)
    if split == "train" and per_class:
        kwargs["per_class"] = int(per_class)
    if split != "train" and val_per_class:
        kwargs["per_class"] = int(val_per_class)
    return kwargs
