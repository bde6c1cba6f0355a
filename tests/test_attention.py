"""Tests for apinet/attention.py: LTPA (Jetley et al. 2018) and the A^2 block (Chen et al. 2018)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from apinet.attention import (
    A2Maps,
    DoubleAttention,
    LTPAEstimator,
    LTPAMap,
    LTPAOutput,
    ltpa_attention,
)

# A 1x2x2x2 local map whose four positions (row-major) are l1=(1,0), l2=(0,1), l3=(1,1), l4=(0,0).
HAND_LOCAL = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]]])
HAND_GLOBAL = torch.tensor([[1.0, 2.0]])


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _pos(values: list[float]) -> torch.Tensor:
    """Four position values in row-major order as a [1, 2, 2] map."""
    return torch.tensor(values).view(1, 2, 2)


# --------------------------------------------------------------------------------------------------
# ltpa_attention
# --------------------------------------------------------------------------------------------------


def test_ltpa_hand_example_softmax() -> None:
    out = ltpa_attention(HAND_LOCAL, HAND_GLOBAL)
    assert isinstance(out, LTPAMap)
    # c_i = <l_i, g> with g = (1, 2): 1, 2, 3, 0.
    assert torch.equal(out.compatibility, _pos([1.0, 2.0, 3.0, 0.0]))
    # a = softmax(1, 2, 3, 0) = exp(c) / (e + e^2 + e^3 + 1).
    expected = _pos([0.0871443, 0.2368828, 0.6439143, 0.0320586])
    assert torch.allclose(out.attention, expected, atol=1e-6)
    # g_a = a1*l1 + a2*l2 + a3*l3 = (a1 + a3, a2 + a3).
    assert torch.allclose(out.descriptor, torch.tensor([[0.7310586, 0.8807971]]), atol=1e-6)


def test_ltpa_hand_example_sigmoid_divides_by_positions() -> None:
    out = ltpa_attention(HAND_LOCAL, HAND_GLOBAL, normalize="sigmoid")
    # sigmoid(1, 2, 3, 0)
    assert torch.allclose(out.attention, _pos([0.7310586, 0.8807971, 0.9525741, 0.5]), atol=1e-6)
    # official-code pooling: (1/(h*w)) * sum a_i l_i = ((a1 + a3) / 4, (a2 + a3) / 4)
    assert torch.allclose(out.descriptor, torch.tensor([[0.4209082, 0.4583428]]), atol=1e-6)


def test_ltpa_softmax_sums_to_one_over_positions_only() -> None:
    local, g = torch.randn(3, 4, 3, 5), torch.randn(3, 4)
    out = ltpa_attention(local, g)
    assert out.attention.shape == (3, 3, 5) and out.descriptor.shape == (3, 4)
    assert torch.allclose(out.attention.sum(dim=(1, 2)), torch.ones(3), atol=1e-6)
    # Not normalised along a single spatial axis nor over the batch.
    assert not torch.allclose(out.attention.sum(dim=2), torch.ones(3, 3), atol=1e-3)
    assert not torch.allclose(out.attention.sum(dim=0), torch.ones(3, 5), atol=1e-3)


def test_ltpa_float32_under_autocast() -> None:
    local, g = torch.randn(2, 4, 3, 3), torch.randn(2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ltpa_attention(local, g)
    reference = ltpa_attention(local, g)
    assert out.attention.dtype == torch.float32 and out.descriptor.dtype == torch.float32
    assert torch.equal(out.attention, reference.attention)


def test_ltpa_rejects_mismatched_widths() -> None:
    with pytest.raises(ValueError):
        ltpa_attention(torch.randn(1, 4, 2, 2), torch.randn(1, 3))
    with pytest.raises(ValueError):
        ltpa_attention(torch.randn(1, 4, 2, 2), torch.randn(1, 4), normalize="relu")  # type: ignore


# --------------------------------------------------------------------------------------------------
# LTPAEstimator
# --------------------------------------------------------------------------------------------------


def _estimator(**kwargs) -> LTPAEstimator:
    return LTPAEstimator({"layer3": 3, "layer4": 4}, global_dim=4, num_classes=5, **kwargs)


def _stage_maps(batch: int = 2) -> dict[str, torch.Tensor]:
    # non-square maps of different sizes per stage
    return {"layer3": torch.randn(batch, 3, 4, 6), "layer4": torch.randn(batch, 4, 2, 3)}


def test_estimator_shapes_batch_one_non_square() -> None:
    est = _estimator()
    out = est(_stage_maps(batch=1), torch.randn(1, 4))
    assert isinstance(out, LTPAOutput)
    assert out.logits.shape == (1, 5)
    assert list(out.attention) == ["layer3", "layer4"]
    assert out.attention["layer3"].shape == (1, 4, 6) and out.attention["layer4"].shape == (1, 2, 3)
    assert out.compatibility["layer4"].shape == (1, 2, 3)
    assert out.descriptors["layer3"].shape == (1, 4)
    for attention in out.attention.values():
        assert torch.allclose(attention.sum(dim=(1, 2)), torch.ones(1), atol=1e-6)
    # projection only where the channels differ from the global width (paper / official code)
    assert isinstance(est.projections[0], nn.Conv2d) and est.projections[0].bias is None
    assert isinstance(est.projections[1], nn.Identity)


def test_estimator_pc_vs_dp_hand_example() -> None:
    maps, g = {"s": HAND_LOCAL}, HAND_GLOBAL
    dp = LTPAEstimator({"s": 2}, global_dim=2, num_classes=3, compatibility="dp")
    pc = LTPAEstimator({"s": 2}, global_dim=2, num_classes=3, compatibility="pc")
    with torch.no_grad():
        pc.scorers[0].weight.copy_(torch.tensor([1.0, -1.0]).view(1, 2, 1, 1))  # u = (1, -1)
    dp_out, pc_out = dp(maps, g), pc(maps, g)
    assert torch.equal(dp_out.compatibility["s"], _pos([1.0, 2.0, 3.0, 0.0]))
    # <u, l_i + g>: l_i + g = (2,2), (1,3), (2,3), (1,2) -> 0, -2, -1, -1
    assert torch.equal(pc_out.compatibility["s"], _pos([0.0, -2.0, -1.0, -1.0]))
    # dp estimator without projection is the parameter-free function
    reference = ltpa_attention(HAND_LOCAL, HAND_GLOBAL)
    assert torch.allclose(dp_out.descriptors["s"], reference.descriptor)


def test_estimator_concat_classifies_concatenated_descriptors() -> None:
    est = _estimator(aggregate="concat")
    out = est(_stage_maps(), torch.randn(2, 4))
    concatenated = torch.cat([out.descriptors["layer3"], out.descriptors["layer4"]], dim=1)
    expected = est.classifiers[0](concatenated)
    assert torch.allclose(out.logits, expected, atol=1e-6)


def test_estimator_independent_averages_probabilities() -> None:
    est = _estimator(aggregate="independent")
    out = est(_stage_maps(), torch.randn(2, 4))
    probs = [
        F.softmax(head(out.descriptors[s]), dim=1)
        for head, s in zip(est.classifiers, ["layer3", "layer4"])
    ]
    averaged = (probs[0] + probs[1]) / 2
    assert torch.allclose(out.logits.exp(), averaged, atol=1e-6)
    assert torch.allclose(F.softmax(out.logits, dim=1), averaged, atol=1e-6)
    # averaging probabilities differs from averaging logits
    mean_logits = sum(head(out.descriptors[s]) for head, s in zip(est.classifiers, est.stages)) / 2
    assert not torch.allclose(F.softmax(mean_logits, dim=1), averaged, atol=1e-4)
    target = torch.tensor([0, 3])
    nll = -averaged[torch.arange(2), target].log().mean()
    assert torch.allclose(F.cross_entropy(out.logits, target), nll, atol=1e-6)


def test_estimator_sigmoid_is_not_normalised() -> None:
    out = _estimator(normalize="sigmoid")(_stage_maps(), torch.randn(2, 4))
    attention = out.attention["layer3"]
    assert bool(((attention > 0) & (attention < 1)).all())
    assert not torch.allclose(attention.sum(dim=(1, 2)), torch.ones(2), atol=1e-2)


def test_estimator_gradients_reach_every_parameter() -> None:
    est = _estimator(compatibility="pc")
    g = torch.randn(2, 4, requires_grad=True)
    out = est(_stage_maps(), g)
    F.cross_entropy(out.logits, torch.tensor([1, 2])).backward()
    for name, param in est.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert est.scorers[0].weight.grad.abs().sum() > 0  # u of the first stage
    assert g.grad is not None and g.grad.abs().sum() > 0


def test_estimator_config_round_trip_through_json() -> None:
    est = _estimator(compatibility="dp", normalize="sigmoid", aggregate="independent")
    config = json.loads(json.dumps(est.config()))
    assert list(config["stage_channels"]) == ["layer3", "layer4"]
    rebuilt = LTPAEstimator(**config)
    rebuilt.load_state_dict(est.state_dict())
    maps, g = _stage_maps(), torch.randn(2, 4)
    assert torch.equal(rebuilt(maps, g).logits, est(maps, g).logits)


def test_estimator_missing_stage_and_bad_options() -> None:
    with pytest.raises(KeyError):
        _estimator()({"layer4": torch.randn(1, 4, 2, 2)}, torch.randn(1, 4))
    with pytest.raises(ValueError):
        _estimator(aggregate="max")


# --------------------------------------------------------------------------------------------------
# DoubleAttention
# --------------------------------------------------------------------------------------------------


def _nonzero_projection(block: DoubleAttention) -> DoubleAttention:
    with torch.no_grad():
        block.proj.weight.normal_()
        block.proj.bias.normal_()
    return block


def test_a2_defaults_and_shapes() -> None:
    block = DoubleAttention(8)
    assert (block.c_m, block.c_n) == (2, 2)
    assert DoubleAttention(2).config() == {"in_channels": 2, "c_m": 1, "c_n": 1}
    block = DoubleAttention(8, c_m=3, c_n=5)
    y, maps = block.forward_with_maps(torch.randn(2, 8, 3, 4))
    assert y.shape == (2, 8, 3, 4)
    assert isinstance(maps, A2Maps)
    assert maps.gather.shape == (2, 5, 3, 4) and maps.distribute.shape == (2, 5, 3, 4)


def test_a2_softmax_axes() -> None:
    block = DoubleAttention(8, c_m=3, c_n=5)
    _, maps = block.forward_with_maps(torch.randn(2, 8, 3, 4) * 3)
    # gather: each of the n maps sums to 1 over positions, not over n
    assert torch.allclose(maps.gather.sum(dim=(2, 3)), torch.ones(2, 5), atol=1e-6)
    assert not torch.allclose(maps.gather.sum(dim=1), torch.ones(2, 3, 4), atol=1e-2)
    # distribute: sums to 1 over n at each position, not over positions
    assert torch.allclose(maps.distribute.sum(dim=1), torch.ones(2, 3, 4), atol=1e-6)
    assert not torch.allclose(maps.distribute.sum(dim=(2, 3)), torch.ones(2, 5), atol=1e-2)
    # neither is normalised over the batch (the classic bug when dim is omitted)
    assert not torch.allclose(maps.gather.sum(dim=0), torch.ones(5, 3, 4), atol=1e-2)


def test_a2_zero_init_is_exact_identity() -> None:
    block = DoubleAttention(8)
    x = torch.randn(3, 8, 5, 4)
    assert torch.equal(block(x), x)
    assert torch.equal(block.eval()(x[:1]), x[:1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(block(x), x)


def test_a2_zero_init_still_trains_projection() -> None:
    block = DoubleAttention(8)
    block(torch.randn(2, 8, 3, 3)).square().sum().backward()
    assert block.proj.weight.grad.abs().sum() > 0
    assert block.proj.bias.grad.abs().sum() > 0
    # behind a zero projection the inner convs get exactly zero gradient at step 0
    assert torch.count_nonzero(block.conv_a.weight.grad) == 0


def test_a2_gradients_reach_every_parameter() -> None:
    block = _nonzero_projection(DoubleAttention(8, c_m=3, c_n=4))
    x = torch.randn(2, 8, 3, 3, requires_grad=True)
    block(x).square().sum().backward()
    for name, param in block.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_a2_hand_example() -> None:
    # X: 1x2x1x2, positions x1 = (1, 0), x2 = (0, 2); m = 1, n = 2.
    x = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])
    block = DoubleAttention(2, c_m=1, c_n=2)
    with torch.no_grad():
        for conv in (block.conv_a, block.conv_b, block.conv_v, block.proj):
            conv.bias.zero_()
        block.conv_a.weight.copy_(torch.tensor([[1.0, 1.0]]).view(1, 2, 1, 1))  # A = [1, 2]
        block.conv_b.weight.copy_(torch.eye(2).view(2, 2, 1, 1))  # B = [[1, 0], [0, 2]]
        swap = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        block.conv_v.weight.copy_(swap.view(2, 2, 1, 1))  # V = [[0, 2], [1, 0]]
        block.proj.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        block.proj.bias.copy_(torch.tensor([0.5, 0.0]))
    y, maps = block.forward_with_maps(x)
    # gather: softmax over positions of each row of B
    # row 1: softmax(1, 0) = (0.7310586, 0.2689414); row 2: softmax(0, 2) = (0.1192029, 0.8807971)
    expected_gather = torch.tensor([[[[0.7310586, 0.2689414]], [[0.1192029, 0.8807971]]]])
    assert torch.allclose(maps.gather, expected_gather, atol=1e-6)
    # G = A softmax(B)^T = (1*0.7310586 + 2*0.2689414, 1*0.1192029 + 2*0.8807971)
    #   = (1.2689414, 1.8807971)
    # distribute: softmax over n of each column of V:
    #   (0, 1) -> (0.2689414, 0.7310586); (2, 0) -> (0.8807971, 0.1192029)
    expected_distribute = torch.tensor([[[[0.2689414, 0.8807971]], [[0.7310586, 0.1192029]]]])
    assert torch.allclose(maps.distribute, expected_distribute, atol=1e-6)
    # Z = G softmax(V) = (1.7162437, 1.3418764); Y = X + (Z + 0.5, -Z)
    expected_y = torch.tensor([[[[3.2162437, 1.8418764]], [[-1.7162437, 0.6581236]]]])
    assert torch.allclose(y, expected_y, atol=1e-6)


def test_a2_capture_maps_without_hooks() -> None:
    block = _nonzero_projection(DoubleAttention(8))
    x = torch.randn(1, 8, 2, 3, requires_grad=True)
    block(x)
    assert block.last_maps is None  # off by default
    with block.capturing_maps():
        y = block(x)
    assert block.capture_maps is False and not block._forward_hooks
    _, reference = block.forward_with_maps(x)
    assert block.last_maps is not None and not block.last_maps.gather.requires_grad
    assert torch.equal(block.last_maps.gather, reference.gather.detach())
    assert torch.equal(block.last_maps.distribute, reference.distribute.detach())
    assert torch.equal(y, block(x))


def test_a2_config_round_trip() -> None:
    block = _nonzero_projection(DoubleAttention(8, c_m=3, c_n=2))
    rebuilt = DoubleAttention(**json.loads(json.dumps(block.config())))
    rebuilt.load_state_dict(block.state_dict())
    x = torch.randn(1, 8, 2, 2)
    assert torch.equal(rebuilt(x), block(x))


def test_ltpa_cosine_compatibility_with_temperature_by_hand():
    local = torch.tensor([[[[3.0, 0.0], [1.0, 0.0]], [[4.0, 2.0], [0.0, 0.0]]]])  # [1, 2, 2, 2]
    g = torch.tensor([[1.0, 0.0]])
    # positions (3,4), (0,2), (1,0), (0,0): c = 3, 0, 1, 0; cos = 0.6, 0, 1, 0 (zero vector -> 0)
    out = ltpa_attention(local, g, similarity="cosine", temperature=0.5)
    assert torch.allclose(out.compatibility, _pos([3.0, 0.0, 1.0, 0.0]))
    assert torch.allclose(out.scores, _pos([1.2, 0.0, 2.0, 0.0]))
    expected = torch.softmax(torch.tensor([1.2, 0.0, 2.0, 0.0]), 0)
    assert torch.allclose(out.attention.flatten(), expected, atol=1e-6)
    assert out.similarity == "cosine" and out.temperature.tolist() == [0.5]
    # the temperature changes the spread, never the order of the positions
    sharp = ltpa_attention(local, g, similarity="cosine", temperature=0.05)
    assert torch.equal(sharp.attention.flatten().argsort(), out.attention.flatten().argsort())
    assert sharp.attention.max() > out.attention.max()
    # the default is the paper's dot product
    assert torch.equal(ltpa_attention(local, g).scores, out.compatibility)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_ltpa_rejects_bad_temperatures(temperature):
    with pytest.raises(ValueError, match="temperature must be a positive number or 'std'"):
        ltpa_attention(HAND_LOCAL, HAND_GLOBAL, similarity="cosine", temperature=temperature)
    with pytest.raises(ValueError, match="similarity must be one of"):
        ltpa_attention(HAND_LOCAL, HAND_GLOBAL, similarity="l2")  # type: ignore[arg-type]


def test_ltpa_std_temperature_keeps_the_ranking_and_spreads_the_map():
    local = torch.tensor([[[[300.0, 0.0], [100.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]])  # c = 300, 0, 100, 0
    g = torch.tensor([[1.0, 0.0]])
    raw = ltpa_attention(local, g)
    assert raw.attention.max() == 1.0  # the paper's T = 1 on large logits: one-hot
    out = ltpa_attention(local, g, temperature="std")
    c = torch.tensor([300.0, 0.0, 100.0, 0.0])
    t = float(c.std())  # 141.42: sample standard deviation over the 4 positions
    assert out.temperature.tolist() == [pytest.approx(t)]
    assert torch.allclose(out.attention.flatten(), torch.softmax(c / t, 0), atol=1e-6)
    assert torch.equal(out.compatibility, raw.compatibility)
    assert torch.equal(torch.argsort(out.attention.flatten(), stable=True), torch.argsort(c, stable=True))
    flat = ltpa_attention(torch.ones(1, 2, 2, 2), g, temperature="std")  # constant c: T = 1, uniform map
    assert flat.temperature.tolist() == [1.0] and torch.allclose(flat.attention, torch.full((1, 2, 2), 0.25))
