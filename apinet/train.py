"""``python -m apinet train``: train API-Net or the baseline (AMP, channels_last, DDP via torchrun).

A run directory holds ``log.jsonl`` (one JSON record per logged step and per validation),
``best.safetensors`` / ``last.safetensors`` with their JSON model cards, and ``last.state.pt``: the
full training state (model, optimizer, scheduler, sampler, RNG, step, best metric) for ``--resume``.
The state file holds tensors and plain Python values only and is read with
``torch.load(weights_only=True)``; every file is written to a temporary name and renamed, so a kill
at any moment leaves the previous complete file in place.

Resuming is exact: the sampler restarts inside its epoch, and each image's random augmentation is
seeded by (seed, epoch, index), so N steps straight and N/2 + resume + N/2 give identical weights.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._io import atomic_write, remove_stale_temporaries
from .backbones import BACKBONES
from .checkpoint import save_checkpoint
from .losses import apinet_loss
from .model import APINet, Baseline
from .pairs import BalancedBatchSampler

__all__ = ["PRESETS", "TrainStep", "build_config", "evaluate_loader", "export_checkpoint", "train"]

STATE_FILE = "last.state.pt"

#: Recipe defaults; explicit command-line flags override them.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "backbone": "resnet101",
        "output_stride": 32,
        "data": "cub:data/CUB_200_2011",
        "image_size": None,
        "per_class": None,
        "val_per_class": None,
        "input_size": 448,
        "resize": 512,
        "test_resize": 512,
        "resize_mode": "square",  # the official train.py: Resize((512, 512)) before the 448 crop
        "n_classes": 30,
        "n_samples": 4,
        "optimizer": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "epochs": 100,
        "warmup_epochs": 0.0,
        "freeze_epochs": 8,
        "margin": 0.05,
        "rank_weight": 1.0,
        "pretrained": True,
    },
    # The embedded demo, the paper's recipe scaled to a 2-core CPU: EfficientNet-Lite0 with ImageNet
    # weights (they install offline), dilated to output stride 16 for 14 x 14 maps at 224 px, the trunk
    # frozen for the first epoch and then fine-tuned, SGD with the paper's momentum and weight decay on
    # a cosine schedule. SynthBirds is procedural, so the training split is as large as the budget
    # allows: 500 images per class (10,000). Batches of 8 classes x 4 images keep the paper's 4 images
    # per class, so intra pairs are actually mined.
    "demo": {
        "backbone": "efficientnet_lite0",
        "output_stride": 16,
        "data": "synthbirds",
        "image_size": 224,
        "per_class": 500,
        "val_per_class": 20,
        "input_size": 224,
        "resize": 240,
        "test_resize": 240,
        "resize_mode": "shorter",  # the renders are square: the same as "square"
        "n_classes": 8,
        "n_samples": 4,
        "optimizer": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "epochs": 2,
        "warmup_epochs": 0.0,
        "freeze_epochs": 1,
        "margin": 0.05,
        "rank_weight": 1.0,
        "pretrained": True,
        "channels_last": True,  # 3x faster depthwise convolutions on CPU too (12 vs 4 img/s training)
    },
    # The first demo: ResNet-18 (stride dropped to 16: 8x8 maps at 128 px) trained from scratch on 2,000
    # SynthBirds images; ~25 img/s with 2 threads, ~11 minutes per model.
    "demo-scratch": {
        "backbone": "resnet18",
        "output_stride": 16,
        "data": "synthbirds",
        "image_size": 128,
        "per_class": 100,
        "val_per_class": 10,
        "input_size": 128,
        "resize": 128,
        "test_resize": 128,
        "resize_mode": "shorter",
        "n_classes": 8,
        "n_samples": 4,
        "optimizer": "adamw",
        "lr": 2e-3,
        "momentum": 0.9,
        "weight_decay": 0.05,
        "epochs": 8,
        "warmup_epochs": 0.2,
        "freeze_epochs": 0,
        "margin": 0.05,
        "rank_weight": 1.0,
        "pretrained": False,
    },
}

_FALLBACK = {**PRESETS["demo-scratch"], "data": "synthbirds"}


_GENERIC = {
    "model": "apinet",
    "val_split": None,
    "val_per_class": None,
    "max_steps": None,
    "ltpa": None,
    "ltpa_weight": 1.0,
    "ltpa_normalize": "softmax",
    "ltpa_aggregate": "concat",
    "a2": None,
    "weights": None,
    "init_trunk": None,
    "seed": 0,
    "out": None,
    "resume": None,
    "save_every": 200,
    "log_every": 10,
    "device": "auto",
    "amp": "auto",
    "channels_last": None,
    "workers": None,
    "threads": None,
    "no_progress": False,
}


def build_config(overrides: dict[str, Any]) -> dict[str, Any]:
    """Recipe = generic defaults < preset < explicit flags (``overrides`` holds only flags given)."""
    preset = overrides.get("preset")
    base = PRESETS[preset] if preset else _FALLBACK
    config = {**_GENERIC, **base, "preset": preset, **{k: v for k, v in overrides.items() if k != "func"}}
    if config["weights"]:
        config["pretrained"] = True
    return config


def resume_config(flags: dict[str, Any]) -> dict[str, Any]:
    """With ``--resume``, the resumed run's recipe, overridden only by the flags given now."""
    flags = {k: v for k, v in flags.items() if k != "func"}
    saved = resolve_resume(flags["resume"]).parent / "config.json"
    base = build_config({})
    if saved.is_file():
        try:
            base = json.loads(saved.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"--resume: cannot read the run's recipe {saved} ({error})") from None
        if not isinstance(base, dict):
            raise ValueError(f"--resume: the run's recipe {saved} is not a JSON object")
    base.pop("command", None)
    return {**base, "max_steps": None, **flags}


