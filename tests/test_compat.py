"""apinet.compat: which baselines an API-Net can be compared with, from the cards alone (issue #24, item 2)."""

from __future__ import annotations

import pytest
import torch

from apinet.backbones import build_trunk
from apinet.compat import ModelInterface, baseline_mismatch, feature_map_side

NAMES = ["Albatross", "Bunting", "Cardinal"]


@pytest.mark.parametrize("backbone, stride", [
    ("resnet18", 16), ("resnet18", 32), ("resnet50", 16), ("efficientnet_lite0", 16), ("efficientnet_lite2", 32),
    ("densenet161", 32),
])
@pytest.mark.parametrize("size", [64, 97, 224, 229])
def test_feature_map_side_is_what_the_trunk_computes(backbone, stride, size):
    with torch.device("meta"):  # shapes only
        trunk = build_trunk(backbone, output_stride=stride)
        side = trunk(torch.zeros(1, 3, size, size)).shape[-1]
    assert feature_map_side(backbone, stride, size) == side


def _card(names=NAMES, backbone="resnet18", stride=16, size=224, mean=None):
    pre = {"input_size": size, "resize": size}
    if mean is not None:
        pre.update(mean=mean, std=mean)
    return {"num_classes": len(names), "class_names": list(names), "backbone": backbone,
            "config": {"backbone": backbone, "output_stride": stride, "num_classes": len(names)}, "preprocess": pre}


def _why(apinet_card, baseline_card):
    return baseline_mismatch(ModelInterface.from_card(apinet_card), ModelInterface.from_card(baseline_card))


def test_compatible_when_classes_input_and_map_size_agree_whatever_the_backbone():
    assert _why(_card(), _card()) is None
    # ResNet-50 at output stride 16 beside a ResNet-18 at 16: 14 x 14 maps at 224 px either way.
    assert _why(_card(), _card(backbone="resnet50")) is None


def test_each_reason_in_one_line():
    apinet = _card()
    assert _why(apinet, _card(names=[f"c{i}" for i in range(1000)])) == (
        "other classes: 1000 classes (c0, c1, ...), API-Net has 3 classes (Albatross, Bunting, ...)")
    assert _why(apinet, _card(names=["Bunting", "Albatross", "Cardinal"])) == (
        "the same 3 classes in another order (class 0 is 'Bunting', API-Net's 'Albatross')")
    assert _why(apinet, _card(names=["Albatross", "Bunting", "Crow"])) == (
        "other class names (class 2 is 'Crow', API-Net's 'Cardinal')")
    assert _why(apinet, _card(size=448)) == "input 448 px, API-Net's is 224 px"
    assert _why(apinet, _card(mean=[0.5, 0.5, 0.5])) == (
        "inputs normalised with mean [0.5, 0.5, 0.5] / std [0.5, 0.5, 0.5], API-Net's with mean "
        "[0.485, 0.456, 0.406] / std [0.229, 0.224, 0.225]")
    assert _why(apinet, _card(stride=32)) == "maps 7×7 (resnet18, output stride 32), API-Net's are 14×14 at 224 px"
    assert _why(apinet, _card(backbone="vit_b_16")) == "unknown backbone 'vit_b_16' (API-Net: 'resnet18')"


def test_a_card_without_names_or_preprocessing_has_the_documented_defaults():
    card = {"num_classes": 2, "backbone": "resnet18", "config": {"backbone": "resnet18", "num_classes": 2}}
    interface = ModelInterface.from_card(card)
    assert interface.class_names == ("class 0", "class 1")
    assert (interface.input_size, interface.output_stride, interface.map_side()) == (224, 32, 7)


def test_the_command_line_refuses_a_baseline_the_app_would_not_offer(tmp_path, capsys, monkeypatch):
    """`apinet explain` (and `explain_pair_from_checkpoint`, `evaluate-explanations`) apply the app's
    rule: a baseline whose classes come in another order is refused in one line, before a pair is explained."""
    import json
    import shutil
    from pathlib import Path

    from apinet.cli import main

    demo = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"
    base = tmp_path / "baseline_reordered.safetensors"
    shutil.copy(demo / "baseline_synthbirds.safetensors", base)
    card = json.loads((demo / "baseline_synthbirds.json").read_text())
    card["class_names"] = list(reversed(card["class_names"]))
    base.with_suffix(".json").write_text(json.dumps(card))
    monkeypatch.delenv("APINET_DEBUG", raising=False)
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 64), (90, 140, 60)).save(tmp_path / name)
    out = tmp_path / "fig.png"
    code = main(["explain", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--checkpoint",
                 str(demo / "apinet_synthbirds.safetensors"), "--baseline", str(base), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: {base}: this baseline cannot be compared with apinet_synthbirds.safetensors: "
                             f"the same 20 classes in another order (class 0 is {card['class_names'][0]!r}"), err[0]
    assert not out.exists()
