"""CUB-200-2011 (Caltech-UCSD Birds) read from its standard extracted folder.

Expected layout (``CUB_200_2011.tgz`` extracted; pass this folder or its parent)::

    CUB_200_2011/
      images.txt  image_class_labels.txt  train_test_split.txt  classes.txt  bounding_boxes.txt
      parts/parts.txt  parts/part_locs.txt
      images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg ...

A missing or partially extracted folder raises one :class:`DatasetError` listing every missing index
file and how many listed images are missing (with the first few), instead of failing later on the
first absent file. Unreadable images follow the ``on_error`` policy of
:class:`~apinet.data.base.FileImageDataset`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from apinet.data.base import DatasetError, FileImageDataset, OnError, readable_class_name
from apinet.data.images import DEFAULT_MAX_PIXELS

__all__ = ["CUB200", "CUB_FOLDER", "CUB_INDEX_FILES"]

CUB_FOLDER = "CUB_200_2011"
CUB_INDEX_FILES: tuple[str, ...] = (
    "images.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "classes.txt",
    "bounding_boxes.txt",
    "parts/parts.txt",
    "parts/part_locs.txt",
)
_SPLITS = ("train", "test")
_MISSING_EXAMPLES = 5


@dataclass
class _CubIndex:
    images: dict[int, str]  # image id -> path relative to images/
    labels: dict[int, int]  # image id -> class id (1-based, as in the files)
    is_train: dict[int, bool]
    classes: dict[int, str]  # class id -> folder name, e.g. "001.Black_footed_Albatross"
    boxes: dict[int, tuple[float, float, float, float]]  # image id -> (x, y, width, height)
    part_names: dict[int, str]
    part_locs: dict[int, dict[str, tuple[float, float]]]  # image id -> visible part -> (x, y)


class CUB200(FileImageDataset):
    """CUB-200-2011, 200 bird species: 5,994 train / 5,794 test images.

    Args:
        root: the ``CUB_200_2011`` folder or its parent.
        split: "train" or "test" (the official split; CUB has no validation split).
        transform: applied to the PIL image in ``__getitem__``.
        on_error: "raise" or "skip" unreadable images (see :mod:`apinet.data.base`).

    Boxes and part locations are in pixel coordinates of the original image (``load_pil``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Callable[[Image.Image], Any] | None = None,
        on_error: OnError = "raise",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if split not in _SPLITS:
            raise DatasetError(
                f"CUB-200-2011 has splits 'train' and 'test' (no validation split), got {split!r}"
            )
        self.root = _resolve_root(Path(root).expanduser())
        self.split = split
        index = _read_checked_index(self.root)
        want_train = split == "train"
        self.image_ids: list[int] = sorted(i for i, train in index.is_train.items() if train == want_train)
        class_ids = sorted(index.classes)
        position = {class_id: k for k, class_id in enumerate(class_ids)}
        self.folder_names: list[str] = [index.classes[c] for c in class_ids]
        self._index = index
        super().__init__(
            name=f"cub:{self.root}",
            paths=[self.root / "images" / index.images[i] for i in self.image_ids],
            labels=[position[index.labels[i]] for i in self.image_ids],
            classes=[readable_class_name(folder) for folder in self.folder_names],
            transform=transform,
            on_error=on_error,
            max_pixels=max_pixels,
        )

    def box(self, index: int) -> tuple[float, float, float, float]:
        """Bird bounding box ``(x0, y0, x1, y1)`` in pixels of the original image."""
        x, y, width, height = self._index.boxes[self.image_ids[index]]
        return (x, y, x + width, y + height)

    def parts(self, index: int) -> dict[str, tuple[float, float]]:
        """Visible annotated parts, e.g. ``{"beak": (x, y), "left eye": (x, y), ...}``."""
        return dict(self._index.part_locs.get(self.image_ids[index], {}))

    @property
    def part_names(self) -> list[str]:
        return [self._index.part_names[k] for k in sorted(self._index.part_names)]

    def _keep_only(self, positions: list[int]) -> None:
        self.image_ids = [self.image_ids[p] for p in positions]
        super()._keep_only(positions)


def _resolve_root(root: Path) -> Path:
    if not root.exists():
        raise DatasetError(
            f"CUB-200-2011 folder not found: {root}; extract CUB_200_2011.tgz and pass the "
            f"{CUB_FOLDER} folder or its parent"
        )
    nested = root / CUB_FOLDER
    if not (root / "images.txt").exists() and nested.is_dir():
        return nested
    return root


def _read_checked_index(root: Path) -> _CubIndex:
    """Check that every index file and every listed image exists (one error for all), then parse."""
    problems = []
    missing_files = [name for name in CUB_INDEX_FILES if not (root / name).is_file()]
    if missing_files:
        problems.append("missing index files: " + ", ".join(missing_files))
    if not (root / "images").is_dir():
        problems.append("missing folder: images/")
    elif (root / "images.txt").is_file():
        listed = _parse(root, "images.txt", 2, lambda f: (int(f[0]), f[1]))
        absent = [rel for rel in listed.values() if not (root / "images" / rel).is_file()]
        if absent:
            examples = ", ".join(f"images/{rel}" for rel in absent[:_MISSING_EXAMPLES])
            problems.append(
                f"missing {len(absent)} of {len(listed)} image files listed in images.txt (e.g. {examples})"
            )
    if problems:
        raise DatasetError(
            f"CUB-200-2011 at {root} is incomplete: " + "; ".join(problems)
            + f". Expected the extracted {CUB_FOLDER} folder (or its parent) from CUB_200_2011.tgz."
        )
    return _parse_index(root)


def _parse_index(root: Path) -> _CubIndex:
    images = _parse(root, "images.txt", 2, lambda f: (int(f[0]), f[1]))
    labels = _parse(root, "image_class_labels.txt", 2, lambda f: (int(f[0]), int(f[1])))
    is_train = _parse(root, "train_test_split.txt", 2, lambda f: (int(f[0]), f[1] == "1"))
    classes = _parse(root, "classes.txt", 2, lambda f: (int(f[0]), f[1]))
    boxes = _parse(root, "bounding_boxes.txt", 5, lambda f: (int(f[0]), tuple(float(v) for v in f[1:5])))
    part_names = _parse(root, "parts/parts.txt", 2, lambda f: (int(f[0]), f[1]))
    _check_consistent(images, labels, is_train, classes)
    part_locs: dict[int, dict[str, tuple[float, float]]] = {}
    for image_id, part_id, x, y, visible in _rows(root, "parts/part_locs.txt", 5, _part_loc):
        if visible:
            part_locs.setdefault(image_id, {})[part_names.get(part_id, str(part_id))] = (x, y)
    return _CubIndex(images, labels, is_train, classes, boxes, part_names, part_locs)


def _part_loc(fields: list[str]) -> tuple[int, int, float, float, bool]:
    return int(fields[0]), int(fields[1]), float(fields[2]), float(fields[3]), fields[4] == "1"


def _check_consistent(images: dict, labels: dict, is_train: dict, classes: dict) -> None:
    problems = []
    for file_name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train)):
        absent = sorted(set(images) - set(table))
        if absent:
            problems.append(f"{file_name} lacks {len(absent)} image id(s) of images.txt (e.g. {absent[:5]})")
    unknown = sorted(set(labels.values()) - set(classes))
    if unknown:
        problems.append(f"image_class_labels.txt uses class id(s) missing from classes.txt: {unknown[:5]}")
    if problems:
        raise DatasetError("CUB-200-2011 index files disagree: " + "; ".join(problems))


def _parse(root: Path, name: str, fields: int, convert: Callable[[list[str]], tuple[Any, Any]]) -> dict:
    return dict(_rows(root, name, fields, convert))


def _rows(root: Path, name: str, fields: int, convert: Callable[[list[str]], Any]) -> list[Any]:
    """Rows of a whitespace-separated index file; the last field may contain spaces (part names)."""
    rows = []
    with open(root / name, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.split(None, fields - 1)
            try:
                if len(parts) != fields:
                    raise ValueError(f"expected {fields} fields")
                rows.append(convert([p.strip() for p in parts]))
            except ValueError as error:
                raise DatasetError(
                    f"{root / name}:{line_number}: malformed line {line.strip()!r} ({error})"
                ) from None
    return rows
