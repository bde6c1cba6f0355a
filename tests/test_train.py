"""Training loop: loss goes down, exact resume, atomic checkpoints, LTPA plumbing, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from apinet import APINet, load_model
from apinet.data import Preprocess, SynthBirds
from apinet.train import STATE_FILE, TrainStep, build_config, load_state, train


def tiny_config(run_dir: Path, **overrides):
    """20 classes x 2 images at 32 px, batches of 4 classes x 2: 5 steps per epoch."""
    flags = {
        "model": "apinet",
        "backbone": "resnet18",
        "output_stride": 32,
        "data": "synthbirds",
        "image_size": 32,
        "input_size": 32,
        "resize": 36,
        "test_resize": 32,
        "per_class": 2,
        "val_per_class": 1,
        "n_classes": 4,
        "n_samples": 2,
        "optimizer": "sgd",
        "lr": 0.05,
        "epochs": 2,
        "warmup_epochs": 0.5,
        "out": str(run_dir),
        "no_progress": True,
        "workers": 0,
        "save_every": 2,
        "log_every": 1,
        "threads": 1,
    }
    return build_config({**flags, **overrides})


def test_few_steps_lower_the_loss():
    torch.manual_seed(0)
    data = SynthBirds("train", image_size=32, per_class=2)
    pre = Preprocess(32).transform(False)
    idx = [i for i in range(len(data)) if data.labels[i] < 4]
    images = torch.stack([pre(data.load_pil(i)) for i in idx])
    labels = torch.tensor([data.labels[i] for i in idx])
    model = APINet("resnet18", 20, dropout=0.0)
    step = TrainStep(model, margin=0.05, rank_weight=1.0, ltpa_weight=1.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        terms = step(images, labels)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        losses.append(float(terms["total"].detach()))
        assert set(terms) >= {"total", "ce", "rank", "acc"}
    assert losses[-1] < 0.5 * losses[0] and min(losses[3:]) < min(losses[:3]), losses


@pytest.mark.slow
def test_resume_is_exact(tmp_path):
    straight = tiny_config(tmp_path / "straight")
    train(straight)
    # 3 steps (a kill in the middle of epoch 0), then resume to the end
    train(tiny_config(tmp_path / "split", max_steps=3))
    half = load_state(tmp_path / "split" / STATE_FILE)
    assert half["step"] == 3 and half["samplers"][0]["skip"] == 3
    train(tiny_config(tmp_path / "ignored", resume=str(tmp_path / "split" / "last.safetensors"), out=None))
    a = load_state(tmp_path / "straight" / STATE_FILE)
    b = load_state(tmp_path / "split" / STATE_FILE)
    assert a["step"] == b["step"] == 10 and a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["scheduler"] == b["scheduler"]
    assert a["samplers"] == b["samplers"]
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    assert not (tmp_path / "ignored").exists()  # --resume writes into the resumed run


@pytest.mark.slow
def test_run_writes_logs_and_atomic_checkpoints(tmp_path, monkeypatch):
    out = tmp_path / "run"
    summary = train(tiny_config(out, max_steps=4, epochs=1, model="baseline"))
    assert summary["step"] == 4
    names = sorted(p.name for p in out.iterdir())
    assert {"best.safetensors", "best.json", "last.safetensors", "last.json", STATE_FILE, "log.jsonl"} <= set(names)
    assert not [n for n in names if n.endswith(".tmp")]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all({"total", "ce", "lr", "acc", "epoch", "time", "img_per_s"} <= set(r) for r in steps)
    assert any(r["event"] == "val" and 0.0 <= r["val_top1"] <= 1.0 for r in records)
    model, card = load_model(out / "best.safetensors")
    assert card["class_names"] == list(SynthBirds.CLASSES)
    assert card["preprocess"]["input_size"] == 32 and card["dataset"]["spec"] == "synthbirds"
    assert card["seed"] == 0 and card["recipe"]["model"] == "baseline" and card["machine"]["cpu_cores"] >= 1
    assert "val_top1" in card["metrics"] and card["wall_time_s"] > 0

    # a crash while writing the state leaves the previous complete file and no temporary file
    before = (out / STATE_FILE).read_bytes()

    def broken_save(obj, path, *a, **k):
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        train(tiny_config(tmp_path / "x", resume=str(out), out=None, epochs=1, model="baseline"))
    assert (out / STATE_FILE).read_bytes() == before
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_ltpa_adds_its_loss_and_accuracy(tmp_path):
    out = tmp_path / "ltpa"
    train(tiny_config(out, max_steps=2, ltpa="layer3,layer4:dp", ltpa_weight=0.5, ltpa_aggregate="independent"))
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    step = next(r for r in records if r["event"] == "train")
    assert {"ltpa", "ltpa_acc", "rank"} <= set(step)
    assert step["total"] == pytest.approx(step["ce"] + step["rank"] + 0.5 * step["ltpa"], abs=1e-4)
    assert any("val_ltpa_top1" in r for r in records if r["event"] == "val")
    model, card = load_model(out / "last.safetensors")
    assert card["config"]["ltpa"] == {
        "stages": ["layer3", "layer4"], "compatibility": "dp", "normalize": "softmax", "aggregate": "independent"
    }
    assert len(model.ltpa.classifiers) == 2  # one classifier per stage, probabilities averaged


def test_preset_values_yield_to_flags():
    paper = build_config({"preset": "paper", "lr": 0.1})
    assert paper["backbone"] == "resnet101" and paper["lr"] == 0.1
    assert (paper["n_classes"], paper["n_samples"], paper["freeze_epochs"], paper["epochs"]) == (30, 4, 8, 100)
    assert (paper["input_size"], paper["resize"], paper["test_resize"]) == (448, 512, 512)
    demo = build_config({"preset": "demo", "weights": "w.pth"})
    assert demo["output_stride"] == 16 and demo["pretrained"] is True


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "cub:/nonexistent", "--max-steps", "1"],
        ["train", "--ltpa", "layer9", "--max-steps", "1", "--per-class", "4", "--image-size", "32"],
        ["evaluate", "--checkpoint", "/nonexistent.safetensors", "--data", "synthbirds"],
    ],
)
def test_cli_errors_exit_2_with_one_line(argv, tmp_path, capsys):
    """In this process: ``python -m apinet`` is ``sys.exit(main())`` (its own process is tested by
    tests/test_hardening_images.py and the wheel's console script by tests/test_packaging.py)."""
    from apinet.cli import main

    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert not (tmp_path / "o").exists()  # nothing written for a refused command


def test_init_trunk_copies_a_trained_checkpoints_trunk(tmp_path):
    """--init-trunk: API-Net starts from the baseline's trunk (and only its trunk); the recipe's own
    classifier and interaction stay freshly initialised; another output stride is refused."""
    from apinet import Baseline, save_checkpoint
    from apinet.train import build_train_model

    torch.manual_seed(3)
    source = Baseline("resnet18", 20, output_stride=32)
    path = save_checkpoint(source, tmp_path / "base.safetensors", class_names=[str(i) for i in range(20)])
    config = tiny_config(tmp_path / "run", init_trunk=str(path))
    model = build_train_model(config, 20)
    for (name, mine), theirs in zip(model.trunk.state_dict().items(), source.trunk.state_dict().values()):
        assert torch.equal(mine, theirs), name
    torch.manual_seed(4)
    fresh = build_train_model(config, 20, init=False)  # what a resumed run builds before loading its state
    assert not torch.equal(fresh.trunk.stem[0].weight, source.trunk.stem[0].weight)
    assert model.fc.weight.shape == source.fc.weight.shape and not torch.equal(model.fc.weight, source.fc.weight)
    assert hasattr(model, "mutual")
    with pytest.raises(ValueError, match=r"output_stride is 32, this recipe's is 16"):
        build_train_model(tiny_config(tmp_path / "run2", init_trunk=str(path), output_stride=16), 20)


@pytest.mark.slow
def test_frozen_trunk_gets_no_step_no_decay_and_no_optimizer_state(tmp_path):
    """--freeze-epochs freezes as the official code does: until the trunk is released its weights stay
    as initialised (SGD weight decay included) and it has no momentum; resume across the boundary is
    exact."""
    from apinet.train import build_train_model, trunk_parameters

    recipe = dict(freeze_epochs=1, weight_decay=0.05, momentum=0.9)
    train(tiny_config(tmp_path / "split", max_steps=5, **recipe))  # exactly the frozen epoch
    half = load_state(tmp_path / "split" / STATE_FILE)
    torch.manual_seed(0)
    initial = build_train_model(tiny_config(tmp_path / "x", **recipe), 20)
    trunk_keys = [k for k in initial.state_dict() if k.startswith("trunk.") and "running" not in k
                  and "num_batches" not in k]
    for key in trunk_keys:
        assert torch.equal(half["model"][key], initial.state_dict()[key]), key
    groups = half["optimizer"]["param_groups"]
    trunk_ids, head_ids = set(groups[0]["params"]), set(groups[1]["params"])
    assert len(trunk_ids) == len(trunk_parameters(initial))
    state = half["optimizer"]["state"]
    assert not trunk_ids & set(state)  # no momentum buffer for any trunk parameter
    assert head_ids <= set(state)
    # released at step 6: the trunk moves and its momentum starts from its first gradient
    train(tiny_config(tmp_path / "ignored", resume=str(tmp_path / "split"), out=None, max_steps=6, **recipe))
    after = load_state(tmp_path / "split" / STATE_FILE)
    assert trunk_ids <= set(after["optimizer"]["state"])
    assert any(not torch.equal(after["model"][k], initial.state_dict()[k]) for k in trunk_keys)
    # resumed across the boundary == straight through it
    train(tiny_config(tmp_path / "straight", max_steps=6, **recipe))
    straight = load_state(tmp_path / "straight" / STATE_FILE)
    for key, value in straight["model"].items():
        assert torch.equal(value, after["model"][key]), key
