"""apinet.explain.exact and friends: exact gated maps, channel contributions, "why A and not B"
(class contrast and Finer-CAM), on small random models (seeded, CPU, eval mode)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apinet import APINet, Baseline
from apinet.explain import ContrastMethod, ExactKey, explain_pair

SIZE = 64
KINDS = ("1_self", "1_other", "1_contrast", "2_self", "2_other", "2_contrast")


def _pair(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, SIZE, SIZE, generator=g), torch.randn(3, SIZE, SIZE, generator=g)


def _model(**kwargs):
    torch.manual_seed(0)
    return APINet("resnet18", num_classes=5, output_stride=16, **kwargs).eval()


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    model = APINet("resnet18", num_classes=5, output_stride=16).eval()
    baseline = Baseline("resnet18", num_classes=5, output_stride=16).eval()
    return model, baseline


def _tol(expl, key):
    """float32 precision of a sum of D products: relative to the sum of the terms' magnitudes. A
    contrast is compared with the difference of two float32 logits, so it inherits both logits' error
    (its own terms are small: the gates of a pair differ little)."""
    if key.endswith("_contrast"):
        i = key.split("_")[0]
        return _tol(expl, f"{i}_self") + _tol(expl, f"{i}_other")
    e = expl.exact_cams[key]
    return 2e-6 * max(1.0, float(np.abs(e.raw).mean()) * 10 + abs(e.value))


@pytest.mark.parametrize("variant", ["plain", "ltpa", "a2"])
def test_exact_maps_reconstruct_the_logits(variant):
    kwargs = {"plain": {}, "ltpa": {"ltpa": {"stages": ["layer3", "layer4"]}},
              "a2": {"a2": {"stages": ["layer3", "layer4"]}}}[variant]
    model = _model(**kwargs)
    with torch.no_grad():  # a head that has learned something: gates away from 0.5, a real bias
        model.fc.bias.normal_(0, 0.5)
        model.fc.weight.mul_(10)
        model.mutual[-1].weight.mul_(300)
    model.train()  # explain_pair must use eval mode (dropout in the mutual MLP and before fc)
    e = explain_pair(model, *_pair(), cam_methods=(), targets=(1, 3))
    assert model.training  # restored
    assert set(e.exact_cams) == set(KINDS) and "checked" in e.settings["exact_cams"]
    bias = model.fc.bias.detach().numpy()
    for i, c in ((1, 1), (2, 3)):
        s, o, d = (e.exact_cams[f"{i}_{kind}"] for kind in ("self", "other", "contrast"))
        assert s.target == o.target == d.target == c and s.image == i
        assert s.raw.dtype == np.float32 and s.raw.shape == (SIZE // 16, SIZE // 16)
        assert float(s.raw.mean()) + bias[c] == pytest.approx(float(e.logits[f"{i}_self"][c]), abs=_tol(e, f"{i}_self"))
        assert float(o.raw.mean()) + bias[c] == pytest.approx(float(e.logits[f"{i}_other"][c]),
                                                              abs=_tol(e, f"{i}_other"))
        diff = float(e.logits[f"{i}_self"][c] - e.logits[f"{i}_other"][c])
        assert float(d.raw.mean()) == pytest.approx(diff, abs=_tol(e, f"{i}_contrast"))
        assert abs(diff) > 1e-3  # the gates differ: not a comparison of zeros
        assert s.value == pytest.approx(float(e.logits[f"{i}_self"][c])) and d.offset == 0.0
        assert (d.raw < 0).any() or (s.raw < 0).any()  # signed maps, no ReLU
        # per position: self - other == contrast (one identity, three maps)
        np.testing.assert_allclose(s.raw - o.raw, d.raw, atol=1e-4 * max(1.0, float(np.abs(s.raw).max())))
        assert s.display.shape == (SIZE, SIZE) and s.display.dtype == np.float32


def test_exact_maps_by_hand(models):
    """The self map recomputed from the trunk's feature maps, fc and the gates, independently."""
    model, _ = models
    pair = _pair(2)
    e = explain_pair(model, *pair, cam_methods=(), targets=(4, 0))
    with torch.no_grad():
        f = model.forward_features(torch.stack(pair)).double()
        x = f.mean((2, 3))
        out = model.interact(x[:1].float(), x[1:].float())
        w = model.fc.weight.double()
        v = w[0] * (1 + out.gate2[0].double())  # image 2, class 0, own gate
        expected = torch.einsum("k,khw->hw", v, f[1]).numpy()
        v = w[0] * (out.gate2[0].double() - out.gate1[0].double())
        contrast = torch.einsum("k,khw->hw", v, f[1]).numpy()
    np.testing.assert_allclose(e.exact_cams[ExactKey.SELF2].raw, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(e.exact_cams["2_contrast"].raw, contrast, rtol=1e-4, atol=1e-5)


def test_contribution_ranking_sums_to_the_self_logit(models):
    model, baseline = models
    pair = _pair()
    e = explain_pair(model, *pair, baseline, k=4, cam_methods=(), rank_by="contribution", targets=(2, 1))
    w = model.fc.weight.detach().double().numpy()
    b = model.fc.bias.detach().double().numpy()
    for i, (g, x, c) in enumerate(((e.gate1, e.features1, 2), (e.gate2, e.features2, 1)), start=1):
        expected = w[c] * (1 + g.astype(np.float64)) * x
        np.testing.assert_allclose(e.contribution(i), expected, rtol=1e-5, atol=1e-7)
        assert float(e.contribution(i).astype(np.float64).sum() + b[c]) == pytest.approx(
            float(e.logits[f"{i}_self"][c]), abs=1e-4)
        order = np.argsort(-expected, kind="stable")
        np.testing.assert_array_equal(e.gate_order(i), order)
        chans = e.channels[f"apinet_gate{i}"]
        np.testing.assert_array_equal(chans.indices, order[:4])
        np.testing.assert_allclose(chans.scores, expected[order[:4]], rtol=1e-5)
        assert "contribution" in chans.ranking
    # the contribution is kept whatever the ranking, and its order is available beside the gate order
    plain = explain_pair(model, *pair, k=4, cam_methods=(), targets=(2, 1))
    np.testing.assert_array_equal(plain.contribution_order(1), e.gate_order1)
    assert not np.array_equal(plain.gate_order1, e.gate_order1)
    with pytest.raises(ValueError, match="rank_by"):
        explain_pair(model, *pair, rank_by="nope", cam_methods=())


def test_class_contrast_maps_are_exact_for_both_models(models):
    model, baseline = models
    e = explain_pair(model, *_pair(), baseline, cam_methods=(), targets=(1, 3))
    assert e.settings["references"] == [3, 1]  # B = the partner's class
    for key, m, logits in (("apinet/test/class_contrast", model, e.logits),
                           ("baseline/test/class_contrast", baseline, e.baseline_logits),
                           ("apinet/pair/class_contrast", model, e.logits)):
        c = e.contrast_cams[key]
        assert c.signed and c.method == ContrastMethod.CLASS_CONTRAST
        bias = m.fc.bias.detach().numpy()
        path = "self" if "/pair/" in key else "test"
        for i, (raw, a, r, off, val) in enumerate(((c.raw1, c.target1, c.reference1, c.offset1, c.value1),
                                                   (c.raw2, c.target2, c.reference2, c.offset2, c.value2)), start=1):
            row = logits[f"{i}_{path}"]
            assert (a, r) == ((1, 3) if i == 1 else (3, 1))
            assert off == pytest.approx(float(bias[a] - bias[r]), abs=1e-6)
            assert val == pytest.approx(float(row[a] - row[r]), abs=1e-6)
            assert float(raw.mean()) + off == pytest.approx(float(row[a] - row[r]), abs=1e-5), key
        assert c.map1.shape == (SIZE, SIZE)
    # a same-class pair: B is the image's most probable other class
    same = explain_pair(model, *_pair(), cam_methods=(), targets=(2, 2))
    for i, ref in enumerate(same.settings["references"]):
        test = same.logits[f"{i + 1}_test"].astype(np.float64)
        assert ref == [c for c in np.argsort(-test, kind="stable") if c != 2][0]


def test_finer_cam_equals_grad_cam_package_and_the_relu_of_the_contrast(models):
    from pytorch_grad_cam import FinerCAM
    from pytorch_grad_cam.utils.model_targets import FinerWeightedTarget

    model, baseline = models
    pair = _pair()
    e = explain_pair(model, *pair, baseline, cam_methods=(), targets=(0, 4))
    ours = e.contrast_cams["baseline/test/finercam"]
    assert not ours.signed and (ours.target1, ours.reference1) == (0, 4) and (ours.target2, ours.reference2) == (4, 0)
    with FinerCAM(baseline, [baseline.trunk.stages["layer4"]]) as cam:
        ref = cam(torch.stack(pair), [FinerWeightedTarget(0, [4], 1.0), FinerWeightedTarget(4, [0], 1.0)])
    baseline.zero_grad(set_to_none=True)
    mine = ours.normalised()
    for i in (0, 1):
        if ref[i].max() > 0:
            np.testing.assert_allclose(mine[i], ref[i], atol=2e-4)
    # last layer, pooled linear head: Finer-CAM = ReLU(class contrast) / (h w), up to the target's
    # softmax weight w / (w + 1e-9)
    contrast = e.contrast_cams["baseline/test/class_contrast"]
    hw = contrast.raw1.size
    for raw_f, raw_c in ((ours.raw1, contrast.raw1), (ours.raw2, contrast.raw2)):
        np.testing.assert_allclose(raw_f, np.maximum(raw_c, 0) / hw, rtol=1e-3, atol=1e-6)
    assert max(ours.raw1.max(), ours.raw2.max()) > 0
    assert "apinet/test/finercam" in e.contrast_cams
    off = explain_pair(model, *pair, cam_methods=(), contrast=False)
    assert off.contrast_cams == {}


def test_exact_maps_hold_on_the_trained_demo_checkpoint():
    """EfficientNet-Lite0 trunk with its 1x1 head convolution, trained: the identity is checked on
    the model's own numbers and holds."""
    from apinet.data import build_dataset
    from apinet.explain import DEFAULT_APINET_CHECKPOINT, DEFAULT_BASELINE_CHECKPOINT, load_pair_models, preprocess_from_card

    model, card, baseline, _ = load_pair_models(DEFAULT_APINET_CHECKPOINT, DEFAULT_BASELINE_CHECKPOINT)
    pre = preprocess_from_card(card)
    data = build_dataset("synthbirds", "val", image_size=pre.resize)
    e = explain_pair(model, data.sample(0).image, data.sample(21).image, baseline, preprocess=pre, cam_methods=())
    assert e.targets[0] != e.targets[1] and "checked" in e.settings["exact_cams"]
    for key, m in e.exact_cams.items():
        assert m.reconstructed() == pytest.approx(m.value, abs=1e-4 * max(1.0, abs(m.value))), key
    c = e.contrast_cams["baseline/test/class_contrast"]
    row = e.baseline_logits["1_test"]
    assert float(c.raw1.astype(np.float64).mean()) + c.offset1 == pytest.approx(
        float(row[e.targets[0]] - row[e.targets[1]]), abs=1e-4)
