"""``python -m apinet explain``: explain a pair with :mod:`apinet.explain`, draw it with :mod:`apinet.render`."""

from __future__ import annotations

from pathlib import Path

from .._args import float_range, int_range
from .._io import atomic_write, checkpoint_files, refuse_overwriting_inputs
from ..errors import UserError
from ..explain import (CAM_METHODS, DEFAULT_APINET_CHECKPOINT, DEFAULT_BASELINE_CHECKPOINT, RANKINGS,
                       explain_pair_from_checkpoint)


_VIEWS = ("summary", "channels", "ltpa", "cams", "gates")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="explain how API-Net compares two images; write a figure (PDF/SVG/PNG)",
        description="Explain a pair of images with API-Net (and the baseline) and write a figure.")
    p.add_argument("image1")
    p.add_argument("image2")
    p.add_argument("--checkpoint", default=str(DEFAULT_APINET_CHECKPOINT), help="API-Net .safetensors")
    p.add_argument("--baseline", default=str(DEFAULT_BASELINE_CHECKPOINT),
                   help="baseline .safetensors ('none' to skip)")
    p.add_argument("--out", required=True, help="figure file: .pdf, .svg or .png")
    p.add_argument("--json", help="also write the explanation's scalars and settings as JSON")
    p.add_argument("--npz", help="also write every array as .npz")
    p.add_argument("--k", type=int_range(1, 64), default=5, help="channels per set, 1 to 64 (default 5)")
    p.add_argument("--rank-by", choices=RANKINGS, default="gate",
                   help="channel ranking: gate g, gate x activation g*x, or exact contribution W[c](1+g)x "
                        "to the self logit (default gate)")
    p.add_argument("--methods", default="gradcam,ltpa,channels",
                   help="comma list of CAM methods (%s) plus 'ltpa' and 'channels'" % ", ".join(CAM_METHODS))
    p.add_argument("--view", choices=_VIEWS + ("all",), default="summary",
                   help="figure view; 'all' writes one file per view (name_view.ext)")
    p.add_argument("--targets", help="reference classes 'A,B' (default: predicted classes)")
    p.add_argument("--cmap", default="viridis")
    p.add_argument("--alpha", type=float_range(0.0, 1.0), default=0.5)
    p.add_argument("--scope", choices=("map", "pair", "models"), default="pair")
    p.add_argument("--dpi", type=int_range(10, 1200), default=300, help="PNG resolution, 10 to 1200 (default 300)")
    p.set_defaults(func=_cli_explain)


def _cli_explain(args) -> int:
    from ..render import FigureSettings, pair_figure, save_figure

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in CAM_METHODS and m not in ("ltpa", "channels")]
    if unknown:
        raise UserError(f"unknown --methods {unknown}; choose from {', '.join(CAM_METHODS)}, ltpa, channels")
    cam_methods = [m for m in methods if m in CAM_METHODS]
    targets = None
    if args.targets:
        try:
            a, b = (int(v) for v in args.targets.split(","))
        except ValueError:
            raise UserError(f"--targets must be two class indices 'A,B', got {args.targets!r}") from None
        targets = (a, b)
    for path in (args.image1, args.image2):
        if not Path(path).exists():
            raise UserError(f"{path}: file not found")
    views = _VIEWS if args.view == "all" else (args.view,)
    out = Path(args.out)
    if out.suffix.lower() not in (".pdf", ".svg", ".png"):
        raise UserError(f"--out must end in .pdf, .svg or .png, got {out.name}")
    figures = [out if len(views) == 1 else out.with_name(f"{out.stem}_{view}{out.suffix}") for view in views]
    baseline = None if args.baseline.lower() == "none" else args.baseline
    # Before anything is computed: no output may replace an input (image, checkpoint or its card).
    refuse_overwriting_inputs(
        {"--out": figures, "--json": args.json, "--npz": args.npz},
        {"image1": args.image1, "image2": args.image2, "--checkpoint": checkpoint_files(args.checkpoint),
         "--baseline": checkpoint_files(baseline)},
    )
    expl = explain_pair_from_checkpoint(args.image1, args.image2, args.checkpoint, baseline,
                                        k=args.k, rank_by=args.rank_by, cam_methods=cam_methods,
                                        targets=targets)
    written = []
    for view, path in zip(views, figures):
        settings = FigureSettings(view=view, cmap=args.cmap, alpha=args.alpha, scope=args.scope, k=args.k,
                                  dpi=args.dpi)
        written.append(save_figure(pair_figure(expl, view, settings), path, dpi=args.dpi))
    if args.json:
        text = expl.to_json() + "\n"
        atomic_write(Path(args.json), lambda tmp: tmp.write_text(text))
    if args.npz:
        expl.to_npz(args.npz)
    names = expl.class_names
    print(f"image 1: {names[expl.targets[0]]} (p_self {expl.p_self1:.3f}, p_other {expl.p_other1:.3f}); "
          f"image 2: {names[expl.targets[1]]} (p_self {expl.p_self2:.3f}, p_other {expl.p_other2:.3f})")
    for index, line in enumerate(expl.unusual, 1):
        if line:
            print(f"image {index}: {line}")
    for path in written:
        print(f"wrote {path}")
    return 0
