"""Checkpoints: weights in safetensors plus a JSON model card beside them.

``save_checkpoint(model, "runs/x/best.safetensors", **card)`` writes ``best.safetensors`` and
``best.json``; both are written to a temporary file and renamed, so a crash never leaves a
half-written checkpoint under the final name.  The card records the architecture (enough to rebuild
the model), class names, preprocessing, training recipe, metrics, library versions and the SHA-256
of the weights file.  :func:`load_model` verifies the hash and that every tensor matches the
architecture the card describes before loading; nothing is ever unpickled.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import struct
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._io import atomic_write, file_sha256
from .model import build_model

__all__ = ["CARD_FORMAT", "EXTRA_PREFIX", "CheckpointError", "card_path", "load_card", "load_model", "save_checkpoint"]

CARD_FORMAT = "apinet-explorer/1"
_MAX_HEADER = 100 * 1024 * 1024
#: Tensors stored beside the model's own (e.g. ``reference.bank``, see :mod:`apinet.ood`): covered by
#: the card's hash, ignored when the model is built.
EXTRA_PREFIX = "reference."
#: Most classes a model card may declare: far above any fine-grained benchmark (CUB 200, iNaturalist
#: 10,000), and small enough that one default name per class stays cheap on every page load.
MAX_CLASSES = 100_000


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, untrusted or does not match its model card."""


def card_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def _weights_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix(".safetensors") if path.suffix == ".json" else path



def _versions() -> dict[str, str]:
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__}


