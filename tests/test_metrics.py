"""apinet.metrics: localisation, deletion / insertion and randomisation on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from apinet.metrics import (
    cascading_randomization, energy_pointing_game, evaluate_explanations, mcnemar_exact, perturbation_curve,
    pointing_game, pointing_game_points, results_markdown, spearman, standard_tolerance,
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

    before = {k: v.clone() for k, v in net.state_dict().items()}
    out_before = maps(net)["output"]
    res = cascading_randomization(net, maps, layers=["2", "0"], seed=0)
    assert res.layers == ["2", "0"]
    assert res.spearman["input"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert abs(res.spearman["output"][-1]) < 0.9
    # original untouched (a deep copy was randomised): every tensor equals its copy from before
    after = net.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    np.testing.assert_array_equal(maps(net)["output"], out_before)


def test_mcnemar_exact_on_hand_counts():
    # 5 discordant images, all won by B: p = 2 * (1/2)^5
    res = mcnemar_exact([1, 1, 0, 0, 0, 0, 0], [1, 0, 1, 1, 1, 1, 1])
    assert (res["a_only"], res["b_only"], res["n"]) == (1, 5, 7)
    assert res["p_value"] == pytest.approx(2 * (1 + 6) / 64)  # n = 6 discordant, min = 1
    res = mcnemar_exact([0] * 5 + [1] * 3, [1] * 5 + [1] * 3)
    assert res["p_value"] == pytest.approx(2 / 32)
    assert res["rate_a"] == pytest.approx(3 / 8) and res["rate_b"] == pytest.approx(1.0)
    # 1 vs 9 discordant: 2 * (C(10,0) + C(10,1)) / 2^10
    res = mcnemar_exact([1] + [0] * 9 + [1] * 4, [0] + [1] * 9 + [1] * 4)
    assert res["p_value"] == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact([1, 0, 1], [1, 0, 1])["p_value"] == 1.0  # no discordant pair
    assert mcnemar_exact([1, 0], [0, 1])["p_value"] == 1.0  # symmetric, capped at 1
    with pytest.raises(ValueError, match="equally long"):
        mcnemar_exact([1, 0], [1])


def test_standard_tolerance_scales_15_px_at_224():
    assert standard_tolerance(224) == pytest.approx(15.0)
    assert standard_tolerance(128) == pytest.approx(8.5714, abs=1e-4)
    assert standard_tolerance(448) == pytest.approx(30.0)
    with pytest.raises(ValueError):
        standard_tolerance(0)


@pytest.mark.slow
def test_evaluate_explanations_on_the_demo_checkpoints():
    """Two sibling pairs end to end: every map type scored at both tolerances, hits consistent with
    the summary, the gate x activation channel equal to explain_pair's own ranking."""
    from apinet.data.synthbirds import SynthBirds
    from apinet.explain import (
        DEFAULT_APINET_CHECKPOINT, DEFAULT_BASELINE_CHECKPOINT, explain_pair, load_pair_models, preprocess_from_card,
    )
    from apinet.metrics.protocol import MAP_TYPES, maps_for_image

    res = evaluate_explanations(DEFAULT_APINET_CHECKPOINT, DEFAULT_BASELINE_CHECKPOINT, pairs=4, split="val",
                                deletion_pairs=2, steps=2, sanity_pairs=0, log=None)
    input_size = load_pair_models(DEFAULT_APINET_CHECKPOINT, None)[1]["preprocess"]["input_size"]
    assert res["tolerance_px"] == pytest.approx(15 * input_size / 224) and res["split"] == "val"
    assert res["images_scored"] + res["images_skipped_part_occluded"] == 8
    # sibling pairs 0-2 all start with class 0's first image: pairs 3 and 4 would repeat it
    assert res["distinct_images"] == 5  # classes 0, 1, 2, 4 and 3 (pair 3 = classes 1, 3)
    assert res["deletion_images"] == [0, 1]  # image 1 of pairs 0 and 3: distinct images
    assert all("deletion_auc" in res["summary"][m] for m in ("apinet_top_gated_channel", "random"))
    # amendment 5: the pair-path curves (partner fixed) for API-Net's maps only
    assert all("pair_deletion_auc" in res["summary"][m] for m in ("apinet_class_contrast", "apinet_pair_contrast"))
    assert "pair_deletion_auc" not in res["summary"]["baseline_gradcam"]
    assert "| apinet_pair_contrast |" in results_markdown(res).split("Pair-path deletion")[1]
    expected = {m for m in MAP_TYPES if "ltpa_trained" not in m}  # the demo API-Net has no LTPA head
    assert set(res["summary"]) == expected
    bird = res["summary"]["chance_bird_point"]
    assert 0.0 <= bird["pointing_0px_expected"] <= bird["pointing_expected"] <= 1.0
    assert res["mean_bird_area_fraction"] > 3 * res["mean_part_area_fraction"]  # the part is on the bird
    for name, s in res["summary"].items():
        hits_tol = [v for r in res["records"] for k, v in r["hits"].items() if k.endswith(f"/{name}/tol")]
        hits_0 = [v for r in res["records"] for k, v in r["hits"].items() if k.endswith(f"/{name}/0px")]
        assert s["n"] == len(hits_tol) == len(hits_0) == res["images_scored"]
        assert s["pointing"] == pytest.approx(np.mean(hits_tol))
        assert s["pointing_0px"] == pytest.approx(np.mean(hits_0))
        assert s["pointing_0px"] <= s["pointing"]  # a hit at 0 px is a hit at any tolerance
    first = res["comparisons"][0]
    assert (first["a"], first["b"]) == ("apinet_top_gated_channel", "baseline_top_channel")
    assert first["tol"]["n"] == res["images_scored"]
    # amendment 6: expected hits over tied maxima, the old rule beside them, noise at input resolution
    assert res["tie_rule"].startswith("expected hit under a uniform choice")
    for s in res["summary"].values():
        assert s["pointing_first"] == pytest.approx(s["pointing_first"]) and 0 <= s["tied_share"] <= 1
        assert s["pointing_any"] >= s["pointing"] - 1e-12 and s["pointing_0px_any"] >= s["pointing_0px"] - 1e-12
    assert 0 < res["summary"]["random"]["pointing_expected"] < res["summary"]["chance_bird_point"]["pointing_expected"]
    assert res["summary"]["chance_bird_point"]["tied_share"] == 0.0  # one marked pixel: never tied
    assert "mcnemar_first" in first["tol"] and first["tol"]["method"] in ("exact", "sign-flip, 200000 random flips")
    assert "Tie rules at" in results_markdown(res)
    assert "| apinet_top_gated_channel | baseline_top_channel |" in results_markdown(res)
    # results.json: the dataclass's fields in order; read back, it renders the same table
    import json

    from apinet._io import to_jsonable
    from apinet.metrics import ExplanationResults

    stored = json.loads(json.dumps(to_jsonable(res.to_dict())))
    assert list(stored)[:3] == ["checkpoint", "baseline", "pairs"] and list(stored)[-1] == "seconds"
    assert results_markdown(ExplanationResults.from_dict(stored)) == results_markdown(res) == results_markdown(stored)
    with pytest.raises(ValueError, match="missing summary"):
        ExplanationResults.from_dict({k: v for k, v in stored.items() if k != "summary"})

    model, card, _, _ = load_pair_models(DEFAULT_APINET_CHECKPOINT, None)
    pre = preprocess_from_card(card)
    data = SynthBirds("val", image_size=pre.resize)
    a, b, _ = SynthBirds.sibling_pairs()[0]
    sa, sb = data.sample(a), data.sample(b)
    expl = explain_pair(model, sa.image, sb.image, preprocess=pre, targets=(a, b), cam_methods=())
    by_act = explain_pair(model, sa.image, sb.image, preprocess=pre, targets=(a, b), cam_methods=(),
                          rank_by="gate_x_activation")
    with torch.no_grad():
        maps = model.forward_features(torch.stack([pre(sa.image), pre(sb.image)])).numpy()
    ours = maps_for_image(expl, 2, np.random.default_rng(0), maps)
    np.testing.assert_allclose(ours["apinet_top_gate_x_act_channel"], by_act.channels["apinet_gate2"].maps2[0],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours["apinet_top_activation_channel"], maps[1, int(np.argmax(expl.features2))],
                               rtol=1e-6)
    by_contribution = explain_pair(model, sa.image, sb.image, preprocess=pre, targets=(a, b), cam_methods=(),
                                   rank_by="contribution")
    np.testing.assert_allclose(ours["apinet_top_contribution_channel"], by_contribution.channels["apinet_gate2"].maps2[0],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ours["apinet_class_contrast"], expl.contrast_cams["apinet/test/class_contrast"].map2)
    np.testing.assert_array_equal(ours["apinet_pair_contrast"], expl.exact_cams["2_contrast"].display)
    with pytest.raises(ValueError, match="at most 380 sibling pairs"):
        evaluate_explanations(DEFAULT_APINET_CHECKPOINT, None, pairs=381, split="val", log=None)


