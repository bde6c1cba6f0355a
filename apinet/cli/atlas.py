"""``python -m apinet atlas``: the command line of :mod:`apinet.atlas.build`."""

from __future__ import annotations

import argparse
import sys

import torch

from ._args import int_range
from ..errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "atlas", help="compute a dataset once through API-Net and the baseline, for the app's Dataset view",
        description="Write an atlas folder: one row per image (class, both models' predictions and top-5, OOD "
                    "score, 2-D map position, thumbnail, mined partners and their mechanism strength) plus both "
                    "models' pooled features. Classes are matched to the checkpoints' class names by name. "
                    "Re-running the same command resumes; under torchrun the images are shared across processes.")
    p.add_argument("--data", required=True,
                   help="synthbirds, a CUB-200-2011 root, an image folder with one sub-folder per class, or a spec "
                        "(cub:PATH, folder:PATH, aircraft:PATH, cars:PATH)")
    p.add_argument("--split", default="test", help="dataset split (a folder without train/val/test folders: all of it)")
    p.add_argument("--checkpoint", required=True, help="the API-Net checkpoint (.safetensors with its .json card)")
    p.add_argument("--baseline", required=True, help="the baseline checkpoint trained on the same classes")
    p.add_argument("--out", required=True, help="the atlas folder to write (or resume)")
    p.add_argument("--unlabelled", action="store_true",
                   help="keep images of classes the checkpoints do not know, without a label (default: refuse)")
    p.add_argument("--batch-size", type=int_range(1, 4096), default=32)
    p.add_argument("--workers", type=int_range(0, 256), default=1,
                   help="decoding processes (they overlap decoding and thumbnails with the forward passes)")
    p.add_argument("--chunk-size", type=int_range(1, 1_000_000), default=512,
                   help="images per resumable chunk")
    p.add_argument("--thumbnail-size", type=int_range(16, 512), default=64)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int_range(1, 1024), default=None, help="torch CPU threads")
    p.add_argument("--limit", type=int_range(1, 100_000_000), default=None, help="only the first N images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..atlas import build_atlas

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    result = build_atlas(args.data, args.checkpoint, args.baseline, args.out, split=args.split,
                         unlabelled=args.unlabelled, batch_size=args.batch_size, workers=args.workers,
                         device=args.device, chunk_size=args.chunk_size, thumbnail_size=args.thumbnail_size,
                         threads=args.threads or 1, progress=not args.no_progress, limit=args.limit)
    if result.complete:
        resumed = result.images + len(result.bad) - result.built_now
        print(f"atlas {result.folder}: {result.images} images ({result.built_now} computed now"
              + (f", {resumed} resumed" if resumed > 0 else "") + ")", file=sys.stderr)
        for entry in result.bad:
            print(f"skipped bad image {entry['path']}: {entry['reason']}", file=sys.stderr)
    return 0
