"""PROTOCOL.md amendment 6: the pointing game's tie rule, the sign-flip test of fractional outcomes,
the randomisation check over several seeds, and the noise map at input resolution."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from apinet.metrics import (
    TIE_RTOL, cascading_randomization, cascading_randomization_seeds, mcnemar_exact, paired_sign_flip, pointing_game,
    pointing_game_points, pointing_outcomes, pointing_score, pointing_score_points, results_markdown, sanity_summary,
    tied_maxima, two_way_bootstrap, within_tolerance,
)


def test_two_tied_maxima_one_inside_score_one_half():
    mask = np.zeros((8, 8), bool)
    mask[5:7, 5:7] = True
    m = np.zeros((8, 8), np.float32)
    m[1, 1] = m[6, 6] = 6.0  # the first maximum in row-major order is (1, 1), outside
    assert not pointing_game(m, mask)  # the old rule: the topmost tied pixel decides
    assert pointing_score(m, mask) == 0.5
    out = pointing_outcomes(m, within_tolerance(mask))
    assert (out.expected, out.first, out.any, out.tied) == (0.5, False, True, 2)
    # within 4 px of the mask both maxima count (rows 1 -> 5 is 4 px... plus 4 columns: 5.66 px, not yet)
    assert pointing_score(m, mask, tolerance=5.6) == 0.5
    assert pointing_score(m, mask, tolerance=5.7) == 1.0


def test_relu6_plateau_scores_the_fraction_of_it_inside():
    # a 14 x 14 channel map clipped at 6 (ReLU6) on a 3 x 3 block of cells, upsampled 16x to 224 px
    rng = np.random.default_rng(0)
    m = np.clip(rng.random((14, 14)) * 5.0, 0, None).astype(np.float32)
    m[3:6, 4:7] = 6.0
    tied = tied_maxima(m, (224, 224))
    # bilinear (pixel centres) is pure plateau from the centre of cell 3 to the centre of cell 5: 32 rows
    rows, cols = np.nonzero(tied)
    assert tied.sum() == 32 * 32 and (rows.min(), rows.max(), cols.min(), cols.max()) == (56, 87, 72, 103)
    mask = np.zeros((224, 224), bool)
    mask[:, :80] = True  # 8 of the plateau's 32 columns
    assert pointing_score(m, mask) == pytest.approx(8 / 32)
    assert not pointing_game(m, mask, 0.0) or cols.min() < 80  # the old rule took pixel (56, 72): inside
    assert pointing_game(m, mask, 0.0)
    mask2 = np.zeros((224, 224), bool)
    mask2[80:, :] = True  # the plateau's bottom 8 rows only: the old rule (topmost) misses
    assert not pointing_game(m, mask2) and pointing_score(m, mask2) == pytest.approx(8 / 32)
    # the same plateau one ulp below 6.0 here and there still ties; 1e-5 below does not
    m2 = m.copy()
    m2[4, 5] = np.nextafter(np.float32(6.0), np.float32(0.0))
    assert tied_maxima(m2, (14, 14)).sum() == 9
    m2[4, 5] = 6.0 * (1 - 10 * TIE_RTOL)
    assert tied_maxima(m2, (14, 14)).sum() == 8


def test_a_single_maximum_scores_as_before():
    rng = np.random.default_rng(1)
    mask = np.zeros((64, 64), bool)
    mask[20:30, 35:41] = True
    single = 0
    for _ in range(200):
        m = rng.standard_normal((8, 8)).astype(np.float32)
        for tol in (0.0, 3.0, 8.57, 15.0):
            old = pointing_game(m, mask, tol)
            out = pointing_outcomes(m, within_tolerance(mask, tol))
            # a maximum on the map's border is a small plateau once upsampled (the border is replicated)
            if out.tied == 1:
                single += 1
                assert pointing_score(m, mask, tol) == float(old) == out.expected and out.first == old == out.any
        full = rng.standard_normal((64, 64)).astype(np.float32)  # at the mask's resolution: never tied
        assert pointing_score(full, mask, 3.0) == float(pointing_game(full, mask, 3.0))
    assert single > 300  # 380 of 800: maxima inside the map
    pts = [(10.0, 12.0), (40.0, 3.0)]
    for _ in range(50):
        m = rng.standard_normal((5, 5))
        if tied_maxima(m, (32, 48)).sum() == 1:
            assert pointing_score_points(m, pts, 6.0, (32, 48)) == float(pointing_game_points(m, pts, 6.0, (32, 48)))


def test_ties_on_points_constant_maps_and_bad_maps():
    m = np.zeros((10, 10))
    m[2, 7] = m[9, 0] = 1.0  # (x=7, y=2) and (x=0, y=9)
    assert pointing_score_points(m, [(7, 5)], radius=3) == 0.5
    # an all-zero map ties everywhere: it scores the share of pixels within the tolerance
    mask = np.zeros((10, 10), bool)
    mask[0, :5] = True
    assert pointing_score(np.zeros((10, 10)), mask) == pytest.approx(0.05)
    assert pointing_score(np.zeros((5, 5)), mask, tolerance=1.0) == pytest.approx(
        within_tolerance(mask, 1.0).mean()) == pytest.approx(11 / 100)
    with pytest.raises(ValueError, match="finite"):
        pointing_score(np.full((4, 4), np.nan), mask)
    with pytest.raises(ValueError, match="non-empty mask"):
        pointing_score(m, np.zeros((10, 10), bool))


def test_within_tolerance_matches_the_pointing_game_distance():
    mask = np.zeros((9, 9), bool)
    mask[4, 4] = True
    w = within_tolerance(mask, 5.0)
    # (4 + 3, 4 + 4) is exactly 5 px away: inside; (4 + 4, 4 + 4) is 5.66: outside
    assert w[7, 8] and not w[8, 8] and w.sum() == sum(1 for r in range(9) for c in range(9)
                                                      if (r - 4) ** 2 + (c - 4) ** 2 <= 25)
    np.testing.assert_array_equal(within_tolerance(mask, 0.0), mask)


def test_sign_flip_is_mcnemar_on_zero_one_outcomes():
    a = [1, 1, 0, 0, 0, 0, 0, 1, 0, 1]
    b = [1, 0, 1, 1, 1, 1, 1, 0, 0, 1]
    res = paired_sign_flip(a, b)
    ref = mcnemar_exact(a, b)
    assert res["method"] == "exact" and res["p_value"] == ref["p_value"]
    assert (res["a_only"], res["b_only"], res["rate_a"], res["rate_b"]) == (2, 5, 0.4, 0.7)


def test_sign_flip_on_fractional_outcomes_by_hand():
    # d = 0.5, 0.5, 0.5: of the 8 sign patterns, 2 reach |sum| = 1.5 -> p = 0.25
    res = paired_sign_flip([0.5, 1.0, 0.5, 0.0], [0.0, 0.5, 0.0, 0.0], n_flips=40_000, seed=3)
    assert res["method"].startswith("sign-flip") and res["a_only"] == 3 and res["b_only"] == 0
    assert res["p_value"] == pytest.approx(0.25, abs=0.01)
    assert res["mean_difference"] == pytest.approx(1.5 / 4)
    # 0.25 / 0.75 mixed: patterns of {±0.25, ±0.75}: |sum| >= 1.0 in 4 of 4 (±0.25 ± 0.75 -> 1.0 or 0.5)...
    res = paired_sign_flip([0.25, 0.75], [0.0, 0.0], n_flips=40_000, seed=0)
    assert res["p_value"] == pytest.approx(0.5, abs=0.01)  # |0.25 + 0.75| = 1 in 2 of 4 patterns
    # a one-sided fractional difference on 40 images: nothing random reaches it
    res = paired_sign_flip([0.5] * 40, [0.0] * 40, n_flips=10_000)
    assert res["p_value"] == pytest.approx(1 / 10_001)
    from apinet.metrics.statistics import format_p

    assert format_p(res) == "<2e-04" and format_p({"p_value": 0.0123, "method": "exact"}) == "0.012"
    assert format_p(paired_sign_flip([0.5, 1.0, 0.5, 0.0], [0.0, 0.5, 0.0, 0.0], n_flips=1000)) != "<2e-03"
    assert paired_sign_flip([0.5, 0.2], [0.5, 0.2])["p_value"] == 1.0  # no difference at all
    # reproducible from its seed
    assert paired_sign_flip([0.3, 0.9, 0.1], [0.1, 0.2, 0.4], n_flips=999, seed=5) == \
        paired_sign_flip([0.3, 0.9, 0.1], [0.1, 0.2, 0.4], n_flips=999, seed=5)
    with pytest.raises(ValueError, match="equally long"):
        paired_sign_flip([0.5], [0.5, 0.5])


def test_two_way_bootstrap_carries_the_seed_variance():
    # 38 pairs that agree, 4 seeds that do not (the peer check's 0.06 / 0.10 / 0.34 / 0.15)
    seeds = np.array([0.06, 0.10, 0.34, 0.15])
    values = np.broadcast_to(seeds[None, :, None], (38, 4, 1)) + np.linspace(-0.01, 0.01, 38)[:, None, None]
    mean, lo, hi = two_way_bootstrap(values, seed=0)
    assert mean[0] == pytest.approx(seeds.mean())
    # a t-interval over the pairs of one seed would be +-0.002 wide; this one spans the seeds' spread
    assert lo[0] < 0.09 and hi[0] > 0.23 and lo[0] >= 0.06 - 0.011 and hi[0] <= 0.34 + 0.011
    with pytest.raises(ValueError, match="n_seeds >= 2"):
        two_way_bootstrap(values[:, :1])


def test_cascades_over_seeds_share_the_original_maps():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    x = torch.randn(1, 1, 8, 8)
    calls = []

    def maps(m):
        calls.append(1)
        with torch.no_grad():
            return {"output": m(x)[0, 0].numpy()}

    runs = cascading_randomization_seeds(net, maps, seeds=(0, 1, 2), layers=["2", "0"])
    assert len(calls) == 1 + 3 * 2  # the original once, then two layers per seed
    # seed 0 re-initialises as before
    assert runs[0].spearman == cascading_randomization(net, maps, layers=["2", "0"], seed=0).spearman
    assert runs[1].spearman["output"] != runs[0].spearman["output"]
    assert runs[2].spearman["output"] != runs[1].spearman["output"]


def _one(per_seed):
    return {"apinet": {"layers": ["fc", "tail"], "seeds": list(range(len(per_seed))),
                       "spearman": {"m": per_seed}, "spearman_abs": {"m": per_seed}}}


def test_sanity_summary_over_seeds_by_hand():
    sanity = [_one([[1.0, 0.1], [1.0, 0.3], [1.0, 0.2]]), _one([[0.8, 0.5], [1.0, 0.1], [0.9, 0.0]])]
    row = sanity_summary(sanity)["apinet"]["spearman"]["m"]
    assert row["interval"] == "two-way bootstrap over pairs and seeds" and row["n"] == 2
    assert row["mean"] == [pytest.approx(5.7 / 6), pytest.approx(1.2 / 6)]
    assert row["seed_means"] == [[pytest.approx(0.9), pytest.approx(0.3)], [pytest.approx(1.0), pytest.approx(0.2)],
                                 [pytest.approx(0.95), pytest.approx(0.1)]]
    assert row["min"] == [0.8, 0.0] and row["max"] == [1.0, 0.5]
    lo, hi = row["ci95"][1]
    assert 0.0 <= lo < 1.2 / 6 < hi <= 0.5
    table = results_markdown({"tolerance_px": 15.0, "pairs": 2, "split": "val", "images_scored": 4,
                              "images_skipped_part_occluded": 0, "mean_part_area_fraction": 0.01, "summary": {},
                              "sanity": sanity, "tie_rule": "expected hit ..."})
    assert "mean over 2 pairs x 3 seeds" in table and "two-way bootstrap over pairs and seeds" in table
    assert "| m | 0.90 / 1.00 / 0.95 | 0.30 / 0.20 / 0.10 |" in table


def _fake_explanation(size: int = 4):
    top = np.zeros((size, size), np.float32)
    return SimpleNamespace(settings={"ltpa_stages": ["s"]}, ltpa={}, cams={}, contrast_cams={}, exact_cams={},
                           channels={"apinet_gate1": SimpleNamespace(maps1=[top])}, contribution=lambda i: None)


def test_the_noise_map_is_uniform_over_input_pixels():
    from apinet.metrics.protocol import maps_for_image

    expl = _fake_explanation(4)
    rng = np.random.default_rng(0)
    new = [maps_for_image(expl, 1, rng, noise_shape=(16, 16))["random"] for _ in range(4000)]
    old = [maps_for_image(expl, 1, rng)["random"] for _ in range(4000)]
    assert new[0].shape == (16, 16) and old[0].shape == (4, 4)
    new_peaks = {int(np.argmax(m)) for m in new}
    from apinet.resample import upsample_map

    old_peaks = {int(np.argmax(upsample_map(m, (16, 16)))) for m in old}
    assert len(new_peaks) > 240  # nearly all 256 pixels are someone's maximum
    assert len(old_peaks) <= 40  # upsampled 4 x 4 noise peaks only next to its 16 cell centres (36 here)
    # so its hit rate is the part's share of the pixels (here the top-left 4 x 4 block: 1/16)
    mask = np.zeros((16, 16), bool)
    mask[:4, :4] = True
    assert np.mean([pointing_score(m, mask) for m in new]) == pytest.approx(1 / 16, abs=0.012)
