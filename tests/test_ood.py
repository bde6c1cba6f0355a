"""apinet.ood: the deep k-NN test for images unlike the training data, and its place in checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apinet import APINet, load_model, save_checkpoint
from apinet.checkpoint import CheckpointError
from apinet.ood import BANK_KEY, FeatureReference, knn_scores, make_reference


def test_knn_scores_are_cosine_distances_to_the_kth_neighbour():
    bank = torch.eye(3)  # three orthonormal training features
    query = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, -5.0]])
    np.testing.assert_allclose(knn_scores(bank, query, 1), [0.0, 1 - 2 ** -0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(knn_scores(bank, query, 2), [1.0, 1 - 2 ** -0.5, 1.0], atol=1e-6)
    # a bank row scored against its own bank skips itself
    np.testing.assert_allclose(knn_scores(bank, bank, 1, exclude_self=True), [1.0, 1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="k=3 needs at least 4 reference images, the bank has 3"):
        knn_scores(bank, query, 3, exclude_self=True)


class _Pooled(torch.nn.Module):
    """A stand-in model whose 'images' are already pooled features [B, D, 1, 1]."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward_features(self, x):
        return x

    def pool_features(self, maps):
        return maps.flatten(1)


def _loader(features):
    data = [(f[:, None, None], 0) for f in features]
    return torch.utils.data.DataLoader(data, batch_size=8)


def test_threshold_is_the_calibration_percentile_and_flags_the_far_ones():
    gen = torch.Generator().manual_seed(0)
    centre = torch.zeros(16)
    centre[0] = 10.0
    bank = centre + torch.randn(40, 16, generator=gen)
    calibration = centre + torch.randn(200, 16, generator=gen)
    reference = make_reference(_Pooled(), _loader(bank), _loader(calibration), k=3, percentile=95, dataset="toy")
    scores = knn_scores(reference.bank, calibration, 3)
    assert reference.threshold == pytest.approx(float(np.percentile(scores, 95)))
    assert reference.info["calibration_false_alarm"] == pytest.approx(0.05, abs=0.006)
    far = torch.zeros(2, 16)
    far[:, 1] = 10.0  # another direction entirely
    assert reference.unusual(far).all() and not reference.unusual(centre).any()
    score = float(reference.scores(far)[0])
    line = reference.message(score)
    assert line.startswith(f"Unlike anything this model was trained on (toy): distance {score:.3f} > "
                           f"{reference.threshold:.3f}")
    assert "beyond 95 % of its validation images" in line
    with pytest.raises(ValueError, match=r"percentile must be in \[50, 100\)"):
        make_reference(_Pooled(), _loader(bank), _loader(calibration), percentile=100)


def test_reference_travels_inside_the_checkpoint_under_its_hash(tmp_path):
    torch.manual_seed(0)
    model = APINet("resnet18", num_classes=3).eval()
    bank = torch.nn.functional.normalize(torch.randn(6, 512), dim=1)
    reference = FeatureReference(bank=bank, k=2, threshold=0.25, info={"percentile": 99.0, "dataset": "toy"})
    path = save_checkpoint(model, tmp_path / "m.safetensors", extra_tensors={BANK_KEY: bank},
                           reference=reference.card_entry())
    loaded, card = load_model(path)  # the extra tensor does not disturb the model
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    back = FeatureReference.from_checkpoint(path, card)
    assert torch.equal(back.bank, bank) and back.k == 2 and back.threshold == 0.25
    assert back.info == {"percentile": 99.0, "dataset": "toy"}
    assert card["reference"]["bank_images"] == 6
    assert FeatureReference.from_checkpoint(path, {**card, "reference": None}) is None
    with pytest.raises(ValueError, match="extra tensor names must start with 'reference.'"):
        save_checkpoint(model, tmp_path / "x.safetensors", extra_tensors={"bank": bank})
    # the bank is covered by the card's hash: changing it is refused like changing a weight
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the model card"):
        load_model(path)


def test_the_shipped_demo_flags_photographs_and_not_its_gallery():
    """The demo API-Net's reference (made by `evaluate --export`): scikit-image's cat and coffee photos
    are unlike SynthBirds, the gallery's test renders are not, and the card records the measured
    false-alarm rates."""
    from pathlib import Path

    from PIL import Image

    from apinet.data import Preprocess

    root = Path(__file__).resolve().parents[1]
    path = root / "assets" / "checkpoints" / "apinet_synthbirds.safetensors"
    model, card = load_model(path)
    reference = FeatureReference.from_checkpoint(path, card)
    assert reference is not None and reference.bank.shape == (400, model.feature_dim)
    assert card["reference"]["calibration_split"] == "val" and card["reference"]["percentile"] == 99.0
    assert 0.0 <= card["reference"]["test_false_alarm"] <= 0.05
    pre = Preprocess.from_card(card)
    photos = [root / "tests" / "data" / name for name in ("chelsea.jpg", "coffee.jpg")]
    gallery = sorted((root / "assets" / "gallery").glob("*.png"))[:8]
    with torch.no_grad():
        x = torch.stack([pre(Image.open(p).convert("RGB")) for p in photos + gallery])
        pooled = model.pool_features(model.forward_features(x))
    flagged = reference.unusual(pooled)
    assert flagged[:2].all() and not flagged[2:].any(), reference.scores(pooled)


@pytest.mark.slow
def test_evaluate_export_makes_and_stores_the_reference(tmp_path):
    """`evaluate --export`: bank from the training split, threshold from validation, false alarms
    measured on the evaluated split, all carried into the exported checkpoint."""
    from apinet.evaluate import evaluate_checkpoint
    from apinet.train import export_checkpoint

    torch.manual_seed(0)
    model = APINet("resnet18", num_classes=20).eval()
    src = save_checkpoint(model, tmp_path / "m.safetensors", class_names=[str(i) for i in range(20)],
                          preprocess={"input_size": 32, "resize": 32},
                          dataset={"spec": "synthbirds", "image_size": 32})
    result = evaluate_checkpoint(src, split="test", reference_per_class=2)
    reference = result.extra["reference"]
    assert reference.bank.shape == (40, 512) and reference.info["calibration_split"] == "val"
    assert reference.info["test_images"] == 800 and result.to_dict()["reference_false_alarm"] == (
        reference.info["test_false_alarm"])
    assert "reference" not in result.to_dict()  # the object goes into the export, not the JSON
    dst = export_checkpoint(src, tmp_path / "e.safetensors", dtype=torch.float16, reference=reference)
    _, card = load_model(dst)
    back = FeatureReference.from_checkpoint(dst, card)
    assert back.threshold == pytest.approx(reference.threshold) and back.bank.shape == (40, 512)
    torch.testing.assert_close(back.bank, reference.bank, atol=1e-3, rtol=1e-3)  # stored as float16
    # a later export without a new reference keeps the one the source carries
    again = export_checkpoint(dst, tmp_path / "f.safetensors", dtype=torch.float32)
    assert FeatureReference.from_checkpoint(again, load_model(again)[1]).threshold == pytest.approx(back.threshold)
