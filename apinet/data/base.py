"""What every dataset in :mod:`apinet.data` has in common.

The interface (:class:`LabelledImageDataset`) is deliberately small: ``labels``, ``classes``,
``name``, ``__len__``, ``__getitem__(i) -> (image_or_tensor, label)`` and ``load_pil(i)`` for the
untransformed RGB image. Training, evaluation and the app only rely on it.

Unreadable images follow one policy everywhere (``on_error``):

* ``"raise"`` (default): reading a bad image raises :class:`~apinet.data.images.ImageDecodeError`
  naming the file. Nothing is ever replaced by a blank image, so a broken file cannot silently
  become a training example.
* ``"skip"``: every image is decoded once at construction; unreadable ones are dropped, recorded in
  ``dataset.skipped`` as ``(path, reason)`` and reported with one warning giving their count.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, Sequence, runtime_checkable

from PIL import Image

from apinet.data.images import DEFAULT_MAX_PIXELS, ImageDecodeError, load_image

__all__ = [
    "DatasetError",
    "FileImageDataset",
    "LabelledImageDataset",
    "OnError",
    "readable_class_name",
]

OnError = Literal["raise", "skip"]


class DatasetError(ValueError):
    """A dataset folder that is missing, incomplete or malformed; the message says what to fix."""


@runtime_checkable
class LabelledImageDataset(Protocol):
    """The interface shared by SynthBirds, CUB-200-2011, image folders, Aircraft and Cars."""

    name: str
    labels: list[int]
    classes: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Any, int]: ...

    def load_pil(self, index: int) -> Image.Image: ...


def readable_class_name(folder_name: str) -> str:
    """``"001.Black_footed_Albatross"`` -> ``"Black footed Albatross"``.

    Only a CUB-style ``NNN.`` index prefix is dropped, so names like ``"747-400"`` stay intact.
    """
    name = re.sub(r"^\d+\.", "", folder_name).replace("_", " ").strip()
    return " ".join(name.split()) or folder_name


class FileImageDataset:
    """Images stored as files, with integer labels; decoding through :func:`load_image`.

    Subclasses parse their index format and call ``super().__init__`` with the file list.
    """

    def __init__(
        self,
        *,
        name: str,
        paths: Sequence[Path],
        labels: Sequence[int],
        classes: Sequence[str],
        transform: Callable[[Image.Image], Any] | None = None,
        on_error: OnError = "raise",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.name = name
        self.classes: list[str] = list(classes)
        self.transform = transform
        self.on_error: OnError = on_error
        self.max_pixels = max_pixels
        self.paths: list[Path] = [Path(p) for p in paths]
        self.labels: list[int] = [int(label) for label in labels]
        self.skipped: list[tuple[str, str]] = []
        self._kept: list[int] = list(range(len(self.paths)))  # indices into the full file list
        if on_error == "skip":
            self._drop_unreadable()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.load_pil(index)
        label = self.labels[index]
        return (self.transform(image) if self.transform is not None else image), label

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)}, classes={len(self.classes)})"

    def load_pil(self, index: int) -> Image.Image:
        """The untransformed RGB image; :class:`ImageDecodeError` naming the file if unreadable."""
        path = self.paths[index]
        return load_image(path, name=os.fspath(path), max_pixels=self.max_pixels)

    def _drop_unreadable(self) -> None:
        keep = []
        for position, path in enumerate(self.paths):
            try:
                load_image(path, name=os.fspath(path), max_pixels=self.max_pixels)
            except ImageDecodeError as error:
                self.skipped.append((os.fspath(path), error.reason))
            else:
                keep.append(position)
        if self.skipped:
            self._keep_only(keep)
            warnings.warn(
                f"{self.name}: skipped {len(self.skipped)} unreadable image(s) of "
                f"{len(self.skipped) + len(keep)}; see dataset.skipped (first: "
                f"{self.skipped[0][0]}: {self.skipped[0][1]})",
                UserWarning,
                stacklevel=3,
            )

    def _keep_only(self, positions: list[int]) -> None:
        """Restrict to ``positions``; subclasses with per-item annotations use ``_kept`` to map back."""
        self.paths = [self.paths[p] for p in positions]
        self.labels = [self.labels[p] for p in positions]
        self._kept = [self._kept[p] for p in positions]