def test_object_aware_chance_by_hand():
    from apinet.metrics.protocol import chance_maps, expected_point_rate

    obj = np.zeros((12, 12), dtype=bool)
    obj[1:11, 1:11] = True  # a 10 x 10 "bird"
    part = np.zeros_like(obj)
    part[4:6, 4:6] = True  # a 2 x 2 part inside it
    assert expected_point_rate(obj, part, 0.0) == pytest.approx(4 / 100)
    assert expected_point_rate(obj, part, 1.0) == pytest.approx(12 / 100)  # + the 8 four-neighbours
    assert expected_point_rate(obj, part, 1.5) == pytest.approx(16 / 100)  # + the 4 diagonal corners
    maps = chance_maps(obj, (5.5, 3.2), np.random.default_rng(0))
    row, col = np.unravel_index(np.argmax(maps["chance_bird_point"]), obj.shape)
    assert obj[row, col] and maps["chance_bird_point"].sum() == 1.0
    assert np.unravel_index(np.argmax(maps["chance_box_centre"]), obj.shape) == (3, 5)  # (x, y) -> row 3, col 5
    assert pointing_game(maps["chance_box_centre"], part, 1.0) and not pointing_game(maps["chance_box_centre"], part)
    # many draws: the sampled rate converges on the exact expectation
    rng = np.random.default_rng(1)
    draws = [pointing_game(chance_maps(obj, (0, 0), rng)["chance_bird_point"], part, 1.0) for _ in range(4000)]
    assert np.mean(draws) == pytest.approx(0.12, abs=0.015)


