"""Hardening: a real training process killed with SIGKILL mid-epoch, then resumed with ``--resume``.

``tests/test_train.py::test_resume_is_exact`` proves exact resume *in one process* (a clean stop
after ``--max-steps``), and ``test_run_writes_logs_and_atomic_checkpoints`` a write that raises.
Here the run is a separate ``python -m apinet train`` process killed without any chance to clean up,
which is what a preempted job or the OOM killer does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from apinet import load_model
from apinet.train import STATE_FILE, load_state

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# 20 SynthBirds classes x 2 images at 32 px; batches of 4 classes x 2 images: 5 steps per epoch,
# 15 steps in all; `last` is saved at steps 2 and 4 inside each epoch and at every epoch end.
STEPS_PER_EPOCH, EPOCHS = 5, 3
TRAIN_ARGS = [
    "--data", "synthbirds", "--model", "apinet", "--backbone", "resnet18", "--output-stride", "32",
    "--image-size", "32", "--input-size", "32", "--resize", "36", "--test-resize", "32",
    "--per-class", "2", "--val-per-class", "1", "--n-classes", "4", "--n-samples", "2",
    "--optimizer", "sgd", "--lr", "0.05", "--epochs", str(EPOCHS), "--save-every", "2", "--log-every", "1",
    "--seed", "11", "--threads", "1", "--workers", "0", "--no-progress",
]


def _train(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "apinet", "train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _records(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    if not path.is_file():
        return []
    # the last line may be half-written while the process runs (or when it was killed)
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return records


def _wait_for_train_step(proc: subprocess.Popen, run: Path, step: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r.get("event") == "train" and r["step"] >= step for r in _records(run)):
            return
        if proc.poll() is not None:
            pytest.fail(f"training exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"no train step {step} logged within {timeout} s")


def _finish(proc: subprocess.Popen, timeout: float = 180.0) -> None:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    # The reference runs alongside the run we kill (each on one thread) to keep the test short.
    straight = _train(*TRAIN_ARGS, "--out", str(straight_dir))
    victim = _train(*TRAIN_ARGS, "--out", str(killed_dir))

    # The step-3 record is logged after step 2's save (state, then weights + card) has completed,
    # so killing now lands in step 4's forward/backward pass or its save: mid-epoch, mid-work.
    _wait_for_train_step(victim, killed_dir, 3)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL

    # Under the final names there are only complete files: the state loads, and the weights load
    # with their card's hash verified.
    saved = load_state(killed_dir / STATE_FILE)
    step = saved["step"]
    assert step in (2, 4) and saved["epoch"] == 0, step
    assert saved["samplers"][0]["skip"] == step  # a mid-epoch save: the sampler resumes inside epoch 0
    model, card = load_model(killed_dir / "last.safetensors")
    # The state is written before the weights, so a kill between the two leaves the weights one save behind.
    assert card["metrics"]["step"] in (step, step - 2)
    assert not [p for p in killed_dir.iterdir() if p.suffix == ".tmp" and not p.name.startswith(".")]
    # What a kill during a write leaves behind (a hidden temporary): the resumed run must clean it up.
    (killed_dir / f".{STATE_FILE}.killed123.tmp").write_bytes(b"half a state")
    (killed_dir / ".last.safetensors.killed456.tmp").write_bytes(b"half the weights")
    lost = max(r["step"] for r in _records(killed_dir) if r.get("event") == "train")
    assert lost >= step  # work after the last save is lost and redone

    resumed = _train("--resume", str(killed_dir), "--threads", "1", "--no-progress")
    _finish(resumed)
    _finish(straight)

    assert not list(killed_dir.glob("*.tmp")) and not list(killed_dir.glob(".*.tmp"))
    records = _records(killed_dir)
    resume_at = next(i for i, r in enumerate(records) if r["event"] == "resume")
    assert records[resume_at]["step"] == step and records[resume_at]["epoch"] == 0
    after = [r["step"] for r in records[resume_at:] if r["event"] == "train"]
    total = STEPS_PER_EPOCH * EPOCHS
    assert after == list(range(step + 1, total + 1))  # continues from the saved step, not from 0
    assert records[-1]["event"] == "done" and records[-1]["step"] == total
    assert not any(r["event"] == "resume" for r in _records(straight_dir))

    # Both processes run the same seeded recipe on one CPU thread with the same operations in the
    # same order, and the resumed process restores model, optimizer, scheduler, sampler position and
    # RNG state bit for bit (augmentation is seeded per (seed, epoch, index)): the weights are equal,
    # not merely close.
    a, b = load_state(straight_dir / STATE_FILE), load_state(killed_dir / STATE_FILE)
    assert a["step"] == b["step"] == total and a["epoch"] == b["epoch"] == EPOCHS
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["scheduler"] == b["scheduler"] and a["samplers"] == b["samplers"]
    final_a, _ = load_model(straight_dir / "last.safetensors")
    final_b, card_b = load_model(killed_dir / "last.safetensors")
    assert card_b["metrics"]["step"] == total
    for (name, pa), pb in zip(final_a.state_dict().items(), final_b.state_dict().values()):
        assert torch.equal(pa, pb), name