# --------------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------------


def _parse_stages(text: str | None, flag: str) -> tuple[list[str], str | None]:
    if not text:
        return [], None
    stages, _, option = text.partition(":")
    names = [s.strip() for s in stages.split(",") if s.strip()]
    if not names:
        raise ValueError(f"{flag} needs stage names, e.g. layer3,layer4")
    return names, (option.strip() or None)


def _model_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"output_stride": config["output_stride"]}
    stages, compat = _parse_stages(config["ltpa"], "--ltpa")
    if stages:
        if compat not in (None, "pc", "dp"):
            raise ValueError(f"--ltpa compatibility must be pc or dp, got {compat!r}")
        kwargs["ltpa"] = {
            "stages": stages,
            "compatibility": compat or "pc",
            "normalize": config.get("ltpa_normalize", "softmax"),
            "aggregate": config.get("ltpa_aggregate", "concat"),
        }
    stages, extra = _parse_stages(config["a2"], "--a2")
    if extra:
        raise ValueError(f"--a2 takes stage names only, got ':{extra}'")
    if stages:
        kwargs["a2"] = {"stages": stages}
    return kwargs


#: The trunk's own layers (what pretrained weights or ``--init-trunk`` provide and ``--freeze-epochs``
#: freezes), as key prefixes under ``model.trunk``; inserted A^2 blocks (``inserts.``) are new layers.
TRUNK_PARTS = ("stem.", "stages.", "tail.")


def build_train_model(config: dict[str, Any], num_classes: int, *, init: bool = True) -> nn.Module:
    """The model of a recipe; ``init=False`` skips ``--init-trunk`` (a resumed run loads its own state)."""
    cls = APINet if config["model"] == "apinet" else Baseline
    model = cls(
        config["backbone"],
        num_classes,
        pretrained=bool(config["pretrained"]),
        weights_path=config["weights"],
        **_model_kwargs(config),
    )
    if init and config.get("init_trunk"):
        init_trunk_from(model, config["init_trunk"])
    return model


