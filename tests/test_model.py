"""APINet / Baseline: the paper's equations on hand-made tensors, shapes, sizes, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from apinet import APINet, Baseline, apinet_loss, build_model


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _fix_mutual(model: APINet, xm: torch.Tensor) -> None:
    """Make f_m output the constant vector ``xm`` (first layer and its bias zero)."""
    first, _, second = model.mutual
    with torch.no_grad():
        first.weight.zero_()
        first.bias.zero_()
        second.weight.zero_()
        second.bias.copy_(xm)


def test_mutual_mlp_is_the_official_architecture():
    model = APINet("resnet18", num_classes=7)
    layers = list(model.mutual)
    assert [type(m) for m in layers] == [nn.Linear, nn.Dropout, nn.Linear]
    assert (layers[0].in_features, layers[0].out_features) == (1024, 512)
    assert (layers[2].in_features, layers[2].out_features) == (512, 512)
    assert layers[1].p == 0.5 and model.drop.p == 0.5
    assert model.fc.in_features == 512 and model.fc.out_features == 7


def test_gates_and_interaction_features_by_hand(tiny_apinet):
    model = tiny_apinet
    d = model.feature_dim
    xm = torch.zeros(d)
    xm[:4] = torch.tensor([0.5, 1.0, 3.0, -2.0])
    x1 = torch.zeros(1, d)
    x1[0, :4] = torch.tensor([1.0, -2.0, 0.0, 1.5])
    x2 = torch.zeros(1, d)
    x2[0, :4] = torch.tensor([2.0, 0.5, -1.0, 0.0])
    saved = {k: v.clone() for k, v in model.mutual.state_dict().items()}
    try:
        _fix_mutual(model, xm)
        out = model.interact(x1, x2)
    finally:
        model.mutual.load_state_dict(saved)
    g1 = [_sigmoid(0.5), _sigmoid(-2.0), 0.5, _sigmoid(-3.0)]
    g2 = [_sigmoid(1.0), _sigmoid(0.5), _sigmoid(-3.0), 0.5]
    assert out.gate1[0, :4].tolist() == pytest.approx(g1, abs=1e-6)
    assert out.gate2[0, :4].tolist() == pytest.approx(g2, abs=1e-6)
    assert out.gate1[0, 4:].eq(0.5).all()  # x = 0 gives sigmoid(0) everywhere else
    a, b = [1.0, -2.0, 0.0, 1.5], [2.0, 0.5, -1.0, 0.0]
    expect = {
        "self1": [a[i] * (1 + g1[i]) for i in range(4)],
        "other1": [a[i] * (1 + g2[i]) for i in range(4)],
        "self2": [b[i] * (1 + g2[i]) for i in range(4)],
        "other2": [b[i] * (1 + g1[i]) for i in range(4)],
    }
    for name, values in expect.items():
        assert getattr(out, name)[0, :4].tolist() == pytest.approx(values, abs=1e-6), name
    assert torch.allclose(out.logits1_self, model.fc(out.self1))
    assert torch.allclose(out.logits2_other, model.fc(out.other2))


def test_mutual_vector_is_linear_in_the_concatenation(tiny_apinet):
    x1, x2 = torch.randn(3, 512), torch.randn(3, 512)
    first, _, second = tiny_apinet.mutual
    expected = second(first(torch.cat([x1, x2], 1)))
    assert torch.allclose(tiny_apinet.interact(x1, x2).mutual, expected, atol=1e-6)


def test_forward_pair_shapes_and_determinism(tiny_apinet):
    a, b = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = tiny_apinet.forward_pair(a, b)
        again = tiny_apinet.forward_pair(a, b)
    for name in ("features1", "features2", "mutual", "gate1", "gate2"):
        assert getattr(out, name).shape == (2, 512)
        assert torch.equal(getattr(out, name), getattr(again, name))
    for name in ("logits1_self", "logits1_other", "logits2_self", "logits2_other"):
        assert getattr(out, name).shape == (2, 5)
    # pooled features are the test path's features
    with torch.no_grad():
        pooled = tiny_apinet.pool_features(tiny_apinet.forward_features(a))
    assert torch.allclose(out.features1, pooled, atol=1e-5)


def test_pair_symmetry_swaps_roles(tiny_apinet):
    a, b = torch.randn(1, 3, 48, 48), torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        ab = tiny_apinet.forward_pair(a, b)
        ba = tiny_apinet.forward_pair(b, a)
    # f_m is not symmetric, so gates change; but features are just swapped
    assert torch.allclose(ab.features1, ba.features2, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 3, 97, 131), (1, 3, 32, 32), (3, 3, 160, 96)])
def test_any_input_size_and_batch_of_one(tiny_apinet, size):
    x = torch.randn(*size)
    with torch.no_grad():
        logits = tiny_apinet(x)
        maps = tiny_apinet.forward_features(x)
    assert logits.shape == (size[0], 5)
    assert maps.shape[:2] == (size[0], 512)


def test_output_stride_16_doubles_map_resolution():
    coarse = Baseline("resnet18", 3).eval()
    fine = Baseline("resnet18", 3, output_stride=16).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert coarse.forward_features(x).shape[-2:] == (4, 4)
        assert fine.forward_features(x).shape[-2:] == (8, 8)
    # same parameters: a stride change, not a new architecture
    assert coarse.state_dict().keys() == fine.state_dict().keys()


def test_baseline_test_path_is_pool_then_linear():
    model = Baseline("resnet18", num_classes=4).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = model.forward_features(x)
        assert torch.allclose(model(x), model.fc(maps.mean(dim=(2, 3))), atol=1e-5)


def test_apinet_test_path_ignores_pairing(tiny_apinet):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = tiny_apinet.forward_features(x)
        assert torch.allclose(tiny_apinet(x), tiny_apinet.fc(maps.mean(dim=(2, 3))), atol=1e-5)


def test_forward_train_mines_2b_pairs_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = APINet("resnet18", num_classes=3).train()
    images = torch.randn(6, 3, 64, 64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    out = model.forward_train(images, labels)
    p = out.pairs
    assert p.logits1_self.shape == (12, 3)
    assert out.labels1.tolist() == labels.tolist() * 2
    assert (out.labels2[:6] == labels).all() and (out.labels2[6:] != labels).all()
    assert out.intra_index.tolist() == [1, 0, 3, 2, 5, 4]  # two images per class: the partner is forced
    terms = apinet_loss(
        p.logits1_self, p.logits1_other, p.logits2_self, p.logits2_other, out.labels1, out.labels2
    )
    terms.total.backward()
    no_grad = [n for n, prm in model.named_parameters() if prm.requires_grad and (prm.grad is None or not prm.grad.abs().sum() > 0)]
    assert no_grad == []


def test_forward_train_refuses_unpairable_batch():
    model = APINet("resnet18", num_classes=3).train()
    with pytest.raises(ValueError, match=r"label\(s\) \[2\]"):
        model.forward_train(torch.randn(3, 3, 32, 32), torch.tensor([0, 0, 2]))


def test_build_model_round_trips_config():
    model = APINet("resnet18", num_classes=9, output_stride=16, mutual_hidden=64, dropout=0.3)
    clone = build_model(model.config)
    assert isinstance(clone, APINet) and clone.config == model.config
    assert clone.mutual[0].out_features == 64 and clone.trunk.stages["layer4"][0].conv1.stride == (1, 1)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model({**model.config, "architecture": "vit"})


def test_num_classes_must_be_sensible():
    with pytest.raises(ValueError, match="at least 2"):
        Baseline("resnet18", num_classes=1)
