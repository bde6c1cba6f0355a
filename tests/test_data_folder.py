"""ImageFolderDataset: class-per-folder images with optional train/val/test folders."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from PIL import Image

from apinet.data import build_dataset
from apinet.data.base import DatasetError, LabelledImageDataset
from apinet.data.folder import ImageFolderDataset
from apinet.data.images import ImageDecodeError


def _image(path: Path, colour=(10, 20, 30), size=(8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def test_class_folders_directly_under_root(tmp_path):
    _image(tmp_path / "002.Blue_jay" / "b.png")
    _image(tmp_path / "002.Blue_jay" / "a.JPG")
    _image(tmp_path / "001.Cardinal" / "c.png", colour=(200, 0, 0))
    (tmp_path / "001.Cardinal" / "notes.txt").write_text("not an image, ignored")
    _image(tmp_path / "001.Cardinal" / ".hidden.png")
    _image(tmp_path / "747-400" / "plane.png")
    dataset = ImageFolderDataset(tmp_path)
    assert isinstance(dataset, LabelledImageDataset)
    assert dataset.classes == ["Cardinal", "Blue jay", "747-400"]
    assert dataset.folder_names == ["001.Cardinal", "002.Blue_jay", "747-400"]
    assert dataset.labels == [0, 1, 1, 2]
    assert [p.name for p in dataset.paths] == ["c.png", "a.JPG", "b.png", "plane.png"]
    image, label = dataset[0]
    assert label == 0 and image.getpixel((0, 0)) == (200, 0, 0)


def test_split_folders_share_one_label_set(tmp_path):
    for split, classes in {"train": "abc", "test": "ac"}.items():
        for name in classes:
            _image(tmp_path / split / name / "x.png")
    train = ImageFolderDataset(tmp_path, "train")
    test = build_dataset(f"folder:{tmp_path}", "test")
    assert train.classes == test.classes == ["a", "b", "c"]
    assert test.labels == [0, 2]  # "c" keeps label 2 although "b" has no test images
    with pytest.raises(DatasetError, match=r"has no 'val' split folder \(found: train, test\)"):
        ImageFolderDataset(tmp_path, "val")
    with pytest.raises(DatasetError, match="pass split="):
        ImageFolderDataset(tmp_path)


def test_split_without_split_folders_warns(tmp_path):
    _image(tmp_path / "a" / "x.png")
    with pytest.warns(UserWarning, match="same images serve every split"):
        dataset = ImageFolderDataset(tmp_path, "train")
    assert len(dataset) == 1


def test_missing_empty_and_flat_folders(tmp_path):
    with pytest.raises(DatasetError, match="image folder not found"):
        ImageFolderDataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="has no class folders"):
        ImageFolderDataset(tmp_path)
    _image(tmp_path / "loose.png")
    with pytest.raises(DatasetError, match="found 1 image file.*own subfolder"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        ImageFolderDataset(tmp_path)


def test_unreadable_image_raise_and_skip(tmp_path):
    _image(tmp_path / "a" / "good.png")
    bad = tmp_path / "b" / "bad.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"plain text")
    dataset = ImageFolderDataset(tmp_path)
    with pytest.raises(ImageDecodeError, match=f"^{re.escape(os.fspath(bad))}: not an image"):
        dataset.load_pil(1)
    with pytest.warns(UserWarning, match="skipped 1"):
        skipping = ImageFolderDataset(tmp_path, on_error="skip")
    assert len(skipping) == 1 and skipping.skipped == [(os.fspath(bad), "not an image (unrecognised format)")]
    assert skipping.classes == ["a", "b"]  # the class stays, so labels do not shift
