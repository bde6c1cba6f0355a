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
