"""evaluate-explanations on CUB-200-2011: attribute regions, keypoint disks, pairing, errors.

A fake CUB folder with 3 classes x 2 test images, the 15 real part names and a few real attribute
groups, with attributes.txt beside CUB_200_2011/ as in the tarball.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import apinet
from apinet.data.base import DatasetError
from apinet.data.cub import ClassAttributes, attribute_region_distances, read_class_attributes
from apinet.data.transforms import Preprocess
from apinet.data.contrast_pairs import points_to_mask
from apinet.metrics import evaluate_explanations

PART_NAMES = ("back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing", "nape",
              "right eye", "right leg", "right wing", "tail", "throat")
ATTRIBUTES = ("has_bill_shape::dagger", "has_bill_shape::cone", "has_wing_color::blue", "has_wing_color::red",
              "has_size::small_(5_-_9_in)", "has_size::large_(16_-_32_in)")
# class 1 and 3 differ in the wing only; class 2 differs from class 1 in the bill (and size, which
# describes the whole bird and has no region)
CLASS_ATTRIBUTES = ((100, 0, 100, 0, 100, 0), (0, 100, 100, 0, 0, 100), (100, 0, 0, 100, 100, 0))
FOLDERS = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross")


def make_cub_with_attributes(parent: Path, *, attributes: bool = True) -> Path:
    root = parent / "CUB_200_2011"
    (root / "parts").mkdir(parents=True)
    (root / "attributes").mkdir()
    rng = np.random.default_rng(0)
    images, labels, split, boxes, locs = [], [], [], [], []
    image_id = 0
    for class_id, folder in enumerate(FOLDERS, start=1):
        (root / "images" / folder).mkdir(parents=True)
        for k in range(3):
            image_id += 1
            rel = f"{folder}/{folder[4:]}_{k:04d}.jpg"
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "images" / rel)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {class_id}")
            split.append(f"{image_id} {1 if k == 0 else 0}")  # image 0 trains, images 1-2 test
            boxes.append(f"{image_id} 4.0 4.0 56.0 40.0")
            for part_id, _ in enumerate(PART_NAMES, start=1):
                visible = not (image_id == 3 and part_id == 2)  # image 3 (class 1, test) hides its beak
                locs.append(f"{image_id} {part_id} {10 + 3 * part_id}.0 {8 + 2 * part_id}.0 {int(visible)}")
    files = {
        "images.txt": images, "image_class_labels.txt": labels, "train_test_split.txt": split,
        "classes.txt": [f"{i} {f}" for i, f in enumerate(FOLDERS, start=1)], "bounding_boxes.txt": boxes,
        "parts/parts.txt": [f"{i} {name}" for i, name in enumerate(PART_NAMES, start=1)],
        "parts/part_locs.txt": locs,
        "attributes/class_attribute_labels_continuous.txt": [" ".join(f"{v:.6f}" for v in row)
                                                             for row in CLASS_ATTRIBUTES],
    }
    for name, lines in files.items():
        (root / name).write_text("\n".join(lines) + "\n")
    if attributes:
        (parent / "attributes.txt").write_text("".join(f"{i} {a}\n" for i, a in enumerate(ATTRIBUTES, start=1)))
    return root


@pytest.fixture()
def cub_root(tmp_path) -> Path:
    return make_cub_with_attributes(tmp_path)


def test_attribute_regions_tell_which_part_two_species_differ_in(cub_root):
    attributes = read_class_attributes(cub_root)
    assert attributes.names == list(ATTRIBUTES)
    assert attributes.values.shape == (3, 6) and attributes.values.max() == pytest.approx(1.0)
    assert attribute_region_distances(attributes, 0, 1) == {"bill": pytest.approx(1.0), "wing": pytest.approx(0.0)}
    assert attribute_region_distances(attributes, 0, 2) == {"bill": pytest.approx(0.0), "wing": pytest.approx(1.0)}
    # total variation between shares normalised per group: (0.75, 0.25) vs (0.25, 0.75) -> 0.5
    half = ClassAttributes(names=["has_crown_color::red", "has_crown_color::blue"], values=np.array([[.6, .2], [.2, .6]]))
    assert attribute_region_distances(half, 0, 1) == {"crown": pytest.approx(0.5)}
    with pytest.raises(DatasetError, match="unknown CUB attribute group 'has_fin_color'"):
        attribute_region_distances(ClassAttributes(["has_fin_color::red"], np.ones((2, 1))), 0, 1)


def test_missing_attribute_files_are_named(tmp_path):
    root = make_cub_with_attributes(tmp_path, attributes=False)
    with pytest.raises(DatasetError, match=r"attribute files missing: .*attributes\.txt.*beside CUB_200_2011"):
        read_class_attributes(root)


def test_keypoint_disks_follow_the_preprocessing_geometry():
    # 64 x 48 image, shorter side to 32 (scale 2/3, width 43), centre crop 32: 5 px cut on the left.
    pre = Preprocess(32, resize=32)
    mask = points_to_mask([(30.0, 24.0)], (64, 48), pre, radius=1.0)  # -> centre (14.5, 15.5) in the input
    assert mask.shape == (32, 32)
    assert sorted(zip(*np.nonzero(mask))) == [(15, 14), (15, 15), (16, 14), (16, 15)]
    assert not points_to_mask([(2.0, 24.0)], (64, 48), pre, radius=1.0).any()  # cropped away
    assert points_to_mask([], (64, 48), pre, radius=5.0).sum() == 0


def test_keypoint_targets_apply_the_tolerance_once():
    """Default part radius 0: the target is the keypoint's own input pixel and the pointing game's
    tolerance is the only allowance (it used to be a disk of the tolerance, plus the tolerance)."""
    from apinet.metrics import pointing_game

    pre = Preprocess(32, resize=32)
    mask = points_to_mask([(30.0, 24.0)], (64, 48), pre, radius=0.0)  # -> (14.2, 16.0) in the input
    assert sorted(zip(*np.nonzero(mask))) == [(16, 14)]
    peak = np.zeros((32, 32), dtype=np.float32)
    peak[16, 20] = 1.0  # 6 px to the right of the keypoint's pixel
    assert not pointing_game(peak, mask, tolerance=5.9) and pointing_game(peak, mask, tolerance=6.0)


def test_keypoints_box_and_centre_follow_the_square_resize():
    # the official crop: 64 x 48 squashed to 36 x 36, centre crop 32 (2 px off each side)
    from apinet.data.contrast_pairs import box_to_mask, to_input_xy

    pre = Preprocess(32, resize=36, resize_mode="square")
    assert to_input_xy(32.0, 24.0, (64, 48), pre) == pytest.approx((16.0, 16.0))
    box = box_to_mask((0.0, 0.0, 32.0, 48.0), (64, 48), pre)  # the left half of the image
    assert box[:, :16].all() and not box[:, 16:].any()


@pytest.mark.slow
def test_evaluate_explanations_on_cub(cub_root, tmp_path):
    names = ["a", "b", "c"]
    torch.manual_seed(0)
    path = apinet.save_checkpoint(apinet.APINet("resnet18", num_classes=3, output_stride=16).eval(),
                                  tmp_path / "cub_apinet.safetensors", class_names=names,
                                  preprocess={"input_size": 32, "resize": 32})
    res = evaluate_explanations(path, None, data=f"cub:{cub_root}", pairs=6, deletion_pairs=0, sanity_pairs=0,
                                log=None)
    # nearest classes by attributes: 1 -> 3 (wing), 2 -> 1 (bill), 3 -> 1 (wing); two test images each
    assert [(r["classes"], r["part"]) for r in res["records"]] == [
        ([0, 2], "wing"), ([1, 0], "bill"), ([2, 0], "wing")] * 2
    assert res["part_radius_px"] == 0.0 and res["tolerance_px"] == pytest.approx(15 * 32 / 224)
    assert "chance_bird_point" in res["summary"] and "chance_box_centre" in res["summary"]
    assert res["images_skipped_part_occluded"] == 1  # the hidden beak of image 3 (class 1's first test image)
    assert res["images_scored"] == 11
    assert "baseline_top_channel" not in res["summary"] and "apinet_top_gated_channel" in res["summary"]
    with pytest.raises(ValueError, match="at most 6 CUB pairs"):
        evaluate_explanations(path, None, data=f"cub:{cub_root}", pairs=7, log=None)
    with pytest.raises(ValueError, match="has 3 classes, synthbirds has 20"):
        evaluate_explanations(path, None, data="synthbirds", pairs=1, log=None)
    with pytest.raises(ValueError, match="needs part annotations"):
        evaluate_explanations(path, None, data=f"folder:{tmp_path}", pairs=1, log=None)