def init_trunk_from(model: nn.Module, checkpoint: str | Path) -> None:
    """Copy the trunk (stem, stages, tail) of a trained project checkpoint into ``model``.

    Two-stage fine-tuning: e.g. API-Net started from the baseline's trained trunk, the way the paper
    starts from ImageNet weights. The checkpoint is loaded with :func:`load_model` (hash-checked,
    never unpickled); a different backbone or output stride is a ``ValueError`` naming both.
    """
    from .checkpoint import load_model

    source, _ = load_model(checkpoint)
    mine, theirs = model.config, source.config
    for key in ("backbone", "output_stride", "dilated"):
        if mine.get(key) != theirs.get(key):
            raise ValueError(f"--init-trunk {checkpoint}: its {key} is {theirs.get(key)!r}, this recipe's is "
                             f"{mine.get(key)!r}")
    state = {k: v for k, v in source.trunk.state_dict().items() if k.startswith(TRUNK_PARTS)}
    missing, unexpected = model.trunk.load_state_dict(state, strict=False)
    missing = [k for k in missing if k.startswith(TRUNK_PARTS)]
    if missing or unexpected:  # cannot happen for equal backbone + stride; guards future trunk changes
        raise ValueError(f"--init-trunk {checkpoint}: trunk weights do not fit ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected)")


def _dataset_kwargs(spec: str, config: dict[str, Any], split: str) -> dict[str, Any]:
    if spec.strip().lower().split(":")[0] != "synthbirds":
        return {}
    kwargs: dict[str, Any] = {}
    if config.get("image_size"):
        kwargs["image_size"] = int(config["image_size"])
    if split == "train" and config.get("per_class"):
        kwargs["per_class"] = int(config["per_class"])
    if split != "train" and config.get("val_per_class"):
        kwargs["per_class"] = int(config["val_per_class"])
    return kwargs


def default_val_split(spec: str) -> str:
    return "val" if spec.strip().lower().split(":")[0] in ("synthbirds", "folder") else "test"


class SeededTransformDataset(torch.utils.data.Dataset):
    """Applies a random transform with the RNG seeded by (seed, epoch, index): reproducible
    augmentation whatever the worker count, and exactly resumable in the middle of an epoch."""

    def __init__(self, dataset, transform, seed: int):
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, int(seed), 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + int(index))
            return self.transform(image), label


