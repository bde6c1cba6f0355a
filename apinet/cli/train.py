"""``python -m apinet train``: the command line of :mod:`apinet.train` (flags -> recipe -> ``train``)."""

from __future__ import annotations

import argparse
import shlex
import sys

from ._args import float_range, int_range
from ..train import PRESETS, build_config, resume_config, train
from ..train import __doc__ as _TRAIN_DOC


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train API-Net or the baseline", description=_TRAIN_DOC.split("\n\n")[0])
    S = argparse.SUPPRESS  # unset flags stay absent, so presets can fill them
    p.add_argument("--preset", choices=sorted(PRESETS), default=S, help="recipe defaults (flags override)")
    p.add_argument("--model", choices=["apinet", "baseline"], default=S)
    p.add_argument("--backbone", default=S)
    p.add_argument("--output-stride", type=int, choices=[16, 32], default=S)
    p.add_argument("--data", default=S, help="synthbirds | synthbirds:SEED | cub:PATH | folder:PATH | aircraft:PATH | cars:PATH")
    p.add_argument("--val-split", default=S, help="split validated each epoch (default: val for synthbirds, else test)")
    p.add_argument("--image-size", type=int_range(16, 1024), default=S, help="SynthBirds render size")
    p.add_argument("--input-size", type=int_range(16, 1024), default=S, help="network input side (crop)")
    p.add_argument("--resize", type=int_range(16, 2048), default=S,
                   help="train: size before the random crop (see --resize-mode)")
    p.add_argument("--test-resize", type=int_range(16, 2048), default=S,
                   help="test: size before the centre crop (see --resize-mode)")
    p.add_argument("--resize-mode", choices=["square", "shorter"], default=S,
                   help="square: resize to RESIZE x RESIZE, then crop (the official code, paper preset); shorter: "
                        "shorter side to RESIZE, aspect kept (demo preset)")
    p.add_argument("--per-class", type=int_range(1, 100_000), default=S, help="SynthBirds: training images per class")
    p.add_argument("--val-per-class", type=int_range(1, 100_000), default=S, help="SynthBirds: validation images per class")
    p.add_argument("--n-classes", type=int_range(1, 10_000), default=S, help="classes per batch")
    p.add_argument("--n-samples", type=int_range(1, 10_000), default=S, help="images per class in a batch")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default=S)
    p.add_argument("--lr", type=float_range(0.0, 10.0, low_open=True), default=S)
    p.add_argument("--momentum", type=float_range(0.0, 0.999), default=S)
    p.add_argument("--weight-decay", type=float_range(0.0, 1.0), default=S)
    p.add_argument("--epochs", type=int_range(1, 100_000), default=S)
    p.add_argument("--warmup-epochs", type=float_range(0.0, 100_000.0), default=S)
    p.add_argument("--freeze-epochs", type=int_range(0, 100_000), default=S,
                   help="train only the head for these first epochs: the trunk gets no gradient, no weight decay "
                        "and no optimiser state until it is unfrozen")
    p.add_argument("--max-steps", type=int_range(1, 10**9), default=S, help="stop after this many steps (smoke runs)")
    p.add_argument("--margin", type=float_range(0.0, 100.0), default=S)
    p.add_argument("--rank-weight", type=float_range(0.0, 1000.0), default=S)
    p.add_argument("--ltpa", default=S, help="LTPA estimator: STAGES[:pc|dp], e.g. layer3,layer4:pc")
    p.add_argument("--ltpa-weight", type=float_range(0.0, 1000.0), default=S, help="weight of the LTPA cross-entropy (default 1)")
    p.add_argument("--ltpa-normalize", choices=["softmax", "sigmoid"], default=S,
                   help="LTPA attention over positions: softmax (default) or sigmoid")
    p.add_argument("--ltpa-aggregate", choices=["concat", "independent"], default=S,
                   help="one classifier on the concatenated descriptors (default) or one per stage, averaged")
    p.add_argument("--a2", default=S, help="A^2 double-attention blocks after STAGES, e.g. layer3,layer4")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=S,
                   help="ImageNet weights from the local torch hub cache (never downloaded)")
    p.add_argument("--weights", default=S, help="trunk weights file (implies --pretrained)")
    p.add_argument("--init-trunk", default=S,
                   help="start the trunk from a trained project checkpoint (e.g. the baseline's best.safetensors): "
                        "the offline stand-in for pretrained weights; combine with --freeze-epochs")
    p.add_argument("--seed", type=int_range(0, 2**32 - 1), default=S)
    p.add_argument("--out", default=S, help="run directory (default runs/<model>-<time>)")
    p.add_argument("--resume", default=S, help="run directory or its last checkpoint")
    p.add_argument("--save-every", type=int_range(0, 10**9), default=S, help="also save `last` every N steps")
    p.add_argument("--log-every", type=int_range(1, 10**9), default=S)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=S)
    p.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], default=S)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=S,
                   help="default: on with CUDA, off on CPU")
    p.add_argument("--workers", type=int_range(0, 256), default=S, help="data loader processes (default: 0 on <= 2 cores)")
    p.add_argument("--threads", type=int_range(1, 1024), default=S, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", default=S, help="no tqdm bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    flags = vars(args)
    config = resume_config(flags) if flags.get("resume") else build_config(flags)
    command = "python -m apinet " + shlex.join(sys.argv[1:]) if sys.argv[0].endswith(("__main__.py", "apinet")) \
        else shlex.join(sys.argv)
    train(config.replace(command=command))
    return 0
