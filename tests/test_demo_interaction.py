"""The shipped demo API-Net after its interaction stage (issue #22): the test path is the joint
stage's, byte for byte; the mutual MLP is new, and its gates act."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "assets" / "checkpoints" / "apinet_synthbirds.safetensors"
#: The joint-stage demo as shipped up to commit 6d71075 (weights_sha256 of its card).
JOINT_SHA256 = "c22e24206c2168e716d7d66bae0919d08f8e470ebb601cda66ff667029b5038e"
#: SHA-256 over (name, dtype, shape, bytes) of every tensor of that file outside ``mutual.*`` (297
#: tensors: trunk, classifier, k-NN reference bank), and of its ``mutual.*`` tensors.
JOINT_TEST_PATH_DIGEST = "6f7ec9649f0f6f2f14771b1333985877ca658b1fdb76594f8cef352dd1e4ccff"
JOINT_MUTUAL_DIGEST = "3d9d94ae5414dfdf8f6e03063f1b6be3e86975553eb25e28acdfa5cf44649921"


def _digest(path: Path, mutual: bool) -> tuple[str, int]:
    from safetensors import safe_open

    h = hashlib.sha256()
    with safe_open(str(path), framework="np") as fh:
        keys = sorted(k for k in fh.keys() if k.startswith("mutual.") == mutual)
        for key in keys:
            a = fh.get_tensor(key)
            for part in (key.encode(), str(a.dtype).encode(), str(a.shape).encode(), a.tobytes()):
                h.update(part)
    return h.hexdigest(), len(keys)


def test_every_tensor_but_the_mutual_mlp_is_the_joint_stages_byte_for_byte():
    assert _digest(SHIPPED, mutual=False) == (JOINT_TEST_PATH_DIGEST, 297)
    assert _digest(SHIPPED, mutual=True)[0] != JOINT_MUTUAL_DIGEST


def test_the_card_records_the_stage_and_where_it_departs_from_the_paper():
    from apinet import load_card

    card = load_card(SHIPPED)
    stage = card["interaction_stage"]
    assert stage["input_sha256"] == JOINT_SHA256
    assert "single joint stage" in stage["departs_from_paper"] and "bit-identical" in stage["departs_from_paper"]
    config = stage["config"]
    assert (config["momentum"], config["weight_decay"], config["margin"]) == (0.9, 5e-4, 0.05)
    assert (config["batch_classes"], config["batch_images"]) == (8, 4)
    assert stage["val_split"] == "val" and card["weights_dtype"] == "float16"
    assert card["recipe"]["preset"] == "demo"  # the joint stage's recipe is kept beside the stage's


@torch.no_grad()
def test_the_shipped_gates_act_on_validation_images():
    """Eight validation renders (two of each of four classes), paired as in training: the gates
    spread and differ between partners (the joint stage alone: std 0.014, |g1 - g2| 0.006 on val)."""
    from apinet import load_model
    from apinet.data import Preprocess, build_dataset
    from apinet.mechanism import gate_activity

    model, card = load_model(SHIPPED)
    pre = Preprocess.from_card(card).transform(False)
    data = build_dataset("synthbirds", "val", image_size=card["dataset"]["image_size"], per_class=2)
    index = [i for i, label in enumerate(data.labels) if label in (0, 5, 10, 15)]
    images = torch.stack([pre(data.load_pil(i)) for i in index])
    labels = torch.tensor([data.labels[i] for i in index])
    pooled = model.pool_features(model.forward_features(images))
    activity = gate_activity(model, pooled, labels)
    assert activity.gate_std > 0.1 and activity.gate_gap > 0.05, activity
    assert activity.inter.logit_gap > 0.2, activity
