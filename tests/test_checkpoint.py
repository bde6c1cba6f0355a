"""safetensors + model card: round trip, hash checks, mismatches, pickles refused."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from apinet import APINet, Baseline, CheckpointError, load_card, load_model, save_checkpoint


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(1)
    model = APINet("resnet18", num_classes=4, output_stride=16).eval()
    path = save_checkpoint(
        model,
        tmp_path / "best.safetensors",
        class_names=["a", "b", "c", "d"],
        preprocess={"input_size": 64},
        metrics={"top1": 0.5},
    )
    return model, path


def test_round_trip_gives_identical_outputs(saved):
    model, path = saved
    loaded, card = load_model(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
        a, b = model.forward_pair(x, x.flip(0)), loaded.forward_pair(x, x.flip(0))
    assert torch.equal(a.gate1, b.gate1)
    assert card["class_names"] == ["a", "b", "c", "d"] and card["metrics"] == {"top1": 0.5}
    assert card["architecture"] == "apinet" and card["backbone"] == "resnet18"
    assert set(card["versions"]) >= {"torch", "torchvision", "python"}
    assert len(card["weights_sha256"]) == 64


def test_loading_builds_no_random_weights_and_falls_back_for_tensors_the_file_lacks(saved, monkeypatch):
    """The model is built on the meta device and takes the file's tensors (no random initialisation);
    a tensor the state dict does not hold (a non-persistent buffer) makes it build the normal way."""
    import apinet.checkpoint as ckpt

    model, path = saved
    inits = []
    monkeypatch.setattr(torch.nn.init, "kaiming_normal_", lambda t, *a, **k: inits.append(t.is_meta) or t)
    loaded, _ = load_model(path)
    assert inits and all(inits)  # every initialisation ran on the meta device (no work)
    assert not any(t.is_meta for t in (*loaded.parameters(), *loaded.buffers()))
    assert all(p.requires_grad for p in loaded.parameters())

    built = ckpt.build_model

    def with_a_computed_buffer(config):
        net = built(config)
        net.register_buffer("scale", torch.full((1,), 2.0), persistent=False)
        return net

    monkeypatch.setattr(ckpt, "build_model", with_a_computed_buffer)
    loaded, _ = load_model(path)
    assert loaded.scale.item() == 2.0 and not loaded.scale.is_meta
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_float16_storage_halves_size_and_stays_close(saved, tmp_path):
    model, path = saved
    half = save_checkpoint(model, tmp_path / "half.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    loaded, card = load_model(half)
    assert card["weights_dtype"] == "float16"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=5e-2)


def test_tampered_weights_fail_the_hash(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 .* does not match"):
        load_model(path)


def test_card_describing_another_class_count_is_refused(saved):
    _, path = saved
    card_file = path.with_suffix(".json")
    card = json.loads(card_file.read_text())
    card["config"]["num_classes"] = 10
    card_file.write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"shape mismatch.*fc.weight: file \(4, 512\) vs model \(10, 512\)"):
        load_model(path)


def test_card_describing_another_architecture_is_refused(saved):
    _, path = saved
    card_file = path.with_suffix(".json")
    card = json.loads(card_file.read_text())
    card["config"] = Baseline("resnet18", 4).config
    card_file.write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"unexpected tensor\(s\), e.g. \['mutual"):
        load_model(path)


def test_truncated_file_is_refused(saved):
    _, path = saved
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated|bad header"):
        load_model(path, verify=False)


def test_missing_card_and_missing_file(saved, tmp_path):
    _, path = saved
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model(tmp_path / "nope.safetensors")
    path.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="model card not found"):
        load_model(path)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_with_payload_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.safetensors"
    bad.write_bytes(pickle.dumps(_Payload(str(marker))))
    (tmp_path / "evil.json").write_text(json.dumps({"format": "apinet-explorer/1", "config": {}, "weights_sha256": "0"}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(bad)
    torch.save({"x": _Payload(str(marker))}, tmp_path / "zip.safetensors")
    with pytest.raises(CheckpointError, match="pickle/zip"):
        load_model(tmp_path / "zip.safetensors")
    assert not marker.exists()


def test_card_can_be_read_alone(saved):
    _, path = saved
    assert load_card(path.with_suffix(".json"))["num_classes"] == 4


def test_a_header_length_whose_low_byte_is_pickles_magic_byte_loads(tmp_path):
    """One safetensors header size in 256 starts the file with 0x80, pickle's magic byte: it is a
    safetensors file all the same (the interaction stage's demo checkpoint was one)."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = APINet("resnet18", num_classes=3).eval()
    path = tmp_path / "m.safetensors"
    # The header grows by one byte per padding character, so one save tells the padding that makes its
    # length 0x..80 (a multiple of 8: no alignment spaces); the loop below tries that one first.
    save_file(model.state_dict(), str(path), metadata={"pad": ""})
    head = path.read_bytes()[:100_000]
    size = len(head[8:8 + int.from_bytes(head[:8], "little")].rstrip(b" "))
    for pad in [(0x80 - size) % 256, *range(0, 512)]:
        save_file(model.state_dict(), str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    assert path.read_bytes()[:1] == b"\x80" and path.read_bytes()[8:9] == b"{"
    from apinet._io import file_sha256

    card = {"format": "apinet-explorer/1", "config": model.config, "weights_sha256": file_sha256(path)}
    path.with_suffix(".json").write_text(json.dumps(card))
    loaded, _ = load_model(path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
