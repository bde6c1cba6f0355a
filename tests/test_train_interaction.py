"""The interaction stage (issue #22): only the mutual MLP trains; the test path stays bit-identical."""

from __future__ import annotations

import json

import pytest
import torch

from apinet import APINet, Baseline, load_model, save_checkpoint
from apinet.cli import main
from apinet.train.interaction import DEPARTURE, InteractionConfig, train_interaction


def _separable(classes: int = 4, per_class: int = 8, dim: int = 512, seed: int = 0):
    """Non-negative pooled features (as after a ReLU trunk): each class lights its own block of
    channels on top of a shared background, so classes are separable."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    x = torch.rand(len(labels), dim, generator=g) * 0.5
    block = dim // classes
    for c in range(classes):
        x[labels == c, c * block:(c + 1) * block] += 1.0 + torch.rand(per_class, block, generator=g)
    return x, labels


def test_only_the_mutual_mlp_changes_and_test_path_logits_are_bit_identical():
    torch.manual_seed(0)
    model = APINet("resnet18", num_classes=4).eval()
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        logits_before = model(images)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _separable()
    train_interaction(model, x, y, InteractionConfig(steps=30, lr=0.1, batch_classes=4, batch_images=2, log_every=10))
    after = model.state_dict()
    for key, value in before.items():
        if key.startswith("mutual."):
            assert not torch.equal(value, after[key]), key
        else:
            assert torch.equal(value, after[key]), key  # trunk (incl. BatchNorm buffers) and fc
    with torch.no_grad():
        assert torch.equal(model(images), logits_before)
    assert not model.training and all(p.requires_grad for p in model.parameters())


def test_loss_decreases_on_a_separable_set():
    torch.manual_seed(0)
    model = APINet("resnet18", num_classes=4)
    x, y = _separable()
    result = train_interaction(model, x, y, InteractionConfig(steps=300, lr=0.1, batch_classes=4, batch_images=4,
                                                              log_every=50))
    first, last = result.history[0], result.history[-1]
    assert [h["step"] for h in result.history] == [50, 100, 150, 200, 250, 300]
    assert last["total"] < 0.8 * first["total"], result.history
    assert last["rank"] < first["rank"], result.history


def test_same_seed_same_weights():
    x, y = _separable()
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = APINet("resnet18", num_classes=4)
        train_interaction(model, x, y, InteractionConfig(steps=5, batch_classes=4, batch_images=2))
        weights.append(model.mutual[0].weight.detach().clone())
    assert torch.equal(*weights)


def test_a_baseline_is_refused():
    x, y = _separable()
    with pytest.raises(ValueError, match="needs an API-Net"):
        train_interaction(Baseline("resnet18", num_classes=4), x, y, InteractionConfig(steps=1))


@pytest.fixture()
def tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = APINet("resnet18", num_classes=20).eval()
    return save_checkpoint(model, tmp_path / "joint" / "best.safetensors", class_names=[str(i) for i in range(20)],
                           preprocess={"input_size": 32, "resize": 32},
                           dataset={"spec": "synthbirds", "image_size": 32},
                           recipe={"model": "apinet", "lr": 0.01}, metrics={"val_top1": 0.5})


def test_command_writes_a_card_that_records_the_stage(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "stage"
    code = main(["train-interaction", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--steps", "12",
                 "--lr", "0.05", "--per-class", "4", "--batch-classes", "4", "--batch-images", "2",
                 "--val-split", "none", "--threads", "1", "--no-progress"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["train_images"] == 80
    source, _ = load_model(tiny_checkpoint)
    model, card = load_model(out / "best.safetensors")
    for key, value in source.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]) != key.startswith("mutual."), key
    stage = card["interaction_stage"]
    assert stage["config"] == {**InteractionConfig().to_dict(), "steps": 12, "lr": 0.05, "per_class": 4,
                               "batch_classes": 4, "batch_images": 2}
    assert stage["departs_from_paper"] == DEPARTURE and "single joint stage" in DEPARTURE
    assert stage["input_sha256"] == json.loads(tiny_checkpoint.with_suffix(".json").read_text())["weights_sha256"]
    assert stage["train_images"] == 80 and stage["final_loss"]["step"] == 12
    assert card["recipe"] == {"model": "apinet", "lr": 0.01} and card["metrics"] == {"val_top1": 0.5}
    assert "--steps 12" in stage["command"]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [12] and log[0]["event"] == "interaction"
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(images), source(images))


def test_command_refuses_out_onto_its_input_in_one_line(tiny_checkpoint, capsys):
    before = tiny_checkpoint.read_bytes()
    code = main(["train-interaction", "--checkpoint", str(tiny_checkpoint), "--out", str(tiny_checkpoint.parent),
                 "--steps", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: --out ") and "is the input file" in err and "(--checkpoint)" in err
    assert tiny_checkpoint.read_bytes() == before


def test_command_refuses_a_folder_holding_a_stage_and_a_baseline(tiny_checkpoint, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "best.json").write_text("{}")
    assert main(["train-interaction", "--checkpoint", str(tiny_checkpoint), "--out", str(taken), "--no-progress"]) == 2
    assert "already holds best.json" in capsys.readouterr().err
    base = save_checkpoint(Baseline("resnet18", num_classes=20), tmp_path / "b.safetensors",
                           preprocess={"input_size": 32, "resize": 32}, dataset={"spec": "synthbirds", "image_size": 32})
    assert main(["train-interaction", "--checkpoint", str(base), "--out", str(tmp_path / "new"), "--no-progress"]) == 2
    assert "has no mutual MLP" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_a_second_run_reuses_the_cached_features_and_gives_the_same_weights(tiny_checkpoint, tmp_path, capsys):
    from safetensors.torch import load_file

    cache = tmp_path / "cache"
    flags = ["--checkpoint", str(tiny_checkpoint), "--steps", "6", "--per-class", "4", "--batch-classes", "4",
             "--batch-images", "2", "--val-split", "none", "--threads", "1", "--no-progress", "--cache-dir", str(cache)]
    assert main(["train-interaction", "--out", str(tmp_path / "one"), *flags]) == 0
    files = sorted(p.name for p in cache.iterdir())
    sha = json.loads(tiny_checkpoint.with_suffix(".json").read_text())["weights_sha256"]
    assert files == [f"features-{sha[:16]}-train-4.safetensors"]
    assert main(["train-interaction", "--out", str(tmp_path / "two"), *flags]) == 0
    one, _ = load_model(tmp_path / "one" / "best.safetensors")
    two, card = load_model(tmp_path / "two" / "best.safetensors")
    assert card["interaction_stage"]["features_reused"] == [str(cache / files[0])]
    assert torch.equal(one.mutual[0].weight, two.mutual[0].weight)
    stored = load_file(str(cache / files[0]))
    assert stored["features"].shape == (80, 512) and torch.bincount(stored["labels"]).tolist() == [4] * 20
    assert main(["train-interaction", "--out", str(tmp_path / "three"), *flags[:5], "5", *flags[6:]]) == 0
    _, card3 = load_model(tmp_path / "three" / "best.safetensors")
    assert card3["interaction_stage"]["features_reused"] == []  # 5 per class: another key, computed afresh
    capsys.readouterr()
