"""Transforms, Preprocess round-trips, and build_dataset spec parsing."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from apinet.data import DATASET_SPECS, DatasetError, build_dataset
from apinet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocess, build_transforms, denormalize


def _gradient(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), 128)
                   for y in range(height) for x in range(width)])
    return image


def test_test_transform_resizes_shorter_side_then_centre_crops():
    tensor = build_transforms(32, resize=40, train=False)(_gradient(80, 60))
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
    # Resize(40) makes 53x40; the centre crop keeps the middle, so the red ramp is symmetric.
    red = denormalize(tensor)[0]
    assert red[:, 0].mean() + red[:, -1].mean() == pytest.approx(1.0, abs=0.05)
    blue = denormalize(tensor)[2]
    assert torch.allclose(blue, torch.full_like(blue, 128 / 255), atol=2 / 255)


def test_train_transform_is_random_but_seeded():
    transform = build_transforms(24, resize=32, train=True)
    image = _gradient(40, 40)
    torch.manual_seed(0)
    first = torch.stack([transform(image) for _ in range(6)])
    torch.manual_seed(0)
    second = torch.stack([transform(image) for _ in range(6)])
    assert first.shape == (6, 3, 24, 24) and torch.equal(first, second)
    assert len({round(t.sum().item(), 3) for t in first}) > 1  # crops / flips differ between calls


def test_denormalize_inverts_normalize():
    pixels = torch.rand(2, 3, 5, 5)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(denormalize((pixels - mean) / std), pixels, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        denormalize(torch.zeros(4, 5, 5))


def test_preprocess_round_trips_through_json():
    paper = Preprocess.paper()
    assert (paper.input_size, paper.resize) == (448, 512)
    restored = Preprocess.from_dict(json.loads(json.dumps(paper.to_dict())))
    assert restored == paper
    small = Preprocess(64)
    assert small.resize == 64 and small(_gradient(100, 64)).shape == (3, 64, 64)
    with pytest.raises(ValueError, match="unknown keys"):
        Preprocess.from_dict({"input_size": 64, "crop": 3})
    with pytest.raises(ValueError, match="must be >= input_size"):
        Preprocess(64, resize=32)
    with pytest.raises(ValueError, match="RGB"):
        small(Image.new("L", (64, 64)))


def test_build_dataset_specs():
    assert build_dataset("synthbirds", "test").name == "synthbirds:0"
    assert build_dataset(" SynthBirds:7 ", "val", image_size=64).load_pil(0).size == (64, 64)
    with pytest.raises(DatasetError) as caught:
        build_dataset("imagenet:/data", "train")
    assert all(form in str(caught.value) for form in DATASET_SPECS)
    with pytest.raises(DatasetError, match="SEED must be an integer"):
        build_dataset("synthbirds:one", "train")
    with pytest.raises(DatasetError, match="needs a path"):
        build_dataset("cub:", "train")
    with pytest.raises(DatasetError, match="split"):
        build_dataset("synthbirds", "validation")


def test_preprocess_from_card_and_its_one_fallback():
    card = {"preprocess": {"input_size": 128, "resize": 144}}
    assert Preprocess.from_card(card) == Preprocess(128, 144)
    for cardless in (None, {}, {"preprocess": None}):
        with pytest.warns(UserWarning, match="records no preprocessing; using resize 256, centre crop 224"):
            assert Preprocess.from_card(cardless) == Preprocess(224, 256)


def _kept_width(pre: Preprocess, image: Image.Image) -> float:
    """Fraction of the original width the test crop keeps, read off a red ramp (red = x / (W - 1))."""
    red = pre.denormalize(pre(image))[0]
    return float(red[:, -1].mean() - red[:, 0].mean())


def test_paper_preprocessing_squashes_to_a_square_then_crops_as_the_official_code():
    image = _gradient(500, 375)  # a typical CUB image
    paper = Preprocess.paper()
    assert paper.resize_mode == "square"
    # square: 512 x 512, centre 448 -> 448 / 512 = 87.5 % of the width (minus one pixel's ramp step)
    assert _kept_width(paper, image) == pytest.approx(447 / 512 * 500 / 499, abs=0.01)
    shorter = Preprocess(448, 512, resize_mode="shorter")
    # shorter side 375 -> 512, width 500 -> 682: 448 / 682.7 = 65.6 %
    assert _kept_width(shorter, image) == pytest.approx(447 / 682.67 * 500 / 499, abs=0.01)
    assert paper.geometry(500, 375) == (512, 512, 32, 32)
    assert shorter.geometry(500, 375) == (682, 512, 117, 32)
    # training: the same square resize, then a random crop and a flip
    steps = paper.transform(train=True).transforms
    assert steps[0].size == (512, 512) and type(steps[1]).__name__ == "RandomCrop"
    assert type(steps[2]).__name__ == "RandomHorizontalFlip"
    assert Preprocess(448, 512).transform(train=True).transforms[0].size == 512  # shorter side


def test_resize_mode_is_recorded_in_the_card_and_old_cards_load_as_shorter_side():
    square = Preprocess(64, 80, resize_mode="square")
    assert square.to_dict()["resize_mode"] == "square"
    assert Preprocess.from_card({"preprocess": square.to_dict()}) == square
    old = Preprocess.from_card({"preprocess": {"input_size": 64, "resize": 80}})  # written before the field
    assert old.resize_mode == "shorter" and old == Preprocess(64, 80)
    with pytest.raises(ValueError, match=r"resize_mode must be one of \('square', 'shorter'\), got 'wide'"):
        Preprocess(64, resize_mode="wide")
    with pytest.raises(ValueError, match="resize_mode must be one of"):
        Preprocess.from_dict({"input_size": 64, "resize_mode": "crop"})


def test_paper_preset_and_flag_choose_the_resize_mode():
    from apinet.train import build_config

    assert build_config({"preset": "paper"})["resize_mode"] == "square"
    assert build_config({"preset": "demo"})["resize_mode"] == "shorter"
    assert build_config({"preset": "paper", "resize_mode": "shorter"})["resize_mode"] == "shorter"


@pytest.mark.parametrize("spec,message", [
    ({"input_size": 224, "resize": 100_000}, "resize 100000 exceeds the limit of 2048 px"),
    ({"input_size": 100_000}, "input_size 100000 exceeds the limit of 1024 px"),
    ({"input_size": [224]}, "invalid preprocess spec {'input_size': [224]}: int() argument must be"),
    ({"input_size": 224, "mean": ["nan", 0, 0]}, "mean values must be finite numbers, got (nan, 0.0, 0.0)"),
    ("224", "invalid preprocess spec '224': not an object"),
])
def test_untrusted_card_preprocessing_is_bounded(spec, message):
    with pytest.raises(ValueError) as caught:
        Preprocess.from_card({"preprocess": spec})
    assert str(caught.value).startswith(message)


def test_extreme_aspect_ratio_is_refused_before_any_resize():
    """8 x 400000 px is within the decoder's 64 MP cap, but resizing its short side to 64 would make a
    64 x 3200000 image (205 MP) before the 64 px crop: refused at once, with the numbers."""
    import time

    tall = Image.new("RGB", (8, 400_000))
    start = time.perf_counter()
    with pytest.raises(ValueError) as caught:
        Preprocess(64)(tall)
    assert time.perf_counter() - start < 0.5
    assert str(caught.value) == ("image 8x400000 (aspect ratio 50000:1) would be resized to 64x3200000 = 205 MP "
                                 "before the 64 px centre crop (limit 32 MP); crop it closer to the subject")
    wide = Preprocess(64)(Image.new("RGB", (64 * 100, 64)))  # 100:1 is fine: 0.4 MP before the crop
    assert wide.shape == (3, 64, 64)
