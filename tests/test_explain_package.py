"""apinet.explain as a package: typed keys, display forms made on access, correspondence maps,
storage of the new fields, the cardless preprocessing and the import graph."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from apinet import APINet, Baseline
from apinet.explain import (CamKey, CamMaps, ChannelSet, ExactKey, LtpaKey, PairExplanation, correspondence_map,
                            explain_pair, feature_cell)

SIZE = 64


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return (APINet("resnet18", num_classes=5, output_stride=16).eval(),
            Baseline("resnet18", num_classes=5, output_stride=16).eval())


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, SIZE, SIZE, generator=g), torch.randn(3, SIZE, SIZE, generator=g)


@pytest.fixture(scope="module")
def expl(models, pair):
    model, baseline = models
    return explain_pair(model, *pair, baseline, k=3, cam_methods=("gradcam",))


def test_typed_keys_are_the_documented_strings(expl):
    assert expl.channels["apinet_gate1"] is expl.channels[ChannelSet.APINET_GATE1]
    assert expl.cams["apinet/pair/gradcam"] is expl.cams[CamKey("apinet", "pair", "gradcam")]
    assert all(isinstance(k, CamKey) for k in expl.cams) and all(isinstance(k, LtpaKey) for k in expl.ltpa)
    key = next(k for k in expl.cams if k == "baseline/test/gradcam")
    assert (key.model, key.path, key.method) == ("baseline", "test", "gradcam")
    assert LtpaKey("apinet/gated/layer4").kind == "gated" and ExactKey.of(2, "other") == "2_other"
    assert ChannelSet.gate(2) == "apinet_gate2" and f"{ChannelSet.BASELINE_TOP}" == "baseline_top"
    assert json.dumps({ChannelSet.APINET_GATE1: 1, CamKey("a/b/c"): 2}) == '{"apinet_gate1": 1, "a/b/c": 2}'
    with pytest.raises(ValueError):
        CamKey("apinet/gradcam")
    with pytest.raises(ValueError):
        ChannelSet("apinet_gate3")


def test_maps_are_stored_at_feature_resolution_and_upsampled_on_access(expl):
    cam = expl.cams["apinet/test/gradcam"]
    assert cam.raw1.shape == (SIZE // 16, SIZE // 16) and cam.size == (SIZE, SIZE)
    assert "map1" not in vars(cam) and cam.map1.shape == (SIZE, SIZE)
    import cv2

    np.testing.assert_array_equal(cam.map1, cv2.resize(cam.raw1, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR))
    arrays = expl._arrays()
    assert not any(a.shape[:2] == (SIZE, SIZE) for k, a in arrays.items() if k not in ("image1", "image2"))
    assert expl.nbytes() == sum(a.nbytes for a in arrays.values())
    # the old positional form (maps at display size, no raw maps) still works
    m = np.arange(16, dtype=np.float32).reshape(4, 4)
    old = CamMaps(m, m * 2, 0, 1, "gradcam", "cam")
    np.testing.assert_array_equal(old.map2, m * 2)
    assert old.raw_max2 == 30.0 and old.size == (4, 4)


def test_correspondence_is_the_cosine_of_the_feature_vectors(expl, models, pair):
    model, _ = models
    with torch.no_grad():
        f = model.forward_features(torch.stack(pair)).double()
    h, w = f.shape[-2:]
    for image, (r, c) in ((1, (1, 2)), (2, (3, 0))):
        src, dst = f[image - 1], f[2 - image]
        q = src[:, r, c]
        cos = torch.einsum("k,khw->hw", q, dst) / (q.norm() * dst.norm(dim=0)).clamp_min(1e-12)
        m = correspondence_map(expl, image, r, c)
        assert (m.source, m.target, m.similarity.shape) == (image, 3 - image, (h, w))
        np.testing.assert_allclose(m.similarity, cos.numpy(), atol=2e-3)
        assert m.best == tuple(int(v) for v in np.unravel_index(np.argmax(m.similarity), (h, w)))
        assert m.display.shape == (SIZE, SIZE)
    # the same image with itself: the clicked cell is its own best match, similarity 1
    self_expl = explain_pair(model, pair[0], pair[0], cam_methods=(), contrast=False)
    m = correspondence_map(self_expl, 1, 2, 3)
    assert m.best == (2, 3) and m.similarity[2, 3] == pytest.approx(1.0, abs=2e-3)
    assert feature_cell(expl, 0, SIZE - 1) == (0, w - 1) and feature_cell(expl, SIZE / 2, 0) == (h // 2, 0)
    with pytest.raises(ValueError, match="outside"):
        correspondence_map(expl, 1, h, 0)


def test_correspondence_is_fast_at_paper_size():
    """14 x 14 x 2048 (ResNet-101 at 448 px): one click well under 100 ms."""
    rng = np.random.default_rng(0)
    feats = np.abs(rng.normal(size=(2, 2048, 14, 14))).astype(np.float32)
    from apinet.explain.correspondence import unit_vectors

    class Fake:
        image1 = np.zeros((448, 448, 3), np.uint8)
        unit_features1, unit_features2 = unit_vectors(feats[0]), unit_vectors(feats[1])

    times = []
    for r in range(5):
        tic = time.perf_counter()
        correspondence_map(Fake, 1, r, r)
        times.append(time.perf_counter() - tic)
    assert min(times) < 0.1


def test_new_fields_round_trip_through_npz_and_json(expl, tmp_path):
    back = PairExplanation.from_npz(expl.to_npz(tmp_path / "e.npz"))
    for key in ("1_self", "2_contrast"):
        np.testing.assert_array_equal(back.exact_cams[key].raw, expl.exact_cams[key].raw)
        assert back.exact_cams[key].value == expl.exact_cams[key].value
        assert back.exact_cams[key].size == (SIZE, SIZE)
    for key, c in expl.contrast_cams.items():
        b = back.contrast_cams[key]
        np.testing.assert_array_equal(b.raw2, c.raw2)
        assert (b.signed, b.reference1, b.value2, b.offset1) == (c.signed, c.reference1, c.value2, c.offset1)
    from apinet.explain import ContrastMaps

    assert all(isinstance(c, ContrastMaps) for c in back.contrast_cams.values())
    np.testing.assert_array_equal(back.unit_features2, expl.unit_features2)
    np.testing.assert_array_equal(back.contribution1, expl.contribution1)
    np.testing.assert_array_equal(back.cams["apinet/pair/gradcam"].map2, expl.cams["apinet/pair/gradcam"].map2)
    assert all(isinstance(k, ExactKey) for k in back.exact_cams)
    meta = json.loads(expl.to_json())
    assert meta["exact_cams"]["1_self"]["target"] == expl.targets[0]
    assert meta["contrast_cams"]["baseline/test/finercam"]["reference1"] == expl.targets[1] or \
        expl.targets[0] == expl.targets[1]


def test_npz_written_before_the_package_still_loads(expl, tmp_path):
    """Files of the single-module explain stored CAMs at display size (map1/map2) beside raw1/raw2."""
    arrays = {k: v for k, v in expl._arrays().items()
              if not k.startswith(("exact_cams/", "contrast_cams/", "unit_features", "contribution"))}
    for key, cam in expl.cams.items():
        arrays[f"cams/{key}/map1"], arrays[f"cams/{key}/map2"] = cam.map1, cam.map2
    meta = json.loads(expl.to_json())
    for group in ("exact_cams", "contrast_cams"):
        meta.pop(group)
    for c in meta["cams"].values():
        c.pop("size")
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez_compressed(tmp_path / "old.npz", **arrays)
    back = PairExplanation.from_npz(tmp_path / "old.npz")
    cam = back.cams["apinet/test/gradcam"]
    assert cam.size == (SIZE, SIZE) and cam.raw1.shape == (SIZE // 16, SIZE // 16)
    np.testing.assert_array_equal(cam.map1, expl.cams["apinet/test/gradcam"].map1)
    assert back.exact_cams == {} and back.unit_features1 is None
    with pytest.raises(ValueError, match="no feature vectors"):
        correspondence_map(back, 1, 0, 0)


def test_cardless_preprocessing_is_the_transforms_fallback(expl):
    from apinet.data.transforms import CARDLESS_INPUT_SIZE, CARDLESS_RESIZE

    assert expl.settings["preprocess"]["input_size"] == CARDLESS_INPUT_SIZE
    assert expl.settings["preprocess"]["resize"] == CARDLESS_RESIZE


def test_import_graph():
    """``import apinet`` stays light, ``apinet.explain_pair`` is there on first use, explain never imports render."""
    code = ("import sys, apinet; assert 'apinet.explain' not in sys.modules; "
            "from apinet import explain_pair, PairExplanation; import apinet.explain as e; "
            "assert apinet.explain_pair is e.explain_pair and 'explain_pair' in dir(apinet); "
            "assert 'apinet.render' not in sys.modules and 'torch' in sys.modules; "
            "import apinet.explain.pair, apinet.explain.exact, apinet.explain.cams, apinet.explain.correspondence; "
            "assert 'apinet.render' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    # no module of the explain package imports render (the CLI draws figures and may import both)
    import re
    from pathlib import Path

    import apinet

    for path in (Path(apinet.__file__).parent / "explain").glob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+(\.\.render|apinet\.render)", path.read_text(), re.M), path


def test_explanation_pickles_with_its_typed_keys(expl):
    """The app's st.cache_data pickles every explanation."""
    import pickle

    back = pickle.loads(pickle.dumps(expl))
    assert set(back.cams) == set(expl.cams) and all(isinstance(k, CamKey) for k in back.cams)
    assert isinstance(next(iter(back.channels)), ChannelSet)
    np.testing.assert_array_equal(back.cams["apinet/pair/gradcam"].map1, expl.cams["apinet/pair/gradcam"].map1)
    np.testing.assert_array_equal(back.exact_cams[ExactKey.CONTRAST1].display, expl.exact_cams["1_contrast"].display)
