"""``evaluate``: JSON keys, and exact numbers for a model that always predicts one class."""

from __future__ import annotations

import json

import pytest
import torch

from apinet import APINet, save_checkpoint
from apinet.cli import main
from apinet.data import Preprocess, SynthBirds
from apinet.evaluate import confused_pairs, summarize


def _constant_model(path, klass: int, ltpa: bool) -> None:
    """An API-Net whose classifier (and LTPA classifier) ignores the features and predicts ``klass``."""
    torch.manual_seed(0)
    model = APINet("resnet18", 20, ltpa={"stages": ["layer4"], "compatibility": "dp"} if ltpa else None)
    with torch.no_grad():
        heads = [model.fc] + (list(model.ltpa.classifiers) if ltpa else [])
        for head in heads:
            head.weight.zero_()
            head.bias.zero_()
            head.bias[klass] = 5.0
    save_checkpoint(
        model, path, class_names=list(SynthBirds.CLASSES), preprocess=Preprocess(32).to_dict(),
        dataset={"spec": "synthbirds", "image_size": 32},
    )


@pytest.mark.slow
def test_evaluate_command_writes_exact_metrics(tmp_path, capsys):
    ckpt = tmp_path / "const.safetensors"
    _constant_model(ckpt, klass=3, ltpa=True)
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", "synthbirds", "--split", "val", "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == metrics
    assert {"top1", "per_class", "confused_pairs", "num_images", "ltpa_top1", "split", "data"} <= set(metrics)
    n = SynthBirds("val").per_class  # images per class in the split
    assert metrics["num_images"] == 20 * n
    assert metrics["top1"] == pytest.approx(1 / 20)
    assert metrics["ltpa_top1"] == pytest.approx(1 / 20)
    names = SynthBirds.CLASSES
    assert metrics["per_class"][names[3]] == 1.0
    assert all(v == 0.0 for k, v in metrics["per_class"].items() if k != names[3])
    pairs = metrics["confused_pairs"]
    assert len(pairs) == 10 and all(p["predicted"] == names[3] and p["count"] == n for p in pairs)
    assert [p["true"] for p in pairs] == [names[c] for c in (0, 1, 2, 4, 5, 6, 7, 8, 9, 10)]


def test_summary_of_known_predictions():
    names = ["a", "b", "c"]
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 2])
    s = summarize(pred, target, names)
    assert s["top1"] == pytest.approx(3 / 6)
    assert s["per_class"] == pytest.approx({"a": 1 / 3, "b": 0.5, "c": 1.0})
    assert s["confused_pairs"] == [
        {"true": "a", "predicted": "b", "count": 2},
        {"true": "b", "predicted": "c", "count": 1},
    ]
    assert confused_pairs(target, target, names) == []
