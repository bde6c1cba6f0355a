"""The typed recipe (apinet.train.config.TrainConfig), its presets and saved forms, and the schedule."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from apinet.pairs import BalancedBatchSampler
from apinet.train import PRESETS, STATE_FILE, TrainConfig, build_config, build_optimizer, resume_config


def test_presets_are_configs_and_flags_override_them():
    assert all(isinstance(p, TrainConfig) and p.preset == name for name, p in PRESETS.items())
    assert TrainConfig() == dataclasses.replace(PRESETS["demo-scratch"], preset=None)  # the fallback recipe
    paper = build_config({"preset": "paper", "lr": 0.1})
    assert (paper.backbone, paper.input_size, paper.resize_mode, paper.lr, paper.freeze_epochs) == \
        ("resnet101", 448, "square", 0.1, 8)
    assert paper["lr"] == 0.1 and paper.get("nonsense", 3) == 3  # dict-style reading, as before
    with pytest.raises(KeyError):
        paper["nonsense"]
    demo = build_config({"preset": "demo", "weights": "w.pth"})
    assert demo.pretrained and demo.channels_last and demo.backbone == "efficientnet_lite0"
    plain = build_config({"func": print, "command": "train", "epochs": 3})  # argparse's extras are dropped
    assert plain.preset is None and plain.epochs == 3 and plain.optimizer == "adamw" and plain.command is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        plain.lr = 1.0  # type: ignore[misc]
    assert plain.replace(lr=1.0).lr == 1.0 and plain.lr == 2e-3
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        build_config({"preset": "nope"})
    assert TrainConfig.from_dict(paper.to_dict()) == paper
    with pytest.raises(ValueError, match="recipe: optimizer must be one of 'sgd', 'adamw', got 'adam'"):
        build_config({"optimizer": "adam"})
    with pytest.raises(ValueError, match="recipe: model must be one of"):
        TrainConfig(model="resnet")
    assert json.loads(json.dumps(paper.to_dict())) == paper.to_dict()  # the stored form is plain JSON


def test_a_run_saved_as_a_dict_resumes_with_its_recipe(tmp_path):
    """config.json written before TrainConfig existed (a dict, in another key order, with a key this
    version does not know) resumes: its values, max_steps cleared, the flags given now on top."""
    run = tmp_path / "run"
    run.mkdir()
    (run / STATE_FILE).write_bytes(b"")  # resolve_resume only needs the file to exist
    old = {"model": "baseline", "val_split": None, "max_steps": 5, "seed": 7, "backbone": "resnet34",
           "output_stride": 32, "data": "synthbirds:3", "lr": 0.05, "epochs": 4, "preset": None,
           "command": "python -m apinet train ...", "retired_flag": True}
    (run / "config.json").write_text(json.dumps(old))
    config = resume_config({"resume": str(run), "threads": 1})
    assert isinstance(config, TrainConfig)
    assert (config.model, config.seed, config.backbone, config.output_stride, config.data, config.lr,
            config.epochs, config.max_steps, config.threads, config.command) == \
        ("baseline", 7, "resnet34", 32, "synthbirds:3", 0.05, 4, None, 1, None)
    (run / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        resume_config({"resume": str(run)})


def _old_scheduler(optimizer, total, warmup, freeze):
    """The schedule before the package: a second lambda held the trunk group at lr 0 while frozen."""
    import math

    def cosine(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [lambda s: 0.0 if s < freeze else cosine(s), cosine])


def test_one_schedule_for_both_groups_matches_the_old_one_after_the_freeze_and_loads_its_state():
    model = torch.nn.Module()
    model.trunk = torch.nn.Module()
    model.trunk.stem = torch.nn.Linear(2, 2)
    model.fc = torch.nn.Linear(2, 2)
    config = TrainConfig(optimizer="sgd", lr=0.1, epochs=3, warmup_epochs=0.5, freeze_epochs=1)
    steps_per_epoch = 4
    new_opt, new = build_optimizer(model, config, steps_per_epoch)
    old_opt = torch.optim.SGD([{"params": [model.trunk.stem.weight, model.trunk.stem.bias]},
                               {"params": list(model.fc.parameters())}], lr=0.1)
    old = _old_scheduler(old_opt, 12, 2, 4)
    for step in range(12):
        new_lr, old_lr = new.get_last_lr(), old.get_last_lr()
        assert new_lr[1] == pytest.approx(old_lr[1])  # the head: the same cosine throughout
        if step >= 4:  # the trunk once released: the same too (while frozen it has no gradient at all)
            assert new_lr[0] == pytest.approx(old_lr[0])
        if step == 2:  # a run saved mid-freeze with the old schedule resumes on the new one
            state = old.state_dict()
        new_opt.step(), old_opt.step(), new.step(), old.step()
    _, resumed = build_optimizer(model, config, steps_per_epoch)
    resumed.load_state_dict(state)
    assert resumed.last_epoch == 2
    for _ in range(6):
        resumed.step()
    # step 8, released: both groups where the old schedule had them
    assert resumed.get_last_lr() == pytest.approx([0.1 * old.lr_lambdas[0](8), 0.1 * old.lr_lambdas[1](8)])
    assert old.lr_lambdas[0](8) > 0


def test_sampler_reports_the_batches_a_resume_skips():
    sampler = BalancedBatchSampler([0, 0, 1, 1, 2, 2, 3, 3] * 2, 2, 2, seed=0)
    assert len(sampler) == 4 and sampler.batches_to_skip == 0
    first = list(sampler)
    sampler2 = BalancedBatchSampler([0, 0, 1, 1, 2, 2, 3, 3] * 2, 2, 2, seed=0)
    iter(sampler2).__next__()  # start the epoch (records its start state)
    sampler2.load_state_dict(sampler2.state_dict(batches_consumed=3))
    assert sampler2.batches_to_skip == 3
    assert list(sampler2) == first[3:] and sampler2.batches_to_skip == 0
