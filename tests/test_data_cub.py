"""CUB-200-2011 loader on a tiny fake CUB_200_2011 folder (3 classes x 2 images)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from apinet.data import build_dataset
from apinet.data.base import DatasetError, LabelledImageDataset
from apinet.data.cub import CUB200
from apinet.data.images import ImageDecodeError

FOLDERS = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross")


def make_cub(parent: Path) -> Path:
    """Write a complete CUB layout: image k of class c is (16+k) x 12, colour encodes (c, k)."""
    root = parent / "CUB_200_2011"
    (root / "parts").mkdir(parents=True)
    images, labels, split, boxes, locs = [], [], [], [], []
    image_id = 0
    for class_id, folder in enumerate(FOLDERS, start=1):
        (root / "images" / folder).mkdir(parents=True)
        for k in range(2):
            image_id += 1
            rel = f"{folder}/{folder[4:]}_{k:04d}.jpg"
            Image.new("RGB", (16 + k, 12), (80 * class_id, 100 * k, 0)).save(root / "images" / rel)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {class_id}")
            split.append(f"{image_id} {1 if k == 0 else 0}")  # first image of each class trains
            boxes.append(f"{image_id} {image_id}.0 2.0 10.0 {5 + image_id}.0")
            locs.append(f"{image_id} 1 3.0 4.0 1")
            locs.append(f"{image_id} 2 {image_id}.5 6.0 {image_id % 2}")  # "left eye" visible in odd ids
    files = {
        "images.txt": images,
        "image_class_labels.txt": labels,
        "train_test_split.txt": split,
        "classes.txt": [f"{i} {f}" for i, f in enumerate(FOLDERS, start=1)],
        "bounding_boxes.txt": boxes,
        "parts/parts.txt": ["1 beak", "2 left eye"],
        "parts/part_locs.txt": locs,
    }
    for name, lines in files.items():
        (root / name).write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def cub_root(tmp_path) -> Path:
    return make_cub(tmp_path)


def test_loads_splits_labels_boxes_and_parts(cub_root):
    train = CUB200(cub_root, "train")
    test = CUB200(cub_root.parent, "test")  # the parent folder works too
    assert isinstance(train, LabelledImageDataset)
    assert (len(train), len(test)) == (3, 3)
    assert train.labels == test.labels == [0, 1, 2]
    assert train.classes == ["Black footed Albatross", "Laysan Albatross", "Sooty Albatross"]
    assert train.name == f"cub:{cub_root}"
    image, label = test[1]
    assert label == 1 and image.size == (17, 12) and image.mode == "RGB"
    assert image.getpixel((8, 6))[0] == pytest.approx(160, abs=6)  # class 2's colour
    assert test.image_ids == [2, 4, 6]
    assert test.box(0) == (2.0, 2.0, 12.0, 9.0)  # id 2: x=2, y=2, w=10, h=7 -> (x0, y0, x1, y1)
    assert train.parts(0) == {"beak": (3.0, 4.0), "left eye": (1.5, 6.0)}
    assert test.parts(0) == {"beak": (3.0, 4.0)}  # the left eye of id 2 is not visible
    assert train.part_names == ["beak", "left eye"]


def test_build_dataset_and_transform(cub_root):
    dataset = build_dataset(f"cub:{cub_root}", "train", transform=lambda im: im.size)
    assert dataset[2] == ((16, 12), 2)
    assert dataset.load_pil(2).size == (16, 12)
    with pytest.raises(DatasetError, match="no validation split"):
        build_dataset(f"cub:{cub_root}", "val")


def test_one_error_lists_everything_missing(cub_root):
    (cub_root / "bounding_boxes.txt").unlink()
    (cub_root / "parts" / "part_locs.txt").unlink()
    (cub_root / "images" / FOLDERS[0] / "Black_footed_Albatross_0000.jpg").unlink()
    (cub_root / "images" / FOLDERS[2] / "Sooty_Albatross_0001.jpg").unlink()
    with pytest.raises(DatasetError) as caught:
        CUB200(cub_root, "train")
    message = str(caught.value)
    assert "missing index files: bounding_boxes.txt, parts/part_locs.txt" in message
    assert "missing 2 of 6 image files" in message
    assert f"images/{FOLDERS[0]}/Black_footed_Albatross_0000.jpg" in message
    assert f"images/{FOLDERS[2]}/Sooty_Albatross_0001.jpg" in message


def test_missing_or_empty_root(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        CUB200(tmp_path / "nowhere")
    with pytest.raises(DatasetError) as caught:
        CUB200(tmp_path)
    message = str(caught.value)
    assert "images.txt" in message and "parts/part_locs.txt" in message and "images/" in message


def test_malformed_index_line_names_file_and_line(cub_root):
    with open(cub_root / "bounding_boxes.txt", "a") as handle:
        handle.write("7 1.0 2.0\n")
    with pytest.raises(DatasetError, match=r"bounding_boxes.txt:7: malformed line"):
        CUB200(cub_root)


def test_corrupt_image_raises_naming_the_file(cub_root):
    bad = cub_root / "images" / FOLDERS[1] / "Laysan_Albatross_0000.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole jpeg")
    dataset = CUB200(cub_root, "train")  # "raise" does not validate up front
    with pytest.raises(ImageDecodeError) as caught:
        dataset[1]
    assert str(caught.value).startswith(f"{os.fspath(bad)}: ")
    assert "\n" not in str(caught.value)


def test_skip_policy_drops_and_records_unreadable_images(cub_root):
    bad = cub_root / "images" / FOLDERS[1] / "Laysan_Albatross_0001.jpg"
    bad.write_bytes(b"")
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        dataset = CUB200(cub_root, "test", on_error="skip")
    assert dataset.skipped == [(os.fspath(bad), "file is empty (0 bytes)")]
    assert len(dataset) == 2 and dataset.labels == [0, 2] and dataset.image_ids == [2, 6]
    assert dataset.box(1) == (6.0, 2.0, 16.0, 13.0)  # annotations follow the kept images
    assert dataset[1][0].size == (17, 12)
