"""Class-per-folder image datasets: ``root/<class>/<image>``, optionally under ``train/ val/ test/``.

Class indices come from the sorted union of class folder names over *all* split folders, so a class
that has no images in one split does not shift the labels of the others.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image

from apinet.data.base import DatasetError, FileImageDataset, OnError, readable_class_name
from apinet.data.images import DEFAULT_MAX_PIXELS

__all__ = ["IMAGE_EXTENSIONS", "SPLIT_FOLDERS", "ImageFolderDataset"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT_FOLDERS: tuple[str, ...] = ("train", "val", "test")


class ImageFolderDataset(FileImageDataset):
    """Images sorted into one folder per class.

    Args:
        root: folder holding class folders, or ``train/``, ``val/``, ``test/`` folders of class folders.
        split: which split folder to read. ``None`` reads class folders directly under ``root``.
            If ``root`` has no split folders at all, every split reads ``root`` (with a warning:
            training and evaluation then see the same images).
        transform: applied to the PIL image in ``__getitem__``.
        on_error: "raise" or "skip" unreadable images (see :mod:`apinet.data.base`).
        extensions: file name endings counted as images (case-insensitive); other files are ignored.

    ``classes`` are readable names ("001.Black_footed" -> "Black footed"); ``folder_names`` the raw ones.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
        on_error: OnError = "raise",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.root = Path(root).expanduser()
        self.split = split
        self.extensions = tuple(e.lower() for e in extensions)
        split_dir, all_split_dirs = self._locate_split(split)
        self.folder_names: list[str] = sorted({name for d in all_split_dirs for name in _subfolders(d)})
        if not self.folder_names:
            raise DatasetError(self._no_classes_message(split_dir))
        paths, labels = [], []
        for label, folder in enumerate(self.folder_names):
            for path in _image_files(split_dir / folder, self.extensions):
                paths.append(path)
                labels.append(label)
        if not paths:
            raise DatasetError(
                f"no images ({', '.join(self.extensions)}) in the "
                f"{len(self.folder_names)} class folder(s) of {split_dir}"
            )
        readable = [readable_class_name(f) for f in self.folder_names]
        super().__init__(
            name=f"folder:{self.root}",
            paths=paths,
            labels=labels,
            classes=readable if len(set(readable)) == len(readable) else self.folder_names,
            transform=transform,
            on_error=on_error,
            max_pixels=max_pixels,
        )

    def _locate_split(self, split: str | None) -> tuple[Path, list[Path]]:
        """(folder to read, every folder whose class folders define the label set)."""
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "not found"
            raise DatasetError(f"image folder {what}: {self.root}")
        present = [self.root / s for s in SPLIT_FOLDERS if (self.root / s).is_dir()]
        if not present:
            if split is not None:
                warnings.warn(
                    f"{self.root} has no {'/'.join(SPLIT_FOLDERS)} folders: split {split!r} uses all "
                    "its images (the same images serve every split)",
                    UserWarning,
                    stacklevel=3,
                )
            return self.root, [self.root]
        found = ", ".join(p.name for p in present)
        if split is None:
            raise DatasetError(f"{self.root} has split folders ({found}): pass split= one of them")
        if split not in SPLIT_FOLDERS or not (self.root / split).is_dir():
            raise DatasetError(f"{self.root} has no {split!r} split folder (found: {found})")
        return self.root / split, present

    def _no_classes_message(self, folder: Path) -> str:
        loose = _image_files(folder, self.extensions)
        hint = (
            f"; found {len(loose)} image file(s) directly in it: put each class's images in its own subfolder"
            if loose
            else ""
        )
        return f"{folder} has no class folders (expected {folder}/<class name>/<image files>){hint}"


def _subfolders(folder: Path) -> list[str]:
    return [e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")]


def _image_files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []  # a class present in another split only
    return sorted(
        Path(e.path)
        for e in os.scandir(folder)
        if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(extensions)
    )
