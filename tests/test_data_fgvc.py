"""FGVC-Aircraft and Stanford Cars wrappers on tiny fake layouts, and their missing-file errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apinet.data import build_dataset
from apinet.data.base import DatasetError
from apinet.data.fgvc import FGVCAircraft, StanfordCars
from apinet.data.images import ImageDecodeError


def make_aircraft(parent: Path) -> Path:
    data = parent / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True)
    (data / "variants.txt").write_text("707-320\nA320\n")
    (data / "images_variant_train.txt").write_text("0001 A320\n0002 707-320\n")
    for name in ("0001", "0002"):
        Image.new("RGB", (6, 4), (1, 2, 3)).save(data / "images" / f"{name}.jpg")
    return parent


def make_cars(parent: Path) -> Path:
    scipy_io = pytest.importorskip("scipy.io")
    base = parent / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    (base / "cars_train").mkdir()
    class_names = np.array(["Audi A4", "BMW M3"], dtype=object)
    scipy_io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": class_names})
    annotations = np.zeros((2,), dtype=[("fname", "O"), ("class", "O")])
    annotations[0], annotations[1] = ("00001.jpg", 2), ("00002.jpg", 1)
    scipy_io.savemat(base / "devkit" / "cars_train_annos.mat", {"annotations": annotations})
    for name in ("00001.jpg", "00002.jpg"):
        Image.new("RGB", (5, 5)).save(base / "cars_train" / name)
    return parent


def test_aircraft_loads_from_parent_or_dataset_folder(tmp_path):
    parent = make_aircraft(tmp_path)
    dataset = build_dataset(f"aircraft:{parent}", "train")
    assert dataset.classes == ["707-320", "A320"] and dataset.labels == [1, 0]
    assert dataset.name == f"aircraft:{parent}" and dataset[0][0].size == (6, 4)
    assert len(FGVCAircraft(parent / "fgvc-aircraft-2013b", "train")) == 2


def test_aircraft_errors_say_what_to_put_where(tmp_path):
    with pytest.raises(DatasetError) as caught:
        FGVCAircraft(tmp_path, "test")
    message = str(caught.value)
    assert "fgvc-aircraft-2013b/data/images_variant_test.txt" in message
    assert "fgvc-aircraft-2013b/data/images/" in message and "robots.ox.ac.uk" in message
    parent = make_aircraft(tmp_path)
    (parent / "fgvc-aircraft-2013b" / "data" / "images" / "0002.jpg").unlink()
    with pytest.raises(DatasetError, match="missing 1 of 2 image files"):
        FGVCAircraft(parent, "train")


def test_aircraft_images_go_through_load_image(tmp_path):
    parent = make_aircraft(tmp_path)
    (parent / "fgvc-aircraft-2013b" / "data" / "images" / "0001.jpg").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="0001.jpg: file is empty"):
        FGVCAircraft(parent, "train")[0]


def test_cars_loads_and_explains_missing_files(tmp_path):
    parent = make_cars(tmp_path)
    dataset = build_dataset(f"cars:{parent / 'stanford_cars'}", "train")
    assert dataset.classes == ["Audi A4", "BMW M3"] and dataset.labels == [1, 0]
    assert dataset.load_pil(1).size == (5, 5)
    missing = r"missing stanford_cars/cars_test_annos_withlabels.mat, stanford_cars/cars_test/;"
    with pytest.raises(DatasetError, match=missing):
        StanfordCars(parent, "test")
    with pytest.raises(DatasetError, match="no validation split"):
        StanfordCars(parent, "val")
