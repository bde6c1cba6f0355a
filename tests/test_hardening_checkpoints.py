"""Hardening: hostile and broken checkpoint files, through load_model and the command line.

Already proven in ``tests/test_checkpoint.py`` (not repeated here): a card describing another
architecture or class count (shape / unexpected-tensor messages), a flipped byte failing the SHA-256,
a file cut at 1000 bytes with ``verify=False``, and a pickle payload at a ``.safetensors`` path.

Added here: the payload at ``.pt`` / ``.pth`` paths (with and without a card), in the legacy
(non-zip) torch.save format and as a protocol-0 pickle (no ``\\x80`` magic byte); truncation at every
structurally interesting offset with and without hash verification; real weights of another
architecture / class count under a matching-looking card; and the ``evaluate`` / ``explain`` CLIs
refusing ``evil.safetensors`` with exit 2 and one line. Every payload test first proves that the
payload *does* create its marker when unpickled, so "marker never created" means something.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import apinet
from apinet import CheckpointError, load_model, save_checkpoint
from apinet.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this opens (creates) ``marker`` for writing: stands for arbitrary code execution."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _card(path: Path) -> None:
    """A plausible card beside a hostile file, so only the weights file can be what refuses it."""
    config = apinet.Baseline("resnet18", 2).config
    card = {"format": "apinet-explorer/1", "config": config, "weights_sha256": "0" * 64}
    path.with_suffix(".json").write_text(json.dumps(card))


def _payloads(marker: Path) -> dict[str, bytes]:
    """Each hostile encoding of the payload, as bytes."""
    zipped, legacy = io.BytesIO(), io.BytesIO()
    torch.save({"state_dict": Payload(str(marker))}, zipped)
    torch.save({"state_dict": Payload(str(marker))}, legacy, _use_new_zipfile_serialization=False)
    return {
        "zip": zipped.getvalue(),
        "legacy": legacy.getvalue(),
        "pickle0": pickle.dumps(Payload(str(marker)), protocol=0),
        "pickle5": pickle.dumps(Payload(str(marker)), protocol=5),
    }


def test_payloads_really_execute_when_unpickled(tmp_path):
    """Control: the hostile files are live, so the refusals below are what keeps the marker away."""
    for kind, data in _payloads(tmp_path / "control").items():
        (tmp_path / "control").unlink(missing_ok=True)
        if kind in ("zip", "legacy"):
            torch.load(io.BytesIO(data), weights_only=False)
        else:
            pickle.loads(data)
        assert (tmp_path / "control").exists(), kind


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth"])
@pytest.mark.parametrize("kind", ["zip", "legacy", "pickle0", "pickle5"])
@pytest.mark.parametrize("with_card", [True, False])
def test_pickle_payload_is_refused_at_any_path_and_never_runs(tmp_path, suffix, kind, with_card):
    marker = tmp_path / "pwned"
    evil = tmp_path / f"evil{suffix}"
    evil.write_bytes(_payloads(marker)[kind])
    if with_card:
        _card(evil)
    for verify in (True, False):
        with pytest.raises(CheckpointError) as caught:
            load_model(evil, verify=verify)
        message = str(caught.value)
        assert message.startswith(f"{evil}: ") and "\n" not in message, message
        if kind in ("zip", "legacy", "pickle5"):
            assert "pickle/zip" in message and "refused" in message, message
        else:  # protocol 0 has no magic byte: it simply is not a safetensors header
            assert "not a safetensors file" in message, message
    assert not marker.exists()


@pytest.fixture(scope="module")
def _saved_once(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    return save_checkpoint(apinet.APINet("resnet18", num_classes=3, output_stride=32).eval(),
                           tmp_path_factory.mktemp("real") / "real.safetensors", class_names=["a", "b", "c"])


@pytest.fixture()
def saved(_saved_once, tmp_path) -> Path:
    """A fresh copy of a valid checkpoint (weights + card) that the test may damage."""
    target = tmp_path / "real.safetensors"
    shutil.copyfile(_saved_once, target)
    shutil.copyfile(_saved_once.with_suffix(".json"), target.with_suffix(".json"))
    return target


def _header_end(path: Path) -> int:
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


@pytest.mark.parametrize("cut", ["0", "4", "8", "9", "mid_header", "header_end", "mid_data", "minus_1"])
@pytest.mark.parametrize("verify", [True, False])
def test_truncated_anywhere_is_a_checkpoint_error(saved, cut, verify):
    data = saved.read_bytes()
    end = _header_end(saved)
    offset = {"0": 0, "4": 4, "8": 8, "9": 9, "mid_header": end // 2, "header_end": end,
              "mid_data": (end + len(data)) // 2, "minus_1": len(data) - 1}[cut]
    saved.write_bytes(data[:offset])
    with pytest.raises(CheckpointError) as caught:
        load_model(saved, verify=verify)
    message = str(caught.value)
    assert message.startswith(f"{saved}: ") and "\n" not in message
    if verify and offset >= 9 and offset > end:
        assert "SHA-256" in message  # the header is intact, so the hash is what catches it
    elif offset < end:
        assert "truncated" in message or "bad header" in message, message


def _swap_weights(target: Path, model: torch.nn.Module, tmp_path: Path) -> None:
    """Put ``model``'s weights under ``target`` and fix the card's hash: only the shapes can tell."""
    other = save_checkpoint(model, tmp_path / "other" / "w.safetensors")
    shutil.copyfile(other, target)
    card = json.loads(target.with_suffix(".json").read_text())
    card["weights_sha256"] = json.loads(other.with_suffix(".json").read_text())["weights_sha256"]
    target.with_suffix(".json").write_text(json.dumps(card))


def test_weights_of_another_class_count_under_a_valid_hash(saved, tmp_path):
    _swap_weights(saved, apinet.APINet("resnet18", num_classes=7, output_stride=32), tmp_path)
    expected = r"3-class model in the card: .*fc.weight: file \(7, 512\) vs model \(3, 512\)"
    with pytest.raises(CheckpointError, match=expected):
        load_model(saved)


def test_weights_of_another_architecture_under_a_valid_hash(saved, tmp_path):
    _swap_weights(saved, apinet.Baseline("resnet18", num_classes=3, output_stride=32), tmp_path)
    expected = r"apinet / resnet18 / 3-class .*missing tensor\(s\), e.g. \['mutual"
    with pytest.raises(CheckpointError, match=expected):
        load_model(saved)


def test_card_naming_an_unknown_backbone(saved):
    card = json.loads(saved.with_suffix(".json").read_text())
    card["config"]["backbone"] = "resnet9000"
    saved.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="describes no buildable model"):
        load_model(saved)


# --- the command line ------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_evaluate_refuses_a_pickle_safetensors_in_a_fresh_process(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(_payloads(marker)["zip"])
    _card(evil)
    env = {k: v for k, v in os.environ.items() if k != "APINET_DEBUG"}
    env["PYTHONPATH"] = str(ROOT)
    argv = [sys.executable, "-m", "apinet", "evaluate", "--checkpoint", str(evil), "--data", "synthbirds"]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {evil}: this is a pickle/zip"), proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_cli_explain_and_evaluate_refuse_pickles_at_pt_paths(saved, tmp_path, suffix, capsys, monkeypatch):
    monkeypatch.delenv("APINET_DEBUG", raising=False)
    marker = tmp_path / "pwned"
    evil = tmp_path / f"evil{suffix}"
    evil.write_bytes(_payloads(marker)["legacy"])
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    for argv in (["evaluate", "--checkpoint", str(evil), "--data", "synthbirds"],
                 ["explain", str(image), str(image), "--checkpoint", str(evil), "--baseline", "none",
                  "--out", str(tmp_path / "x.png")],
                 ["explain", str(image), str(image), "--checkpoint", str(saved), "--baseline", str(evil),
                  "--out", str(tmp_path / "x.png")]):
        assert cli_main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {evil}: "), lines
        assert "pickle/zip" in lines[0]
    assert not marker.exists()
