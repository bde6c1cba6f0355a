"""apinet.metrics: localisation, deletion / insertion and randomisation on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from apinet.metrics import (
    cascading_randomization, energy_pointing_game, perturbation_curve, pointing_game, pointing_game_points,
    spearman,
)


def test_pointing_game_on_hand_made_map():
    mask = np.zeros((8, 8), bool)
    mask[2:4, 5:8] = True
    m = np.zeros((8, 8))
    m[3, 6] = 1.0
    assert pointing_game(m, mask)
    m2 = np.zeros((8, 8))
    m2[3, 1] = 1.0
    assert not pointing_game(m2, mask)
    assert pointing_game(m2, mask, tolerance=4.0)  # 4 px from column 5
    assert not pointing_game(m2, mask, tolerance=3.9)
    # a 4x4 map is upsampled bilinearly to the mask: its hot cell (1, 3) peaks in rows 2-3, column 7
    small = np.zeros((4, 4))
    small[1, 3] = 1.0
    assert pointing_game(small, mask)


def test_energy_pointing_game():
    mask = np.zeros((4, 4), bool)
    mask[:2] = True
    m = np.ones((4, 4))
    assert energy_pointing_game(m, mask) == pytest.approx(0.5)
    m[2:] = 0.0
    assert energy_pointing_game(m, mask) == pytest.approx(1.0)
    m[:2] = -1.0  # negative values carry no energy
    assert energy_pointing_game(np.where(mask, -1.0, 1.0), mask) == pytest.approx(0.0)


def test_pointing_game_points_within_radius():
    m = np.zeros((10, 10))
    m[2, 7] = 1.0  # row 2, column 7 -> (x=7, y=2)
    assert pointing_game_points(m, [(7, 5)], radius=3)
    assert not pointing_game_points(m, [(7, 5)], radius=2.9)
    assert pointing_game_points(m, [(0, 0), (8, 2)], radius=1)
    # map at a lower resolution than the image: upsampled to image_shape first
    small = np.zeros((5, 5))
    small[1, 3] = 1.0  # cell centre at (x=14, y=6) in a 20x20 image
    assert pointing_game_points(small, [(14, 6)], radius=1.5, image_shape=(20, 20))
    assert not pointing_game_points(small, [(4, 6)], radius=3, image_shape=(20, 20))


class _FractionModel(nn.Module):
    """p(class 0) = fraction of the important pixels (a quarter of the image) still equal to 1."""

    def __init__(self, important: torch.Tensor):
        super().__init__()
        self.important = important

    def forward(self, x):
        p = (x[:, 0] * self.important).sum((1, 2)) / self.important.sum()
        p = p.clamp(1e-6, 1 - 1e-6)
        return torch.stack([p.log(), (1 - p).log()], dim=1)


def test_deletion_and_insertion_auc_on_a_known_model():
    important = torch.zeros(8, 8)
    important[:4, :4] = 1.0  # 16 of 64 pixels
    model = _FractionModel(important)
    image = torch.ones(3, 8, 8)
    good, bad = important.numpy(), 1 - important.numpy()
    steps = 16  # every step removes 4 pixels, so the important quarter is gone after 4 steps
    d_good = perturbation_curve(model, image, good, 0, mode="deletion", steps=steps, baseline="zero")
    d_bad = perturbation_curve(model, image, bad, 0, mode="deletion", steps=steps, baseline="zero")
    assert d_good.auc == pytest.approx(0.125, abs=1e-4)  # p = 1 - f / 0.25 until 0.25
    assert d_bad.auc == pytest.approx(0.875, abs=1e-4)  # p = 1 until 0.75, then falls to 0
    i_good = perturbation_curve(model, image, good, 0, mode="insertion", steps=steps, baseline="zero")
    assert i_good.auc == pytest.approx(0.875, abs=1e-4)
    assert i_good.scores[0] == pytest.approx(0.0, abs=1e-5) and i_good.scores[-1] == pytest.approx(1.0, abs=1e-5)
    blur = perturbation_curve(model, image, good, 0, mode="deletion", steps=4, baseline="mean")
    assert blur.fractions.tolist() == [0, 0.25, 0.5, 0.75, 1.0]


def test_spearman_and_cascading_randomisation():
    a = np.arange(16.0).reshape(4, 4)
    assert spearman(a, a ** 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    x = torch.randn(1, 1, 8, 8)

    def maps(m):
        with torch.no_grad():
            out = m(x)[0, 0].numpy()
        return {"output": out, "input": x[0, 0].numpy()}  # "input" ignores the model entirely

    res = cascading_randomization(net, maps, layers=["2", "0"], seed=0)
    assert res.layers == ["2", "0"]
    assert res.spearman["input"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert abs(res.spearman["output"][-1]) < 0.9
    assert torch.equal(net[0].weight, net[0].weight)  # original untouched (a deep copy was randomised)
