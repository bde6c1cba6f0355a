"""File writes that never leave a half-written file under the final name."""

from __future__ import annotations

import hashlib

import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np

__all__ = [
    "OutputPathError",
    "atomic_write",
    "checkpoint_files",
    "dataset_root",
    "refuse_overwriting_inputs",
    "remove_stale_temporaries",
]

PathLike = Union[str, os.PathLike]


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, flush it to disk, then rename it.

    A crash or kill at any moment leaves either the previous complete file or the new one, never a
    partial one (``os.replace`` is atomic within a file system); the temporary file is removed on error.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are ordinary shared files
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | os.PathLike, names: tuple[str, ...]) -> list[Path]:
    """Delete the temporary files :func:`atomic_write` left beside ``names`` when a process was killed
    mid-write (SIGKILL, OOM, preemption skip its cleanup); returns what was removed.

    Only call this when no other process writes into ``folder`` (e.g. when a run is resumed).
    """
    folder = Path(folder)
    removed = []
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into Python numbers and lists (dict keys to str)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


# --------------------------------------------------------------------------------------------------
# Output paths that would destroy an input
# --------------------------------------------------------------------------------------------------


class OutputPathError(ValueError):
    """An output path that names an input (or a folder where a file is meant): one line, for the CLI."""


def checkpoint_files(path: PathLike | None) -> list[Path]:
    """A checkpoint's files: the weights (``.safetensors``) and its model card (``.json``), whichever of
    the two ``path`` names. Empty for ``None`` or ``'none'`` (an optional checkpoint left out)."""
    if path is None or str(path).lower() == "none":
        return []
    path = Path(path)
    return [path.with_suffix(".safetensors"), path.with_suffix(".json")] if path.suffix in (".safetensors", ".json") \
        else [path, path.with_suffix(".json")]


def dataset_root(spec: str | None) -> Path | None:
    """The folder a dataset spec reads from (``cub:PATH`` -> ``PATH``); ``None`` for SynthBirds."""
    if not spec:
        return None
    kind, _, argument = str(spec).partition(":")
    if kind.strip().lower() in ("cub", "folder", "aircraft", "cars") and argument.strip():
        return Path(argument.strip())
    return None


def _same(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts, case-insensitive file systems
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return real == base or base in real.parents


def refuse_overwriting_inputs(
    outputs: Mapping[str, PathLike | Iterable[PathLike] | None],
    inputs: Mapping[str, PathLike | Iterable[PathLike] | None],
    *,
    folders: Iterable[str] = (),
) -> None:
    """Raise :class:`OutputPathError` (one line) before any work when an output would destroy an input.

    ``outputs`` and ``inputs`` map what the user typed (e.g. ``"--out"``, ``"--checkpoint"``) to one
    path or several (``None`` entries are skipped). Refused, with the flag names and paths in the
    message:

    * an output file that resolves (symlinks, ``..``, hard links) to an input file, e.g. ``explain
      a.png b.png --out a.png`` or ``--json`` onto a checkpoint's card (list both files of a
      checkpoint with :func:`checkpoint_files`);
    * an output inside (or equal to) an input that is an existing folder (a dataset root, see
      :func:`dataset_root`): a run written into an image-folder dataset would become a class;
    * two outputs naming the same file;
    * an existing folder where a file output is meant, or an existing file where one of ``folders``
      (output flags that name a folder, e.g. a run directory) is meant.

    Call it from every command (and from library code that writes user-named files) before loading
    models or data, so nothing is computed for an output that cannot be written.
    """
    folder_flags = set(folders)

    def expand(mapping):
        for flag, value in mapping.items():
            if value is None:
                continue
            values = [value] if isinstance(value, (str, os.PathLike)) else list(value)
            for item in values:
                if item is not None:
                    yield flag, Path(item)

    outs, ins = list(expand(outputs)), list(expand(inputs))
    for flag, out in outs:
        if flag in folder_flags:
            if out.exists() and not out.is_dir():
                raise OutputPathError(f"{flag} {out}: is a file, not a folder")
        elif out.is_dir():
            raise OutputPathError(f"{flag} {out}: is a folder; give a file name")
        for in_flag, source in ins:
            if source.is_dir():
                if _inside(out, source):
                    raise OutputPathError(f"{flag} {out} is inside the input folder {source} ({in_flag}); "
                                          f"write outputs somewhere else")
            elif _same(out, source):
                raise OutputPathError(f"{flag} {out} is the input file {source} ({in_flag}); refusing to "
                                      f"overwrite an input, choose another output name")
    for i, (flag, out) in enumerate(outs):
        for other_flag, other in outs[i + 1:]:
            if _same(out, other):
                raise OutputPathError(f"{flag} and {other_flag} name the same file {out}")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
