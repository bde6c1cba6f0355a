"""``python -m apinet evaluate``: the command line of :mod:`apinet.evaluate`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ._args import int_range
from ..errors import UserError
from ..evaluate import evaluate_checkpoint


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="accuracy of a checkpoint on a dataset split")
    p.add_argument("--checkpoint", required=True, help="a .safetensors file with its .json card beside it")
    p.add_argument("--data", default=None, help="dataset spec (default: the one in the model card)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", default=None, help="write the metrics JSON here")
    p.add_argument("--batch-size", type=int_range(1, 4096), default=64)
    p.add_argument("--workers", type=int_range(0, 256), default=0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int_range(1, 1024), default=None, help="torch CPU threads")
    p.add_argument("--export", default=None, metavar="PATH",
                   help="also write a copy of the checkpoint (float16 by default) whose card holds these metrics")
    p.add_argument("--export-dtype", choices=["float16", "float32"], default="float16")
    p.add_argument("--reference-per-class", type=int_range(0, 10_000), default=20, metavar="N",
                   help="with --export: store a reference of N training images per class, so apps can say when "
                        "an image is unlike the training data (0: none)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..checkpoint import CheckpointError

    from .._io import checkpoint_files, dataset_root, refuse_overwriting_inputs

    data = args.data
    if data is None:  # the card's dataset: its files are inputs too (an unreadable card fails below)
        from ..checkpoint import load_card

        try:
            recorded = load_card(args.checkpoint).get("dataset")
            data = recorded.get("spec") if isinstance(recorded, dict) else None
        except (CheckpointError, OSError, ValueError):
            data = None
    # Before anything is computed: neither output may replace the checkpoint, its card or the data.
    refuse_overwriting_inputs(
        {"--out": args.out, "--export": checkpoint_files(args.export)},
        {"--checkpoint": checkpoint_files(args.checkpoint), "--data": dataset_root(data)},
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    try:
        per_class = args.reference_per_class if args.export and args.reference_per_class > 0 else None
        result = evaluate_checkpoint(args.checkpoint, args.data, args.split, batch_size=args.batch_size,
                                     workers=args.workers, device=args.device, reference_per_class=per_class)
    except CheckpointError as exc:
        raise UserError(str(exc)) from None
    text = json.dumps(result.to_dict(), indent=2)
    print(text)
    if args.out:
        from .._io import atomic_write

        atomic_write(Path(args.out), lambda tmp: tmp.write_text(text + "\n"))
    if args.export:
        from ..train import export_checkpoint

        split = args.split
        kept = ("top1", "ltpa_top1", "num_images", "per_class", "confused_pairs")
        metrics = {f"{split}_{k}": v for k, v in result.to_dict().items() if k in kept}
        metrics[f"{split}_split"] = split
        dst = export_checkpoint(args.checkpoint, args.export, dtype=getattr(torch, args.export_dtype), metrics=metrics,
                                reference=result.extra.get("reference"))
        print(f"exported {dst} ({args.export_dtype}) with the {split} metrics in its card", file=sys.stderr)
    return 0
