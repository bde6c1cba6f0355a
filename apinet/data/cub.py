"""CUB-200-2011 (Caltech-UCSD Birds) read from its standard extracted folder.

Expected layout (``CUB_200_2011.tgz`` extracted; pass this folder or its parent)::

    CUB_200_2011/
      images.txt  image_class_labels.txt  train_test_split.txt  classes.txt  bounding_boxes.txt
      parts/parts.txt  parts/part_locs.txt
      images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg ...

For explanation metrics, :func:`read_class_attributes` reads the class-level attribute annotations
(``attributes/class_attribute_labels_continuous.txt`` and ``attributes.txt``, which the tarball puts
beside ``CUB_200_2011/``), and :func:`attribute_region_distances` tells which body region (beak,
wing, crown, ...) two species differ in most, with the annotated parts that locate that region.

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

__all__ = [
    "ATTRIBUTE_REGIONS", "CUB200", "CUB_FOLDER", "CUB_INDEX_FILES", "ClassAttributes", "attribute_region_distances",
    "read_class_attributes",
]

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


#: Body regions of CUB's 28 attribute groups ("has_bill_shape", "has_upper_tail_color", ...), keyed by
#: the word between "has_" and the last "_shape" / "_color" / "_pattern" / "_length", with the
#: annotated parts (parts/parts.txt) that locate each region. Size, shape and primary colour describe
#: the whole bird and have no region.
ATTRIBUTE_REGIONS: dict[str, tuple[str, ...]] = {
    "bill": ("beak",),
    "wing": ("left wing", "right wing"),
    "upperparts": ("back", "nape"),
    "underparts": ("breast", "belly", "throat"),
    "breast": ("breast",),
    "back": ("back",),
    "tail": ("tail",),
    "upper_tail": ("tail",),
    "under_tail": ("tail",),
    "head": ("crown", "forehead", "nape", "left eye", "right eye"),
    "throat": ("throat",),
    "eye": ("left eye", "right eye"),
    "forehead": ("forehead",),
    "nape": ("nape",),
    "belly": ("belly",),
    "leg": ("left leg", "right leg"),
    "crown": ("crown",),
}
_WHOLE_BIRD_GROUPS = ("size", "shape", "primary")
_ATTRIBUTE_FILES = ("attributes/class_attribute_labels_continuous.txt", "attributes.txt")


@dataclass
class ClassAttributes:
    """CUB's class-level attributes: ``values[c, a]`` = share (0-1) of class c's images with attribute a."""

    names: list[str]  # 312 names such as "has_bill_shape::dagger"
    values: Any  # numpy [C, A]

    def groups(self) -> dict[str, list[int]]:
        """Attribute group ("has_bill_shape") -> column indices."""
        out: dict[str, list[int]] = {}
        for column, name in enumerate(self.names):
            out.setdefault(name.split("::", 1)[0], []).append(column)
        return out


def _region_of(group: str) -> str | None:
    word = group.removeprefix("has_")
    for suffix in ("_shape", "_color", "_pattern", "_length"):
        if word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    if word in _WHOLE_BIRD_GROUPS:
        return None
    if word not in ATTRIBUTE_REGIONS:
        raise DatasetError(f"unknown CUB attribute group {group!r} (expected one of the 28 groups of attributes.txt)")
    return word


def read_class_attributes(root: str | os.PathLike) -> ClassAttributes:
    """Read ``attributes/class_attribute_labels_continuous.txt`` and ``attributes.txt`` (looked for in
    ``attributes/``, the CUB folder and its parent, where the tarball puts it)."""
    import numpy as np

    root = _resolve_root(Path(root).expanduser())
    values_path = root / _ATTRIBUTE_FILES[0]
    candidates = [root / "attributes" / "attributes.txt", root / "attributes.txt", root.parent / "attributes.txt"]
    names_path = next((c for c in candidates if c.is_file()), None)
    missing = ([] if values_path.is_file() else [str(values_path)]) + (
        [" or ".join(str(c) for c in candidates)] if names_path is None else [])
    if missing:
        raise DatasetError("CUB-200-2011 attribute files missing: " + "; ".join(missing)
                           + ". They come with CUB_200_2011.tgz (attributes.txt sits beside CUB_200_2011/).")
    names = [name for _, name in _rows(names_path.parent, names_path.name, 2, lambda f: (int(f[0]), f[1]))]
    try:
        values = np.loadtxt(values_path, ndmin=2, dtype=np.float64) / 100.0
    except ValueError as error:
        raise DatasetError(f"{values_path}: not a table of numbers ({error})") from None
    if values.shape[1] != len(names):
        raise DatasetError(f"{values_path} has {values.shape[1]} columns, {names_path} names {len(names)} attributes")
    return ClassAttributes(names=names, values=values)


def attribute_region_distances(attributes: ClassAttributes, class_a: int, class_b: int) -> dict[str, float]:
    """How much two classes (0-based rows) differ per body region, in [0, 1].

    Per attribute group the two classes' attribute shares are normalised to distributions and compared
    by total variation distance; a region takes the largest distance of its groups. Groups that
    describe the whole bird (size, shape, primary colour) are left out.
    """
    import numpy as np

    out: dict[str, float] = {}
    for group, columns in attributes.groups().items():
        region = _region_of(group)
        if region is None:
            continue
        pa, pb = attributes.values[class_a, columns], attributes.values[class_b, columns]
        pa = pa / pa.sum() if pa.sum() > 0 else np.full(len(columns), 1.0 / len(columns))
        pb = pb / pb.sum() if pb.sum() > 0 else np.full(len(columns), 1.0 / len(columns))
        out[region] = max(out.get(region, 0.0), float(0.5 * np.abs(pa - pb).sum()))
    return out


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