@dataclass
class _Precision:
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def _resolve_device(config: dict[str, Any], local_rank: int = 0) -> _Precision:
    want = config["device"]
    if want == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    use_cuda = want == "cuda" or (want == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    amp = config["amp"]
    if amp == "auto":
        amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if use_cuda else "off"
    if amp == "fp16" and not use_cuda:
        raise ValueError("--amp fp16 needs CUDA (use bf16 or off on CPU)")
    dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    channels_last = config["channels_last"]
    if channels_last is None:
        channels_last = use_cuda
    return _Precision(device, dtype, bool(channels_last))


class TrainStep(nn.Module):
    """Model + objective as one module, so DistributedDataParallel sees every parameter used.

    ``forward(images, labels)`` returns a dict of scalar tensors: ``total``, ``ce``, ``rank``
    (API-Net), ``ltpa`` (when the model has an LTPA estimator), ``acc`` and ``ltpa_acc``.
    """

    def __init__(self, model: nn.Module, *, margin: float, rank_weight: float, ltpa_weight: float, gather=None):
        super().__init__()
        self.model = model
        self.margin, self.rank_weight, self.ltpa_weight, self.gather = margin, rank_weight, ltpa_weight, gather

    def forward(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        model = self.model
        if isinstance(model, APINet):
            out = model.forward_train(images, labels, gather=self.gather)
            p = out.pairs
            terms = apinet_loss(
                p.logits1_self, p.logits1_other, p.logits2_self, p.logits2_other, out.labels1, out.labels2,
                margin=self.margin, rank_weight=self.rank_weight,
            )
            result = {"total": terms.total, "ce": terms.ce, "rank": terms.rank}
            batch = out.labels.numel()
            # the intra pairs' "self" logits of each image stand for its own prediction
            result["acc"] = (p.logits1_self[:batch].argmax(1) == out.labels).float().mean()
        else:
            out = model.forward_train(images, labels)
            ce = F.cross_entropy(out.logits.float(), out.labels)
            result = {"total": ce, "ce": ce, "acc": (out.logits.argmax(1) == out.labels).float().mean()}
        if out.ltpa is not None:
            ltpa_ce = F.cross_entropy(out.ltpa.logits.float(), out.labels)
            result["total"] = result["total"] + self.ltpa_weight * ltpa_ce
            result["ltpa"] = ltpa_ce
            result["ltpa_acc"] = (out.ltpa.logits.argmax(1) == out.labels).float().mean()
        return result


def _lr_lambda(total_steps: int, warmup_steps: int, freeze_steps: int = 0):
    def cosine(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def trunk(step: int) -> float:
        return 0.0 if step < freeze_steps else cosine(step)

    return cosine, trunk


def trunk_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The pretrained trunk's parameters (frozen for --freeze-epochs); inserted A^2 blocks are new layers."""
    trunk_prefixes = tuple(f"trunk.{part}" for part in TRUNK_PARTS)
    return [p for n, p in model.named_parameters() if n.startswith(trunk_prefixes)]


def set_trunk_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (or release) the trunk as the official code does: its parameters stop requiring grad.

    A frozen parameter then has no ``.grad``, so SGD and AdamW skip it entirely: no step, no weight
    decay, and no momentum or moment estimates accumulate before it is unfrozen (a learning rate of 0
    alone would still build them up). BatchNorm statistics keep updating in train mode, as in the
    official code. No graph is recorded through a frozen trunk, so the frozen phase costs a forward.
    """
    for p in trunk_parameters(model):
        p.requires_grad_(not frozen)


def build_optimizer(model: nn.Module, config: dict[str, Any], steps_per_epoch: int):
    trunk_params = trunk_parameters(model)
    trunk_ids = {id(p) for p in trunk_params}
    head_params = [p for p in model.parameters() if id(p) not in trunk_ids]
    groups = [{"params": trunk_params}, {"params": head_params}]
    if config["optimizer"] == "sgd":
        opt = torch.optim.SGD(groups, lr=config["lr"], momentum=config["momentum"], weight_decay=config["weight_decay"])
    else:
        opt = torch.optim.AdamW(groups, lr=config["lr"], weight_decay=config["weight_decay"])
    # The schedule spans the whole recipe; --max-steps only stops early (so a smoke run follows
    # the same curve as the full run, and a resumed run the same as a straight one).
    total = int(config["epochs"]) * steps_per_epoch
    cosine, trunk = _lr_lambda(
        total, int(round(config["warmup_epochs"] * steps_per_epoch)), int(config["freeze_epochs"]) * steps_per_epoch
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, [trunk, cosine])
    return opt, sched


def total_steps(config: dict[str, Any], steps_per_epoch: int) -> int:
    total = int(config["epochs"]) * steps_per_epoch
    return total if config.get("max_steps") is None else min(total, int(config["max_steps"]))


# --------------------------------------------------------------------------------------------------
# State files
# --------------------------------------------------------------------------------------------------


def _atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]), "python_version": random.getstate()[0],
             "python_gauss": random.getstate()[2]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
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


def _check_run_folder(config: dict[str, Any], out: Path, resume_state_path: Path | None) -> None:
    """Refuse, before any work, an ``--out`` that is a file, holds another finished or running
    training run (without ``--resume`` of that run), or would overwrite an input."""
    from ._io import checkpoint_files, dataset_root, refuse_overwriting_inputs

    refuse_overwriting_inputs({"--out": out}, {}, folders=["--out"])
    resuming_here = resume_state_path is not None and os.path.realpath(resume_state_path.parent) == os.path.realpath(out)
    if out.is_dir() and not resuming_here:
        held = [name for name in RUN_FILES if (out / name).exists()]
        if held:
            raise ValueError(f"--out {out} already holds a training run ({held[0]}); continue it with --resume {out} "
                             f"or choose a new folder")
    refuse_overwriting_inputs(
        {"--out": [out / name for name in RUN_FILES]},
        {"--weights": config.get("weights"), "--init-trunk": checkpoint_files(config.get("init_trunk")),
         "--data": dataset_root(config.get("data"))},
    )


class _RunLock:
    """An exclusive ``fcntl`` lock on ``<run>/.train.lock`` while a process trains into the folder, so a
    second ``train`` on the same ``--out`` stops with one line instead of interleaving its files. The
    operating system drops the lock when the process ends, however it ends."""

    def __init__(self, folder: Path):
        self.folder, self.fh, self.created = folder, None, False

    def __enter__(self) -> "_RunLock":
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


def _machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_cores": os.cpu_count(), "device": device.type, "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_count"] = torch.cuda.device_count()
    return info


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_loader(model: nn.Module, loader, precision: _Precision | None = None, *,
                    return_pooled: bool = False) -> dict[str, Any]:
    """Predictions of the test path (and of the LTPA head when there is one) over a loader;
    ``return_pooled`` also keeps the pooled features ``[N, D]`` (float32, CPU) as ``"pooled"``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    preds, ltpa_preds, targets, pooled_all = [], [], [], []
    ctx = precision.autocast if precision is not None else nullcontext
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        if precision is not None and precision.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with ctx():
            stages = model.forward_stages(images)
            pooled = model.pool_features(next(reversed(stages.values())))
            logits = model.forward_head(pooled)
            if return_pooled:
                pooled_all.append(pooled.float().cpu())
            if getattr(model, "ltpa", None) is not None:
                ltpa_preds.append(model._ltpa(stages, pooled).logits.argmax(1).cpu())
        preds.append(logits.argmax(1).cpu())
        targets.append(torch.as_tensor(labels))
    model.train(was_training)
    result = {"pred": torch.cat(preds), "target": torch.cat(targets)}
    result["top1"] = float((result["pred"] == result["target"]).float().mean())
    if return_pooled:
        result["pooled"] = torch.cat(pooled_all)
    if ltpa_preds:
        result["ltpa_pred"] = torch.cat(ltpa_preds)
        result["ltpa_top1"] = float((result["ltpa_pred"] == result["target"]).float().mean())
    return result


def export_checkpoint(src: str | Path, dst: str | Path, *, dtype: torch.dtype | None = torch.float16,
                      metrics: dict[str, Any] | None = None, reference: Any = None) -> Path:
    """Copy a checkpoint (optionally cast, e.g. to float16) with its card, merging extra metrics;
    ``reference`` (an :class:`apinet.ood.FeatureReference`) is stored with it, replacing any it had."""
    from ._io import checkpoint_files, refuse_overwriting_inputs
    from .checkpoint import load_model
    from .ood import BANK_KEY, FeatureReference

    refuse_overwriting_inputs({"export": checkpoint_files(dst)}, {"checkpoint": checkpoint_files(src)})
    model, card = load_model(src)
    if reference is None:
        reference = FeatureReference.from_checkpoint(src, card)
    extra = {}
    card.pop("reference", None)
    if reference is not None:
        extra[BANK_KEY] = reference.bank
        card["reference"] = reference.card_entry()
    for key in ("format", "architecture", "backbone", "num_classes", "config", "weights_file", "weights_sha256",
                "weights_dtype", "saved_at"):
        card.pop(key, None)
    card["metrics"] = {**card.get("metrics", {}), **(metrics or {})}
    card["exported_from"] = str(src)
    return save_checkpoint(model, dst, dtype=dtype, extra_tensors=extra, **card)


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def _log(fh, record: dict[str, Any]) -> None:
    if fh is not None:
        fh.write(json.dumps(record) + "\n")
        fh.flush()


def _loader(dataset, batch_sampler=None, *, batch_size=64, workers=0, device=None, seed=0):
    kwargs = dict(num_workers=workers, pin_memory=device is not None and device.type == "cuda",
                  generator=torch.Generator().manual_seed(seed))  # leaves the global RNG alone
    if batch_sampler is not None:
        return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, **kwargs)


def train(config: dict[str, Any]) -> dict[str, Any]:
    """Run the recipe ``config`` (see :func:`build_config`); returns a summary dict.

    Before any work the run folder is checked (a file, another run without ``--resume``, or a path
    that would overwrite an input is a one-line ``ValueError``) and locked against a second process.
    """
    config = dict(config)
    state_path = resolve_resume(config["resume"]) if config.get("resume") else None
    if config.get("out") is None:
        config["out"] = str(state_path.parent) if state_path is not None else \
            f"runs/{config['model']}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(config["out"])
    _check_run_folder(config, out, state_path)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun's other ranks write nothing into the folder
        return _train(config)
    with _RunLock(out):
        return _train(config)


def _train(config: dict[str, Any]) -> dict[str, Any]:
    from .data import Preprocess, build_dataset
    from .distributed import gather_pooled, init_distributed

    start_wall = time.time()
    config = dict(config)
    config.setdefault("command", None)
    resume_state = None
    if config.get("resume"):
        state_path = resolve_resume(config["resume"])
        resume_state = load_state(state_path)
        if config.get("out") is None:
            config["out"] = str(state_path.parent)
    # Validate the data first: a bad path fails in a second with one line.
    spec = config["data"]
    val_split = config["val_split"] or default_val_split(spec)
    if config["backbone"] not in BACKBONES:
        raise ValueError(f"unknown backbone {config['backbone']!r}; choose one of {', '.join(BACKBONES)}")
    stats = {"mean": BACKBONES[config["backbone"]].mean, "std": BACKBONES[config["backbone"]].std,
             "resize_mode": config.get("resize_mode") or "shorter"}  # configs saved before the flag existed
    pre_train = Preprocess(config["input_size"], config["resize"], **stats)
    pre_test = Preprocess(config["input_size"], config["test_resize"], **stats)
    train_raw = build_dataset(spec, "train", None, **_dataset_kwargs(spec, config, "train"))
    val_set = build_dataset(spec, val_split, pre_test.transform(False), **_dataset_kwargs(spec, config, val_split))
    num_classes = len(train_raw.classes)

    probe = _resolve_device(config)
    dist_info = init_distributed(probe.device.type)
    precision = _resolve_device(config, dist_info.local_rank)
    device = precision.device
    main = dist_info.rank == 0
    if config["threads"]:
        torch.set_num_threads(int(config["threads"]))
    workers = config["workers"]
    if workers is None:
        cores = os.cpu_count() or 1
        workers = 0 if cores <= 2 else min(8, cores // max(1, dist_info.world_size) // 2)

    seed = int(config["seed"])
    torch.manual_seed(seed + dist_info.rank)
    random.seed(seed + dist_info.rank)
    model = build_train_model(config, num_classes, init=resume_state is None).to(device)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_set = SeededTransformDataset(train_raw, pre_train.transform(True), seed + 7919 * dist_info.rank)
    sampler = BalancedBatchSampler(train_raw.labels, config["n_classes"], config["n_samples"], seed=seed + dist_info.rank)
    steps_per_epoch = len(sampler)
    if steps_per_epoch == 0:
        raise ValueError(f"the training set ({len(train_raw)} images) is smaller than one batch ({sampler.batch_size})")
    optimizer, scheduler = build_optimizer(model, config, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda") if precision.amp_dtype == torch.float16 else None
    objective = TrainStep(
        model, margin=config["margin"], rank_weight=config["rank_weight"], ltpa_weight=config["ltpa_weight"],
        gather=gather_pooled if dist_info.enabled else None,
    )
    freeze_steps = int(config["freeze_epochs"]) * steps_per_epoch

    def wrap(frozen: bool) -> nn.Module:
        # DDP registers the parameters that require grad when it is built, so it is rebuilt when the
        # trunk is released.
        set_trunk_frozen(model, frozen)
        if not dist_info.enabled:
            return objective
        return nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None
        )

    step, epoch, best, elapsed_before = 0, 0, -1.0, 0.0
    if resume_state is not None:
        try:
            model.load_state_dict(resume_state["model"])
            optimizer.load_state_dict(resume_state["optimizer"])
            scheduler.load_state_dict(resume_state["scheduler"])
            sampler.load_state_dict(resume_state["samplers"][dist_info.rank])
            if scaler is not None and "scaler" in resume_state:
                scaler.load_state_dict(resume_state["scaler"])
            step, epoch = int(resume_state["step"]), int(resume_state["epoch"])
            best = float(resume_state["best"])
            elapsed_before = float(resume_state.get("wall_time_s", 0.0))
            _set_rng_state(resume_state["rng"][dist_info.rank] if dist_info.enabled else resume_state["rng"][0])
        except (RuntimeError, KeyError, IndexError, TypeError, ValueError) as error:
            first = " ".join(str(error).split())[:200]
            raise ValueError(f"--resume {state_path}: the saved state does not fit this recipe "
                             f"({type(error).__name__}: {first})") from None

    out = Path(config["out"] or f"runs/{config['model']}-{time.strftime('%Y%m%d-%H%M%S')}")
    log_fh = None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if resume_state is not None:  # a killed run leaves its half-written temporaries (can be 100s of MB)
            remove_stale_temporaries(
                out, (STATE_FILE, "last.safetensors", "last.json", "best.safetensors", "best.json"))
        config_text = json.dumps(config, indent=2) + "\n"
        atomic_write(out / "config.json", lambda tmp: tmp.write_text(config_text))
        log_fh = open(out / "log.jsonl", "a")
        _log(log_fh, {"event": "resume" if resume_state else "start", "step": step, "epoch": epoch,
                      "time": time.time(), "config": config, "world_size": dist_info.world_size})
    total = total_steps(config, steps_per_epoch)
    val_loader = _loader(val_set, batch_size=64, workers=workers, device=device, seed=seed)
    card_base = {
        "class_names": list(train_raw.classes),
        "preprocess": pre_test.to_dict(),
        "train_preprocess": {**pre_train.to_dict(), "random_crop": pre_train.resize > pre_train.input_size, "flip": True},
        "dataset": {"spec": spec, "name": getattr(train_raw, "name", spec), "train_images": len(train_raw),
                    "val_split": val_split, "val_images": len(val_set),
                    **{k: v for k, v in _dataset_kwargs(spec, config, "train").items() if k == "image_size"}},
        "recipe": {k: v for k, v in config.items() if k not in ("command",)},
        "command": config["command"],
        "seed": seed,
        "machine": _machine(device),
        "world_size": dist_info.world_size,
    }

    def save_last(batches_consumed: int | None, wall: float) -> None:
        samplers = [sampler.state_dict(batches_consumed)]
        rngs = [_rng_state()]
        if dist_info.enabled:
            import torch.distributed as dist

            gathered: list[Any] = [None] * dist_info.world_size
            dist.all_gather_object(gathered, (samplers[0], rngs[0]))
            samplers, rngs = [g[0] for g in gathered], [g[1] for g in gathered]
        if not main:
            return
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "samplers": samplers,
            "rng": rngs,
            "step": step,
            "epoch": epoch,
            "best": best,
            "wall_time_s": wall,
        }
        if scaler is not None:
            state["scaler"] = scaler.state_dict()
        _atomic_torch_save(state, out / STATE_FILE)
        save_checkpoint(model, out / "last.safetensors", **card_base, wall_time_s=round(wall, 1),
                        metrics={"best_val_top1": best, "step": step, "epoch": epoch})

    progress = None
    if main and not config["no_progress"]:
        from tqdm import tqdm

        progress = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True, file=sys.stderr)
    window_t, window_imgs = time.time(), 0
    frozen = step < freeze_steps
    step_module = wrap(frozen)
    model.train()
    last_val: dict[str, Any] | None = None
    while step < total:
        train_set.epoch = epoch
        consumed = sampler._skip  # batches already consumed in this epoch (mid-epoch resume)
        loader = _loader(train_set, sampler, workers=workers, device=device, seed=seed + epoch)
        for images, labels in loader:
            if frozen and step >= freeze_steps:
                frozen = False
                step_module = wrap(frozen)
            images = images.to(device, non_blocking=True)
            if precision.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with precision.autocast():
                terms = step_module(images, labels)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(terms["total"]).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                terms["total"].backward()
                optimizer.step()
            scheduler.step()
            step += 1
            consumed += 1
            window_imgs += images.shape[0] * dist_info.world_size
            if step % config["log_every"] == 0 or step == total:
                now = time.time()
                values = {k: round(float(v.detach()), 5) for k, v in terms.items()}
                ips = window_imgs / max(1e-9, now - window_t)
                window_t, window_imgs = now, 0
                record = {"event": "train", "step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[-1],
                          "img_per_s": round(ips, 2), "time": now, **values}
                _log(log_fh, record)
                if progress is not None:
                    progress.set_postfix({k: values[k] for k in ("total", "ce", "rank", "ltpa") if k in values}
                                         | {"lr": f"{record['lr']:.2e}", "img/s": f"{ips:.1f}"})
            if progress is not None:
                progress.update(1)
            epoch_done = consumed >= steps_per_epoch
            if config["save_every"] and step % config["save_every"] == 0 and not epoch_done and step < total:
                save_last(consumed, elapsed_before + time.time() - start_wall)
            if step >= total:
                break
        epoch_done = consumed >= steps_per_epoch
        if epoch_done:
            epoch += 1
        # validation at each epoch end (and at the end of a --max-steps run)
        if main:
            result = evaluate_loader(model, val_loader, precision)
            last_val = result
            metrics = {"val_top1": result["top1"]}
            if "ltpa_top1" in result:
                metrics["val_ltpa_top1"] = result["ltpa_top1"]
            improved = result["top1"] > best
            best = max(best, result["top1"])
            wall = elapsed_before + time.time() - start_wall
            _log(log_fh, {"event": "val", "step": step, "epoch": epoch, "split": val_split, "time": time.time(),
                          "wall_time_s": round(wall, 1), **metrics, "best_val_top1": best})
            if progress is not None:
                progress.write(f"epoch {epoch} step {step}: {val_split} top-1 {result['top1']:.4f}"
                               + (f" (LTPA {result['ltpa_top1']:.4f})" if "ltpa_top1" in result else ""))
            if improved:
                save_checkpoint(model, out / "best.safetensors", **card_base, wall_time_s=round(wall, 1),
                                metrics={**metrics, "step": step, "epoch": epoch})
        if dist_info.enabled:
            import torch.distributed as dist

            flag = torch.tensor([best], device=device)
            dist.broadcast(flag, 0)
            best = float(flag.item())
        save_last(None if epoch_done else consumed, elapsed_before + time.time() - start_wall)
    if progress is not None:
        progress.close()
    set_trunk_frozen(model, False)
    wall = elapsed_before + time.time() - start_wall
    summary = {"event": "done", "step": step, "epoch": epoch, "best_val_top1": best,
               "wall_time_s": round(wall, 1), "out": str(out), "time": time.time()}
    if last_val is not None:
        summary["val_top1"] = last_val["top1"]
    _log(log_fh, summary)
    if log_fh is not None:
        log_fh.close()
        print(json.dumps({k: v for k, v in summary.items() if k != "time"}))
    return summary
