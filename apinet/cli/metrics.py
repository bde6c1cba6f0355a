"""``python -m apinet evaluate-explanations``: the command line of :func:`apinet.metrics.evaluate_explanations`."""

from __future__ import annotations

import json
from pathlib import Path

from ._args import float_range, int_range
from .._io import to_jsonable
from ..explain import DEFAULT_APINET_CHECKPOINT, DEFAULT_BASELINE_CHECKPOINT
from ..metrics import SANITY_PAIRS, evaluate_explanations, results_markdown
from ..metrics.randomization import RANDOMIZATION_SEEDS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate-explanations", help="score explanation maps on SynthBirds or CUB pairs (pointing game, ...)",
        description="Pointing / energy game against the part that tells a pair's classes apart (SynthBirds "
                    "sibling pairs, or CUB-200-2011 species pairs by annotated attributes), McNemar tests "
                    "between maps, deletion / insertion AUC, and the cascading model-randomisation sanity check.")
    p.add_argument("--checkpoint", default=str(DEFAULT_APINET_CHECKPOINT))
    p.add_argument("--baseline", default=str(DEFAULT_BASELINE_CHECKPOINT), help="'none' to skip")
    p.add_argument("--pairs", type=int_range(1, 100_000), default=380,
                   help="pair p = sibling class pair p mod 19, image p // 19 of each class (380: 20 images "
                        "of every sibling pair)")
    p.add_argument("--data", default="synthbirds",
                   help="'synthbirds[:SEED]' (part masks) or 'cub:PATH' (CUB-200-2011 with its attributes and "
                        "part locations); the checkpoint must be trained on the same classes")
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="choose a protocol on val (SynthBirds), report test (CUB has train / test only)")
    p.add_argument("--part-radius", type=float_range(0.0, 1024.0), default=None,
                   help="CUB: radius in input pixels of a disk around each part keypoint (default 0: the "
                        "keypoint's pixel, so the pointing tolerance is applied once)")
    p.add_argument("--out", required=True, help="output folder (results.json, results.md)")
    p.add_argument("--tolerance", type=float_range(0.0, 1024.0), default=None,
                   help="pointing game tolerance in pixels (default: 15 px at 224 px, scaled to the input "
                        "size; 0 px is always reported as well)")
    p.add_argument("--deletion-pairs", type=int_range(0, 100_000), default=4)
    p.add_argument("--steps", type=int_range(2, 1000), default=16)
    p.add_argument("--sanity-pairs", type=int_range(0, 100_000), default=SANITY_PAIRS,
                   help=f"pairs for the cascading randomisation check (default {SANITY_PAIRS}: mean Spearman "
                        "and a 95%% t-interval per randomised layer); 0 to skip")
    p.add_argument("--sanity-seeds", type=int_range(1, 1000), default=len(RANDOMIZATION_SEEDS),
                   help=f"random re-initialisations of every layer in the randomisation check, seeds 0..N-1 "
                        f"(default {len(RANDOMIZATION_SEEDS)}; the interval covers pairs and seeds)")
    p.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0)
    p.add_argument("--threads", type=int_range(1, 1024), default=None, help="torch CPU threads")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from .._io import atomic_write, checkpoint_files, dataset_root, refuse_overwriting_inputs

    baseline = None if args.baseline.lower() == "none" else args.baseline
    out = Path(args.out)
    # Before anything is computed: the results may not replace a checkpoint, its card or dataset files.
    refuse_overwriting_inputs({"--out": out}, {}, folders=["--out"])
    refuse_overwriting_inputs(
        {"--out": [out / "results.json", out / "results.md"]},
        {"--checkpoint": checkpoint_files(args.checkpoint), "--baseline": checkpoint_files(baseline),
         "--data": dataset_root(args.data)},
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    results = evaluate_explanations(args.checkpoint, baseline, pairs=args.pairs, data=args.data, split=args.split,
                                    tolerance=args.tolerance, part_radius=args.part_radius, deletion_pairs=args.deletion_pairs,
                                    steps=args.steps, sanity_pairs=args.sanity_pairs, seed=args.seed,
                                    sanity_seeds=tuple(range(args.sanity_seeds)))
    text = json.dumps(to_jsonable(results.to_dict()), indent=1) + "\n"
    atomic_write(out / "results.json", lambda tmp: tmp.write_text(text))
    table = results_markdown(results)
    atomic_write(out / "results.md", lambda tmp: tmp.write_text(table))
    print(table)
    return 0