def test_sanity_summary_mean_and_t_interval_by_hand():
    from apinet.metrics import sanity_summary

    def one(values):
        return {"apinet": {"layers": ["fc", "layer4"], "spearman": {"m": values}, "spearman_abs": {"m": values}}}

    res = sanity_summary([one([1.0, 0.2]), one([0.8, 0.4]), one([0.9, 0.0])])
    row = res["apinet"]["spearman"]["m"]
    assert res["apinet"]["layers"] == ["fc", "layer4"] and row["n"] == 3
    assert row["mean"] == [pytest.approx(0.9), pytest.approx(0.2)]
    # sd = 0.1 and 0.2, t(0.975, 2) = 4.3027: half-widths 0.2484 and 0.4968
    assert row["ci95"][0] == (pytest.approx(0.9 - 0.24842, abs=1e-4), pytest.approx(0.9 + 0.24842, abs=1e-4))
    assert row["ci95"][1][1] == pytest.approx(0.2 + 0.49684, abs=1e-4)
    assert row["min"] == [0.8, 0.0] and row["max"] == [1.0, 0.4]
    single = sanity_summary([one([1.0, 0.2])])["apinet"]["spearman"]["m"]
    assert np.isnan(single["ci95"][0][0])
    table = results_markdown({"tolerance_px": 8.57, "pairs": 3, "split": "val", "images_scored": 6,
                              "images_skipped_part_occluded": 0, "mean_part_area_fraction": 0.01, "summary": {},
                              "sanity": [one([1.0, 0.2])] * 3})
    assert "mean over 3 pairs" in table and "| m | 1.00 [1.00, 1.00] | 0.20 [0.20, 0.20] |" in table
