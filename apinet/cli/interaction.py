"""``python -m apinet train-interaction``: the interaction stage of :mod:`apinet.train.interaction`."""

from __future__ import annotations

import argparse
import json
import shlex

import torch

from ._args import float_range, int_range
from ..train import interaction as _stage


def register(subparsers) -> None:
    defaults = _stage.InteractionConfig()
    p = subparsers.add_parser(
        "train-interaction", help="train only API-Net's mutual MLP after the joint stage (test path unchanged)",
        description=_stage.__doc__.split("\n\n")[0] + " Writes OUT/best.safetensors (+ card) and OUT/log.jsonl; "
        "the card's interaction_stage entry records the recipe, the validation statistics before and after, "
        "and where the recipe departs from the paper.")
    p.add_argument("--checkpoint", required=True, help="a trained API-Net (.safetensors with its .json card)")
    p.add_argument("--out", required=True, help="a new run folder")
    p.add_argument("--steps", type=int_range(1, 10**7), default=defaults.steps)
    p.add_argument("--lr", type=float_range(0.0, 10.0, low_open=True), default=defaults.lr)
    p.add_argument("--momentum", type=float_range(0.0, 0.999), default=defaults.momentum)
    p.add_argument("--weight-decay", type=float_range(0.0, 1.0), default=defaults.weight_decay)
    p.add_argument("--per-class", type=int_range(2, 100_000), default=defaults.per_class,
                   help="training images per class whose pooled features are cached")
    p.add_argument("--batch-classes", type=int_range(2, 10_000), default=defaults.batch_classes)
    p.add_argument("--batch-images", type=int_range(2, 10_000), default=defaults.batch_images)
    p.add_argument("--margin", type=float_range(0.0, 1.0), default=defaults.margin)
    p.add_argument("--rank-weight", type=float_range(0.0, 1000.0), default=defaults.rank_weight)
    p.add_argument("--seed", type=int_range(0, 2**32 - 1), default=defaults.seed)
    p.add_argument("--data", default=None, help="dataset spec (default: the one in the model card)")
    p.add_argument("--val-split", default="val", help="split whose pair statistics the card records ('none': skip)")
    p.add_argument("--batch-size", type=int_range(1, 4096), default=50, help="images per trunk pass while caching")
    p.add_argument("--cache-dir", default=None,
                   help="folder of cached pooled features (default OUT/features): a later run on the same checkpoint, "
                        "data and images per class reuses them instead of running the trunk again")
    p.add_argument("--threads", type=int_range(1, 1024), default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    p.set_defaults(func=_run)


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run, every setting spelled out (recorded in the card)."""
    words = ["python", "-m", "apinet", "train-interaction"]
    for name in ("checkpoint", "out", "steps", "lr", "momentum", "weight_decay", "per_class", "batch_classes",
                 "batch_images", "margin", "rank_weight", "seed", "data", "val_split", "batch_size", "cache_dir", "threads"):
        value = getattr(args, name)
        if value is not None:
            words += ["--" + name.replace("_", "-"), str(value)]
    return shlex.join(words)


def _run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    config = _stage.InteractionConfig(
        steps=args.steps, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        per_class=args.per_class, batch_classes=args.batch_classes, batch_images=args.batch_images,
        margin=args.margin, rank_weight=args.rank_weight, seed=args.seed)
    command = _command(args)
    val_split = None if str(args.val_split).lower() == "none" else args.val_split
    stage = _stage.run_interaction_stage(args.checkpoint, args.out, config, data=args.data,
                                         batch_size=args.batch_size, val_split=val_split,
                                         show_progress=not args.no_progress, cache_dir=args.cache_dir,
                                         command=command)
    summary = {"out": args.out, "train_images": stage["train_images"], "final_loss": stage["final_loss"],
               "wall_time_s": stage["wall_time_s"]}
    for when in ("val_before", "val_after"):
        if when in stage:
            a = stage[when]
            summary[when] = {"gate_std": round(a["gate_std"], 4), "gate_gap": round(a["gate_gap"], 4),
                             "inter_self_wins": round(a["inter"]["self_wins"], 4),
                             "inter_mean_difference": round(a["inter"]["mean_difference"], 5),
                             "test_path_top1": round(a["test_path_top1"], 4)}
    print(json.dumps(summary))
    return 0
