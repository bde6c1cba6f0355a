"""SynthBirds: determinism, class design, and masks / boxes that match the drawn pixels."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from apinet.data import LabelledImageDataset, build_dataset
from apinet.data.synthbirds import (
    MASK_NAMES,
    PART_DEBUG_COLOURS,
    PARTS,
    SynthBirds,
    export_gallery,
)


@pytest.fixture(scope="module")
def val() -> SynthBirds:
    return SynthBirds("val", seed=0, per_class=3)


def _digest(sample) -> str:
    digest = hashlib.sha256(sample.image.tobytes())
    for name in MASK_NAMES:
        digest.update(np.packbits(sample.masks[name]).tobytes())
    digest.update(repr((sample.label, sample.box)).encode())
    return digest.hexdigest()


def test_same_item_same_bytes_whatever_the_order():
    forward = SynthBirds("train", seed=3, per_class=1)
    backward = SynthBirds("train", seed=3, per_class=1)
    indices = [0, 7, 19]
    first = {i: _digest(forward.sample(i)) for i in indices}
    second = {i: _digest(backward.sample(i)) for i in reversed(indices + [5, 2])}
    assert all(first[i] == second[i] for i in indices)
    assert _digest(forward.sample(7)) == first[7]
    assert forward[7][0].tobytes() == forward.sample(7).image.tobytes()
    assert len(set(first.values())) == len(indices)
    other_seed = SynthBirds("train", seed=4, per_class=1)
    assert _digest(other_seed.sample(7)) != first[7]


def test_class_table():
    classes = SynthBirds.CLASSES
    assert len(classes) >= 16 and len(set(classes)) == len(classes)
    assert list(SynthBirds.CLASS_ATTRIBUTES) == list(classes)
    assert all(set(attrs) == set(PARTS) for attrs in SynthBirds.CLASS_ATTRIBUTES.values())
    signatures = {tuple(attrs[p] for p in PARTS) for attrs in SynthBirds.CLASS_ATTRIBUTES.values()}
    assert len(signatures) == len(classes)  # every class is identifiable from its parts
    assert SynthBirds.CLASS_ATTRIBUTES["Red-crowned Finch"]["crown"] == "red"


def test_many_sibling_pairs_differ_in_exactly_one_part():
    pairs = SynthBirds.sibling_pairs()
    assert len(pairs) >= 16
    for a, b, part in pairs:
        assert a < b and SynthBirds.differing_parts(a, b) == [part] == SynthBirds.differing_parts(b, a)
    assert {part for _, _, part in pairs} == set(PARTS)  # every part is the key difference somewhere
    assert SynthBirds.differing_parts(0, 1) == ["crown"]  # Red- vs Golden-crowned Finch
    assert SynthBirds.differing_parts(0, 0) == []


def test_masks_match_the_drawn_pixels(val):
    # The debug render paints each part in a flat colour with the same geometry. A pixel of exactly
    # that colour is fully covered by the part, so it must be in the mask; and most mask pixels must
    # be such pure pixels (the rest are anti-aliased edges). A mask shifted by one pixel, flipped, or
    # downsampled differently from the image fails the first check.
    for index in range(0, len(val), 3):
        debug = val.sample(index, debug=True)
        pixels = np.asarray(debug.image)
        for part in PARTS:
            mask = debug.masks[part]
            pure = (pixels == PART_DEBUG_COLOURS[part]).all(axis=-1)
            assert not (pure & ~mask).any(), (index, part)
            assert pure.sum() >= 0.5 * mask.sum() > 0, (index, part)
            assert (pure & ~np.roll(mask, 1, axis=1)).any()  # the check is sensitive to a 1 px shift
        normal = val.sample(index)
        assert all(np.array_equal(normal.masks[n], debug.masks[n]) for n in MASK_NAMES)


@pytest.mark.parametrize(
    ("class_name", "dominant", "other"), [("Red-crowned Finch", 0, 1), ("Blue-capped Shrike", 2, 0)]
)
def test_crown_mask_holds_the_crown_colour_in_real_renders(val, class_name, dominant, other):
    label = val.classes.index(class_name)
    for index in [i for i, lab in enumerate(val.labels) if lab == label]:
        sample = val.sample(index)
        crown = np.median(np.asarray(sample.image, dtype=float)[sample.masks["crown"]], axis=0)
        assert crown[dominant] - crown[other] > 80, (index, crown)


def test_masks_are_disjoint_and_inside_the_box(val):
    size = val.image_size
    for index in range(len(val)):
        sample = val.sample(index)
        x0, y0, x1, y1 = sample.box
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
        inside = np.zeros((size, size), dtype=bool)
        inside[y0:y1, x0:x1] = True
        parts = np.stack([sample.masks[p] for p in PARTS])
        assert parts.sum(axis=0).max() <= 1  # every pixel belongs to at most one part
        assert not (sample.masks["bird"] & ~inside).any()
        assert not (parts.any(axis=0) & ~sample.masks["bird"]).any()
        assert all(sample.masks[p].any() for p in PARTS)  # occluders never hide a whole part
        assert sample.masks["bird"].sum() > 0.1 * (x1 - x0) * (y1 - y0)
        assert all(m.shape == (size, size) and m.dtype == bool for m in sample.masks.values())


def test_splits_are_disjoint_and_labels_known_without_rendering():
    splits = {name: SynthBirds(name, per_class=2) for name in ("train", "val", "test")}
    hashes = {name: {hashlib.sha256(ds.load_pil(i).tobytes()).hexdigest() for i in range(len(ds))}
              for name, ds in splits.items()}
    assert all(len(h) == len(splits[name]) for name, h in hashes.items())
    assert not hashes["train"] & hashes["val"]
    assert not hashes["train"] & hashes["test"]
    assert not hashes["val"] & hashes["test"]
    dataset = splits["test"]
    assert [dataset.sample(i).label for i in range(len(dataset))] == dataset.labels
    assert [dataset[i][1] for i in range(0, len(dataset), 7)] == dataset.labels[::7]
    assert Counter(dataset.labels) == {c: 2 for c in range(len(dataset.classes))}


def test_default_sizes_and_interface():
    train = SynthBirds()
    assert (len(train), len(SynthBirds("val")), len(SynthBirds("test"))) == (2000, 400, 800)
    assert isinstance(train, LabelledImageDataset)
    assert train.name == "synthbirds:0" and train.load_pil(0).size == (128, 128)
    assert build_dataset("synthbirds:5", "val").name == "synthbirds:5"
    small = SynthBirds("val", image_size=64, per_class=1, transform=lambda im: im.size)
    assert small[3] == ((64, 64), 3) and small[-1][1] == len(small.classes) - 1
    with pytest.raises(IndexError):
        small.sample(len(small))
    with pytest.raises(ValueError, match="split"):
        SynthBirds("validation")


def test_cache_returns_identical_images(tmp_path):
    cached = SynthBirds("test", per_class=1, cache_dir=tmp_path)
    first = cached.load_pil(4)
    files = list(tmp_path.rglob("*.png"))
    assert len(files) == 1 and "synthbirds-v" in str(files[0])
    uncached = SynthBirds("test", per_class=1).load_pil(4)
    assert cached.load_pil(4).tobytes() == first.tobytes() == uncached.tobytes()


def test_export_gallery(tmp_path):
    entries = export_gallery(tmp_path, per_class=1, split="test")
    manifest = json.loads((tmp_path / "gallery.json").read_text())
    classes = SynthBirds.CLASSES
    assert manifest["images"] == entries and len(entries) == len(classes)
    assert sorted(e["label"] for e in entries) == list(range(len(classes)))
    for entry in entries:
        assert (tmp_path / entry["file"]).is_file()
        assert entry["class_name"] == classes[entry["label"]] and entry["split"] == "test"
