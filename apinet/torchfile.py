"""Reading weight files made elsewhere without running anything in them.

:func:`read_torch_file` loads a ``torch.save`` file (zip or legacy pickle) with
``torch.load(weights_only=True)`` only, or a safetensors file with safetensors: a pickle that would run
code is refused and reported in one line, never executed; a truncated or corrupt file is reported as
that. :func:`read_class_names` reads a class-name list. Every problem is an :class:`ImportProblem`
whose message is one line naming the file (:mod:`apinet.importers` builds on these).
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["ImportProblem", "read_class_names", "read_torch_file"]


class ImportProblem(ValueError):
    """A file cannot be imported; the message is one line naming the file and the problem."""


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _numpy_scalar_globals() -> list[Any]:
    """NumPy scalars and dtypes (e.g. a ``best_prec1`` saved as ``np.float64``): data, not code.

    ``weights_only`` loading refuses them by default; they are allowed here, arrays and everything
    else are not.
    """
    import numpy as np

    return [np._core.multiarray.scalar, np.dtype, *(getattr(np.dtypes, n) for n in np.dtypes.__all__)]


def read_torch_file(path: str | Path) -> Any:
    """Load ``path`` (``torch.save`` zip or legacy pickle, or safetensors) without running code.

    A pickle that references anything but tensors and plain containers is refused by
    ``weights_only=True`` and reported as such; a truncated or corrupt file is reported as that.
    """
    path = Path(path)
    if not path.is_file():
        raise ImportProblem(f"{path}: file not found")
    size = path.stat().st_size
    if size == 0:
        raise ImportProblem(f"{path}: empty file")
    with open(path, "rb") as fh:
        head = fh.read(9)
    if path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{" and head[:1] not in (b"P", b"\x80")):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ImportProblem(f"{path}: unreadable safetensors file ({_first_line(exc)})") from None
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError):
            raise ImportProblem(f"{path}: truncated or corrupt torch.save file (the zip archive is incomplete)") from None
        if bad is not None:
            raise ImportProblem(f"{path}: corrupt torch.save file (member {bad} fails its checksum)")
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_numpy_scalar_globals()):
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the result below says enough
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure of the unpickler is bad input here
        text = str(exc)
        if "Weights only load failed" in text:
            what = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"Unsupported global:? ([\w.]+)", text)
            operand = re.search(r"Unsupported operand (\d+)", text)
            if what:
                detail = f"it references {what.group(1)}, which is code, not a tensor or plain container"
            elif operand:
                detail = f"it uses pickle instruction {operand.group(1)}, which weights-only loading does not allow"
            else:
                detail = "it needs more than tensors and plain containers"
            raise ImportProblem(
                f"{path}: refused: {detail}; nothing in it was executed (only weights_only loading is allowed)"
            ) from None
        raise ImportProblem(
            f"{path}: truncated, corrupt or not a PyTorch checkpoint ({type(exc).__name__}: {_first_line(exc)})"
        ) from None


def _tensor_dict(path: Path, obj: Any, *, where: str) -> dict[str, Tensor]:
    if not isinstance(obj, Mapping):
        raise ImportProblem(f"{path}: {where} is a {type(obj).__name__}, not a state dict")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ImportProblem(f"{path}: {where} holds entries that are not tensors, e.g. {bad[:3]}")
    return dict(obj)


def _strip_prefix(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a text file: one per line, or CUB's ``classes.txt`` (``1 001.Black_footed_Albatross``).

    Blank lines are ignored. A file whose every line is ``<index> <name>`` with indices 1..N (or
    0..N-1) in order is read as an indexed list and the names keep CUB's spelling (the dataset
    loader's class names); otherwise every line is one name.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImportProblem(f"{path}: file not found") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise ImportProblem(f"{path}: not a readable UTF-8 text file ({_first_line(exc)})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ImportProblem(f"{path}: no class names (the file is empty)")
    indexed = [re.match(r"^(\d+)\s+(\S.*)$", line) for line in lines]
    if all(indexed):
        numbers = [int(m.group(1)) for m in indexed]  # type: ignore[union-attr]
        start = numbers[0]
        if start in (0, 1) and numbers == list(range(start, start + len(lines))):
            lines = [m.group(2).strip() for m in indexed]  # type: ignore[union-attr]
    dupes = sorted({n for n in lines if lines.count(n) > 1})
    if dupes:
        raise ImportProblem(f"{path}: duplicate class names {dupes[:3]}")
    return lines
