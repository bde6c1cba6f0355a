"""Pairwise deletion / insertion (image 2 held fixed) and ROAD's imputation, against numbers worked out
by hand (apinet.metrics.perturbation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from apinet.metrics import (pair_path_logits, pair_perturbation_aucs, pair_perturbation_curve, perturbation_curve,
                            road_impute)


def _pair_fn(images1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
    """Class-0 logit = mean of channel 0 over the 4 pixels of image 1's first row + mean of image 2;
    class-1 logit = 0."""
    part = images1[:, 0, 0, :].mean(1)  # [B]
    logit = part + image2.mean()
    return torch.stack([logit, torch.zeros_like(logit)], dim=1)


@pytest.mark.parametrize("c", [0.0, 0.5])
def test_pair_deletion_and_insertion_auc_by_hand(c):
    image1 = torch.ones(3, 4, 4)
    image2 = torch.full((3, 4, 4), c)
    saliency = np.zeros((4, 4), dtype=np.float32)
    saliency[0] = 1.0  # the first row: exactly what the class-0 logit reads
    # 4 steps of 4 pixels: the first step deletes the whole row -> logits 1 + c, c, c, c, c
    dele = pair_perturbation_curve(_pair_fn, image1, image2, saliency, 0, mode="deletion", steps=4,
                                   baseline="zero", score="logit")
    assert dele.scores.tolist() == pytest.approx([1 + c, c, c, c, c])
    assert dele.auc == pytest.approx(0.125 + c)  # (1 + 2c) / 2 * 0.25 + 0.75 c
    ins = pair_perturbation_curve(_pair_fn, image1, image2, saliency, 0, mode="insertion", steps=4,
                                  baseline="zero", score="logit")
    assert ins.scores.tolist() == pytest.approx([c, 1 + c, 1 + c, 1 + c, 1 + c])
    assert ins.auc == pytest.approx(0.875 + c)
    # the reversed ranking deletes the row last: 1 + c until 75 %, then c
    worst = pair_perturbation_curve(_pair_fn, image1, image2, 1 - saliency, 0, mode="deletion", steps=4,
                                    baseline="zero", score="logit")
    assert worst.scores.tolist() == pytest.approx([1 + c] * 4 + [c])
    assert worst.auc == pytest.approx(0.75 * (1 + c) + 0.25 * (1 + 2 * c) / 2)
    # probabilities: softmax of (z, 0) is the logistic function of z
    prob = pair_perturbation_curve(_pair_fn, image1, image2, saliency, 0, mode="deletion", steps=4,
                                   baseline="zero")
    sig = [1 / (1 + math.exp(-z)) for z in (1 + c, c, c, c, c)]
    assert prob.scores.tolist() == pytest.approx(sig)
    assert prob.auc == pytest.approx(0.25 * (sig[0] + sig[1]) / 2 + 0.75 * sig[1])


def test_pair_path_logits_hold_the_partner_fixed(tiny_apinet):
    torch.manual_seed(0)
    images1, image2 = torch.randn(3, 3, 32, 32), torch.randn(3, 32, 32)
    with torch.no_grad():
        want = tiny_apinet.forward_pair(images1, image2[None].expand(3, -1, -1, -1))
        got_self = pair_path_logits(tiny_apinet)(images1, image2)
        got_other = pair_path_logits(tiny_apinet, "other")(images1, image2)
    torch.testing.assert_close(got_self, want.logits1_self, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_other, want.logits1_other, rtol=1e-4, atol=1e-5)
    # a curve through the real model: the unperturbed end is the model's own probability
    saliency = np.random.default_rng(0).random((4, 4))
    target = int(want.logits1_self[0].argmax())
    curve = pair_perturbation_curve(pair_path_logits(tiny_apinet), images1[0], image2, saliency, target, steps=2)
    assert curve.scores[0] == pytest.approx(float(torch.softmax(want.logits1_self[0], 0)[target]), rel=1e-4)
    with pytest.raises(ValueError, match="path"):
        pair_path_logits(tiny_apinet, "test")
    # several maps at once: the same numbers as one curve each
    maps = {"noise": saliency, "flat": np.ones((4, 4)), "centre": np.pad(np.ones((2, 2)), 1)}
    aucs = pair_perturbation_aucs(tiny_apinet, images1[0], image2, maps, target, steps=4, baseline="mean")
    for name, m in maps.items():
        for mode in ("deletion", "insertion"):
            want = pair_perturbation_curve(pair_path_logits(tiny_apinet), images1[0], image2, m, target, mode=mode,
                                           steps=4, baseline="mean").auc
            assert aucs[name][mode] == pytest.approx(want)
            assert 0.0 <= aucs[name][mode] <= 1.0


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # inside grad-cam's own imputer
def test_road_imputation_matches_grad_cam_and_reproduces_a_linear_ramp():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    rng = np.random.default_rng(1)
    image = torch.as_tensor(rng.random((3, 9, 7)), dtype=torch.float32)
    removed = rng.random((9, 7)) < 0.4
    ours = road_impute(image, removed, noise=0.0)
    theirs = NoisyLinearImputer(noise=0.0)(image, torch.as_tensor(~removed, dtype=torch.float32))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert torch.equal(ours[:, ~removed], image[:, ~removed])  # known pixels are kept as they are
    # a ramp along the columns is its own 8-neighbour weighted mean wherever the holes leave the
    # first and last column known
    ramp = torch.arange(7, dtype=torch.float32).expand(3, 9, 7).clone()
    holes = np.zeros((9, 7), dtype=bool)
    holes[0:5, 1:6] = True  # touches the top edge, not the left or right one
    holes[7, 3] = True
    torch.testing.assert_close(road_impute(ramp, holes, noise=0.0), ramp, rtol=0, atol=1e-5)
    # nothing removed: the image; everything removed: its per-channel mean; noise: seeded
    assert torch.equal(road_impute(image, np.zeros((9, 7), bool)), image)
    everything = road_impute(image, np.ones((9, 7), bool))
    torch.testing.assert_close(everything, image.mean((1, 2), keepdim=True).expand_as(image))
    a = road_impute(image, removed, noise=0.1, rng=np.random.default_rng(5))
    b = road_impute(image, removed, noise=0.1, rng=np.random.default_rng(5))
    assert torch.equal(a, b)
    spread = (a - ours)[:, removed]
    assert float(spread.std()) == pytest.approx(0.1, rel=0.3)  # 3 x 25 noisy pixels
    with pytest.raises(ValueError, match="mask"):
        road_impute(image, np.zeros((4, 4), bool))


def test_road_deletion_curve_on_a_ramp():
    """A model that reads a ramp's interior: ROAD's imputation gives the holes their true values, so the
    score stays put while the interior is removed; a zero baseline drops it."""
    ramp = torch.arange(8, dtype=torch.float32).expand(3, 8, 8).clone()
    interior = np.zeros((8, 8), dtype=np.float32)
    interior[1:7, 2:6] = 1.0  # 24 of 64 pixels, away from the first and last column

    def model_fn(batch):
        logit = batch[:, 0, 1:7, 2:6].mean((1, 2))  # the true interior mean is 3.5
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)

    steps = 8  # 8 pixels per step: the interior is gone after 3 steps
    road = perturbation_curve(model_fn, ramp, interior, 0, steps=steps, baseline="road", road_noise=0.0,
                              score="logit")
    assert road.scores[:4].tolist() == pytest.approx([3.5] * 4, abs=1e-4)
    zero = perturbation_curve(model_fn, ramp, interior, 0, steps=steps, baseline="zero", score="logit")
    # each interior row sums to 14: removing 8 pixels (two rows) leaves 56 / 24, then 28 / 24, then 0
    assert zero.scores[:4].tolist() == pytest.approx([3.5, 56 / 24, 28 / 24, 0.0], abs=1e-5)
    assert road.auc > zero.auc
    with pytest.raises(ValueError, match="baseline"):
        perturbation_curve(model_fn, ramp, interior, 0, baseline="noise")
