"""The training loop (:func:`train`) and validation (:func:`evaluate_loader`)."""

from __future__ import annotations

import json
import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_write, remove_stale_temporaries
from ..backbones import BACKBONES
from ..checkpoint import save_checkpoint
from ..features import iterate_features
from ..pairs import BalancedBatchSampler
from .build import Precision, SeededTransformDataset, build_train_model, machine_info, resolve_device
from .config import TrainConfig, as_config, dataset_kwargs, default_val_split
from .optim import build_optimizer, set_trunk_frozen, total_steps
from .state import (STATE_FILE, RunLock, atomic_torch_save, check_run_folder, load_state, resolve_resume, rng_state,
                    set_rng_state)
from .step import TrainStep

__all__ = ["evaluate_loader", "train"]


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


def train(config: TrainConfig | dict[str, Any]) -> dict[str, Any]:
    """Run the recipe ``config`` (a :class:`TrainConfig`, or its dict form; see :func:`build_config`);
    returns a summary dict.

    Before any work the run folder is checked (a file, another run without ``--resume``, or a path
    that would overwrite an input is a one-line ``ValueError``) and locked against a second process.
    """
    config = as_config(config)
    state_path = resolve_resume(config.resume) if config.resume else None
    if config.out is None:
        config = config.replace(out=str(state_path.parent) if state_path is not None else
                                f"runs/{config.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    out = Path(config.out)
    check_run_folder(config, out, state_path)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun's other ranks write nothing into the folder
        return _train(config)
    with RunLock(out):
        return _train(config)


def _train(config: TrainConfig) -> dict[str, Any]:
    from ..data import Preprocess, build_dataset
    from ..distributed import gather_pooled, init_distributed

    start_wall = time.time()
    config = as_config(config)
    resume_state = None
    if config.resume:
        state_path = resolve_resume(config.resume)
        resume_state = load_state(state_path)
        if config.out is None:
            config = config.replace(out=str(state_path.parent))
    # Validate the data first: a bad path fails in a second with one line.
    spec = config.data
    val_split = config.val_split or default_val_split(spec)
    if config.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {config.backbone!r}; choose one of {', '.join(BACKBONES)}")
    stats = {"mean": BACKBONES[config.backbone].mean, "std": BACKBONES[config.backbone].std,
             "resize_mode": config.resize_mode or "shorter"}  # configs saved before the flag existed
    pre_train = Preprocess(config.input_size, config.resize, **stats)
    pre_test = Preprocess(config.input_size, config.test_resize, **stats)
    train_raw = build_dataset(spec, "train", None, **dataset_kwargs(config, "train"))
    val_set = build_dataset(spec, val_split, pre_test.transform(False), **dataset_kwargs(config, val_split))
    num_classes = len(train_raw.classes)

    probe = resolve_device(config)
    dist_info = init_distributed(probe.device.type)
    precision = resolve_device(config, dist_info.local_rank)
    device = precision.device
    main = dist_info.rank == 0
    if config.threads:
        torch.set_num_threads(int(config.threads))
    workers = config.workers
    if workers is None:
        cores = os.cpu_count() or 1
        workers = 0 if cores <= 2 else min(8, cores // max(1, dist_info.world_size) // 2)

    seed = int(config.seed)
    torch.manual_seed(seed + dist_info.rank)
    random.seed(seed + dist_info.rank)
    model = build_train_model(config, num_classes, init=resume_state is None).to(device)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_set = SeededTransformDataset(train_raw, pre_train.transform(True), seed + 7919 * dist_info.rank)
    sampler = BalancedBatchSampler(train_raw.labels, config.n_classes, config.n_samples, seed=seed + dist_info.rank)
    steps_per_epoch = len(sampler)
    if steps_per_epoch == 0:
        raise ValueError(f"the training set ({len(train_raw)} images) is smaller than one batch ({sampler.batch_size})")
    optimizer, scheduler = build_optimizer(model, config, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda") if precision.amp_dtype == torch.float16 else None
    objective = TrainStep(
        model, margin=config.margin, rank_weight=config.rank_weight, ltpa_weight=config.ltpa_weight,
        gather=gather_pooled if dist_info.enabled else None,
    )
    freeze_steps = int(config.freeze_epochs) * steps_per_epoch

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
            set_rng_state(resume_state["rng"][dist_info.rank] if dist_info.enabled else resume_state["rng"][0])
        except (RuntimeError, KeyError, IndexError, TypeError, ValueError) as error:
            first = " ".join(str(error).split())[:200]
            raise ValueError(f"--resume {state_path}: the saved state does not fit this recipe "
                             f"({type(error).__name__}: {first})") from None

    out = Path(config.out or f"runs/{config.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    log_fh = None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if resume_state is not None:  # a killed run leaves its half-written temporaries (can be 100s of MB)
            remove_stale_temporaries(
                out, (STATE_FILE, "last.safetensors", "last.json", "best.safetensors", "best.json"))
        config_text = json.dumps(config.to_dict(), indent=2) + "\n"
        atomic_write(out / "config.json", lambda tmp: tmp.write_text(config_text))
        log_fh = open(out / "log.jsonl", "a")
        _log(log_fh, {"event": "resume" if resume_state else "start", "step": step, "epoch": epoch,
                      "time": time.time(), "config": config.to_dict(), "world_size": dist_info.world_size})
    total = total_steps(config, steps_per_epoch)
    val_loader = _loader(val_set, batch_size=64, workers=workers, device=device, seed=seed)
    card_base = {
        "class_names": list(train_raw.classes),
        "preprocess": pre_test.to_dict(),
        "train_preprocess": {**pre_train.to_dict(), "random_crop": pre_train.resize > pre_train.input_size, "flip": True},
        "dataset": {"spec": spec, "name": getattr(train_raw, "name", spec), "train_images": len(train_raw),
                    "val_split": val_split, "val_images": len(val_set),
                    **{k: v for k, v in dataset_kwargs(config, "train").items() if k == "image_size"}},
        "recipe": {k: v for k, v in config.to_dict().items() if k != "command"},
        "command": config.command,
        "seed": seed,
        "machine": machine_info(device),
        "world_size": dist_info.world_size,
    }

    def save_last(batches_consumed: int | None, wall: float) -> None:
        samplers = [sampler.state_dict(batches_consumed)]
        rngs = [rng_state()]
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
        atomic_torch_save(state, out / STATE_FILE)
        save_checkpoint(model, out / "last.safetensors", **card_base, wall_time_s=round(wall, 1),
                        metrics={"best_val_top1": best, "step": step, "epoch": epoch})

    progress = None
    if main and not config.no_progress:
        from tqdm import tqdm

        progress = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True, file=sys.stderr)
    window_t, window_imgs = time.time(), 0
    frozen = step < freeze_steps
    step_module = wrap(frozen)
    model.train()
    last_val: dict[str, Any] | None = None
    while step < total:
        train_set.epoch = epoch
        consumed = sampler.batches_to_skip  # batches already consumed in this epoch (mid-epoch resume)
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
            if step % config.log_every == 0 or step == total:
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
            if config.save_every and step % config.save_every == 0 and not epoch_done and step < total:
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


def evaluate_loader(model: nn.Module, loader, precision: Precision | None = None, *,
                    return_pooled: bool = False) -> dict[str, Any]:
    """Predictions of the test path (and of the LTPA head when there is one) over a loader;
    ``return_pooled`` also keeps the pooled features ``[N, D]`` (float32, CPU) as ``"pooled"``."""
    was_training = model.training
    model.eval()
    preds, ltpa_preds, targets, pooled_all = [], [], [], []
    ctx = precision.autocast if precision is not None else nullcontext
    batches = iterate_features(model, loader, autocast=precision.autocast if precision is not None else None,
                               channels_last=precision is not None and precision.channels_last)
    for batch in batches:
        with torch.no_grad(), ctx():
            logits = model.forward_head(batch.pooled)
            if return_pooled:
                pooled_all.append(batch.pooled.float().cpu())
            if getattr(model, "ltpa", None) is not None:
                ltpa_preds.append(model.forward_ltpa(batch.stages, batch.pooled).logits.argmax(1).cpu())
        preds.append(logits.argmax(1).cpu())
        targets.append(batch.labels)
    model.train(was_training)
    result = {"pred": torch.cat(preds), "target": torch.cat(targets)}
    result["top1"] = float((result["pred"] == result["target"]).float().mean())
    if return_pooled:
        result["pooled"] = torch.cat(pooled_all)
    if ltpa_preds:
        result["ltpa_pred"] = torch.cat(ltpa_preds)
        result["ltpa_top1"] = float((result["ltpa_pred"] == result["target"]).float().mean())
    return result