def save_checkpoint(model: nn.Module, path: str | Path, *, dtype: torch.dtype | None = None,
                    extra_tensors: dict[str, torch.Tensor] | None = None, **card: Any) -> Path:
    """Write ``model``'s weights (optionally cast to ``dtype``, e.g. float16) and its model card.

    Keyword arguments go into the card as they are (class_names, preprocess, recipe, metrics, ...);
    they must be JSON-serialisable. ``extra_tensors`` (keys starting with ``reference.``) are stored in
    the same file. Returns the path of the weights file.
    """
    from safetensors.torch import save_file

    weights = _weights_path(path)
    if weights.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {weights.name}")
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[key] = tensor
    for key, tensor in (extra_tensors or {}).items():
        if not key.startswith(EXTRA_PREFIX):
            raise ValueError(f"extra tensor names must start with {EXTRA_PREFIX!r}, got {key!r}")
        tensor = tensor.detach().to("cpu").contiguous()
        state[key] = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
    config = model.config
    atomic_write(weights, lambda tmp: save_file(state, str(tmp), metadata={"format": CARD_FORMAT}))
    full_card = {
        "format": CARD_FORMAT,
        "architecture": config["architecture"],
        "backbone": config["backbone"],
        "num_classes": config["num_classes"],
        "config": config,
        **card,
        "weights_file": weights.name,
        "weights_sha256": file_sha256(weights),
        "weights_dtype": str(dtype or "as trained").replace("torch.", ""),
        "versions": {**_versions(), **card.get("versions", {})},
        "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    names = full_card.get("class_names")
    if names is not None and len(names) != config["num_classes"]:
        raise ValueError(f"{len(names)} class names for {config['num_classes']} classes")
    text = json.dumps(full_card, indent=2, sort_keys=False)
    atomic_write(card_path(weights), lambda tmp: tmp.write_text(text + "\n"))
    return weights


def _check_safetensors_header(path: Path) -> None:
    """Refuse anything that is not a safetensors file before any parser touches it."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
    # A safetensors file opens with its header's length (8 bytes, little-endian) and the header's "{".
    # Test that first: the length's low byte is 0x80 (pickle's magic byte) for one header size in 256.
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= min(_MAX_HEADER, size - 8):
        return
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise CheckpointError(
            f"{path}: this is a pickle/zip (torch.save) file; such files can run code when loaded "
            "and are refused. Convert trusted weights with apinet.checkpoint tools or save them as safetensors."
        )
    if len(head) < 9:
        raise CheckpointError(f"{path}: truncated file ({size} bytes), not a safetensors checkpoint")
    (header_len,) = struct.unpack("<Q", head[:8])
    if head[8:9] != b"{" or header_len > min(_MAX_HEADER, size - 8):
        raise CheckpointError(f"{path}: not a safetensors file (bad header) or truncated")


def load_card(path: str | Path) -> dict[str, Any]:
    """Read and validate the JSON model card of a checkpoint (``.safetensors`` or ``.json`` path)."""
    cpath = card_path(_weights_path(path))
    if not cpath.is_file():
        raise CheckpointError(f"{cpath}: model card not found (every checkpoint needs its .json card beside it)")
    try:
        card = json.loads(cpath.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cpath}: model card is not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"{cpath}: model card is a JSON {type(card).__name__}, not an object")
    if card.get("format") != CARD_FORMAT:
        raise CheckpointError(f"{cpath}: not an API-Net Explorer model card (format {card.get('format')!r})")
    for key in ("config", "weights_sha256"):
        if key not in card:
            raise CheckpointError(f"{cpath}: model card lacks {key!r}")
    if not isinstance(card["config"], dict):
        raise CheckpointError(f"{cpath}: model card's 'config' is not an object")
    if not isinstance(card["weights_sha256"], str):
        raise CheckpointError(f"{cpath}: model card's 'weights_sha256' is not a string")
    for where, holder in (("num_classes", card), ("config.num_classes", card["config"])):
        value = holder.get("num_classes")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CLASSES:
            raise CheckpointError(f"{cpath}: model card's {where} must be an integer from 1 to {MAX_CLASSES}, "
                                  f"got {str(value)[:40]}")
    names = card.get("class_names")
    if names is not None:
        if not isinstance(names, list) or len(names) > MAX_CLASSES:
            raise CheckpointError(f"{cpath}: model card's 'class_names' must be a list of at most {MAX_CLASSES} names")
        if not all(isinstance(n, (str, int, float)) and not isinstance(n, bool) for n in names):
            raise CheckpointError(f"{cpath}: model card's 'class_names' must hold names (text or numbers)")
        card["class_names"] = [str(n) for n in names]  # numbers (e.g. 1..200) become their text
    return card


def load_model(
    path: str | Path, *, map_location: str | torch.device = "cpu", verify: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """Load ``(model, card)`` in eval mode, float32, on ``map_location``.

    Raises :class:`CheckpointError` when the file is missing, not safetensors (pickles are refused),
    truncated, does not match the hash recorded in its card, or holds tensors that do not fit the
    architecture the card describes.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = _weights_path(path)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: checkpoint not found")
    _check_safetensors_header(weights)
    card = load_card(weights)
    if verify:
        actual = file_sha256(weights)
        if actual != card["weights_sha256"]:
            raise CheckpointError(
                f"{weights}: SHA-256 {actual[:12]}... does not match the model card's "
                f"{card['weights_sha256'][:12]}...: the weights were changed or belong to another card"
            )
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc})") from None
    model = _unfilled_model(card["config"])
    if model is None:
        try:
            model = build_model(card["config"])
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{card_path(weights)}: model card describes no buildable model ({exc})") from None
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(EXTRA_PREFIX)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} shape mismatch(es), e.g. {'; '.join(wrong[:3])}")
        if missing:
            parts.append(f"{len(missing)} missing tensor(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[:3]}")
        raise CheckpointError(
            f"{weights}: weights do not match the {card['config'].get('architecture')} / "
            f"{card['config'].get('backbone')} / {card['config'].get('num_classes')}-class model in the card: "
            + "; ".join(parts)
        )
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, assign=True)  # the file's tensors become the model's (no copy)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # a tensor the file does not hold
        model = build_model(card["config"])
        model.load_state_dict(state)
    model.eval()
    return model.to(map_location), card


def _unfilled_model(config: dict[str, Any]) -> nn.Module | None:
    """The card's model with its tensors on the meta device, or ``None`` when it cannot be built so.

    A checkpoint sets every parameter and buffer, so the random initialisation a normal build does
    (a third of a second for a ResNet-18, seconds for a ResNet-101) is wasted work; on the meta device
    it costs nothing. :func:`load_model` assigns the file's tensors to the model, and builds it the
    normal way when a tensor is left on the meta device (one the state dict does not hold).
    """
    try:
        with torch.device("meta"):
            return build_model(config)
    except Exception:  # noqa: BLE001 - the normal build reports what is wrong with the card
        return None
