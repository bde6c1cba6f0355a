"""A run folder's files: the resumable training state, the lock against a second writer, and the
checks made before any work.

``last.state.pt`` holds tensors and plain Python values only and is read with
``torch.load(weights_only=True)``; every file is written to a temporary name and renamed, so a kill
at any moment leaves the previous complete file in place.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write
from .config import TrainConfig

__all__ = ["LOCK_FILE", "RUN_FILES", "STATE_FILE", "RunLock", "atomic_torch_save", "check_run_folder", "load_state",
           "resolve_resume", "rng_state", "set_rng_state"]

STATE_FILE = "last.state.pt"


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]), "python_version": random.getstate()[0],
             "python_gauss": random.getstate()[2]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_resume(path: str | Path) -> Path:
    """A run directory, or any checkpoint file inside one -> its ``last.state.pt``."""
    path = Path(path)
    state = path / STATE_FILE if path.is_dir() else path.parent / STATE_FILE
    if not state.is_file():
        raise FileNotFoundError(f"--resume {path}: no training state ({state.name}) found there")
    return state


_STATE_KEYS = ("model", "optimizer", "scheduler", "samplers", "rng", "step", "epoch", "best")


def load_state(path: Path) -> dict[str, Any]:
    """A run's training state (never unpickled: ``weights_only``); a damaged file is one-line ``ValueError``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, foreign pickle, wrong format: all "damaged"
        # torch's unpickling message suggests weights_only=False, which would run code from the file
        detail = "" if "weights_only" in str(error) else ": " + " ".join(str(error).split())[:160]
        raise ValueError(f"--resume {path}: damaged training state ({type(error).__name__}{detail}); resume "
                         f"from an intact copy or start a new run") from None
    missing = [key for key in _STATE_KEYS if key not in state] if isinstance(state, dict) else list(_STATE_KEYS)
    if missing:
        raise ValueError(f"--resume {path}: not a training state (missing {', '.join(missing)})")
    return state


#: Files whose presence marks a folder as a training run (written by :func:`train`).
RUN_FILES = (STATE_FILE, "last.safetensors", "last.json", "best.safetensors", "best.json", "config.json",
             "log.jsonl")
LOCK_FILE = ".train.lock"


def check_run_folder(config: TrainConfig, out: Path, resume_state_path: Path | None) -> None:
    """Refuse, before any work, an ``--out`` that is a file, holds another finished or running
    training run (without ``--resume`` of that run), or would overwrite an input."""
    from .._io import checkpoint_files, dataset_root, refuse_overwriting_inputs

    refuse_overwriting_inputs({"--out": out}, {}, folders=["--out"])
    resuming_here = resume_state_path is not None and os.path.realpath(resume_state_path.parent) == os.path.realpath(out)
    if out.is_dir() and not resuming_here:
        held = [name for name in RUN_FILES if (out / name).exists()]
        if held:
            raise ValueError(f"--out {out} already holds a training run ({held[0]}); continue it with --resume {out} "
                             f"or choose a new folder")
    refuse_overwriting_inputs(
        {"--out": [out / name for name in RUN_FILES]},
        {"--weights": config.weights, "--init-trunk": checkpoint_files(config.init_trunk),
         "--data": dataset_root(config.data)},
    )


class RunLock:
    """An exclusive ``fcntl`` lock on ``<run>/.train.lock`` while a process trains into the folder, so a
    second ``train`` on the same ``--out`` stops with one line instead of interleaving its files. The
    operating system drops the lock when the process ends, however it ends."""

    def __init__(self, folder: Path):
        self.folder, self.fh, self.created = folder, None, False

    def __enter__(self) -> "RunLock":
        import fcntl

        self.created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.folder / LOCK_FILE, "a+")
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            self.fh = None
            raise ValueError(f"--out {self.folder}: another training process is writing to this run folder; "
                             f"wait for it to finish or choose another folder") from None
        return self

    def __exit__(self, kind, value, traceback) -> None:
        import fcntl

        if self.fh is None:
            return
        fcntl.flock(self.fh.fileno(), fcntl.LOCK_UN)
        self.fh.close()
        # a run that failed before writing anything leaves no empty folder behind
        if kind is not None and self.created and [p.name for p in self.folder.iterdir()] == [LOCK_FILE]:
            (self.folder / LOCK_FILE).unlink(missing_ok=True)
            self.folder.rmdir()
