"""``python -m apinet explain``: explain a pair with :mod:`apinet.explain`, draw it with :mod:`apinet.render`."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from ._args import float_range, int_range
from .._io import atomic_write, checkpoint_files, refuse_overwriting_inputs
from ..errors import UserError
from ..explain import (CAM_METHODS, DEFAULT_APINET_CHECKPOINT, DEFAULT_BASELINE_CHECKPOINT, RANKINGS,
                       explain_pair_from_checkpoint)
from ..render.views import VIEW_LIST, VIEWS

#: Rows of a multi-pair figure (``--pairs``).
MAX_PAIRS = 8


def figure_width(text: str) -> str | float:
    """``--width``: ``single`` (3.3 in), ``double`` (6.9 in) or inches from 2 to 20."""
    if text in ("single", "double"):
        return text
    try:
        inches = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be single, double or inches, got {text!r}") from None
    if not 2.0 <= inches <= 20.0:
        raise argparse.ArgumentTypeError(f"must be from 2 to 20 inches, got {text}")
    return inches


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="explain how API-Net compares two images; write a figure (PDF/SVG/PNG)",
        description="Explain a pair of images with API-Net (and the baseline) and write a figure; "
                    "with --pairs FILE, several pairs as the rows of one figure.")
    p.add_argument("image1", nargs="?")
    p.add_argument("image2", nargs="?")
    p.add_argument("--pairs", help=f"text / CSV file with two image paths per line (comma, tab or spaces; "
                                   f"'#' comments; relative paths are relative to the file), 1 to {MAX_PAIRS} "
                                   "pairs: one figure with a row per pair")
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
    p.add_argument("--view", choices=VIEWS + ("all",), default="summary",
                   help="figure view: " + "; ".join(f"{v.slug}: {v.label}" for v in VIEW_LIST)
                        + "; 'all' writes one file per view the explanation has (name_view.ext)")
    p.add_argument("--targets", help="reference classes 'A,B' (default: predicted classes)")
    p.add_argument("--cmap", default="viridis")
    p.add_argument("--alpha", type=float_range(0.0, 1.0), default=0.5)
    p.add_argument("--scope", choices=("map", "pair", "models"), default="pair")
    p.add_argument("--width", type=figure_width, default="double",
                   help="figure width: single (3.3 in, one paper column), double (6.9 in, two columns; "
                        "default) or inches from 2 to 20; panels wrap into more rows to stay readable")
    p.add_argument("--font-size", type=float_range(7.0, 24.0), default=7.0,
                   help="points at the printed size, 7 to 24 (default 7)")
    p.add_argument("--dpi", type=int_range(10, 1200), default=300, help="PNG resolution, 10 to 1200 (default 300)")
    p.set_defaults(func=_cli_explain)


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """The pairs of a ``--pairs`` file: two image paths per line, separated by a comma, a tab or spaces
    (CSV quoting allowed); blank lines, ``#`` comments and an ``image1,image2`` header are skipped;
    relative paths are relative to the file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"--pairs {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--pairs {path}: cannot read it as text ({exc.__class__.__name__})") from None
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "," in line or "\t" in line:
            fields = [f.strip() for f in next(csv.reader([line], delimiter="," if "," in line else "\t"))]
        else:
            fields = line.split()
        fields = [f for f in fields if f]
        if len(fields) != 2:
            raise UserError(f"--pairs {path}, line {number}: expected two image paths, got {len(fields)} fields")
        if [f.lower() for f in fields] == ["image1", "image2"]:
            continue
        a, b = ((f if Path(f).is_absolute() else str(path.parent / f)) for f in fields)
        pairs.append((a, b))
        if len(pairs) > MAX_PAIRS:
            raise UserError(f"--pairs {path}: more than {MAX_PAIRS} pairs; a figure holds 1 to {MAX_PAIRS} rows")
    if not pairs:
        raise UserError(f"--pairs {path}: no pairs in it (two image paths per line)")
    return pairs


def _cli_explain(args) -> int:
    from ..render import FigureSettings, available_views, multi_pair_figure, pair_figure, save_figure

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
    if args.pairs:
        if args.image1 or args.image2:
            raise UserError("give either two images or --pairs FILE, not both")
        if args.json or args.npz or targets:
            raise UserError("--json, --npz and --targets take one pair; leave them out with --pairs")
        pairs = read_pairs(args.pairs)
    elif args.image1 and args.image2:
        pairs = [(args.image1, args.image2)]
    else:
        raise UserError("explain needs two images (image1 image2) or --pairs FILE")
    for path in (p for pair in pairs for p in pair):
        if not Path(path).exists():
            raise UserError(f"{path}: file not found")
    views = VIEWS if args.view == "all" else (args.view,)
    out = Path(args.out)
    if out.suffix.lower() not in (".pdf", ".svg", ".png"):
        raise UserError(f"--out must end in .pdf, .svg or .png, got {out.name}")
    figures = {view: out if len(views) == 1 else out.with_name(f"{out.stem}_{view}{out.suffix}")
               for view in views}
    baseline = None if args.baseline.lower() == "none" else args.baseline
    # Before anything is computed: no output may replace an input (image, pairs file, checkpoint or card).
    images = {f"pair {i} image {j}": p for i, pair in enumerate(pairs, 1) for j, p in enumerate(pair, 1)}
    if not args.pairs:
        images = {"image1": args.image1, "image2": args.image2}
    refuse_overwriting_inputs(
        {"--out": list(figures.values()), "--json": args.json, "--npz": args.npz},
        {**images, "--pairs": args.pairs, "--checkpoint": checkpoint_files(args.checkpoint),
         "--baseline": checkpoint_files(baseline)},
    )
    expls = [explain_pair_from_checkpoint(a, b, args.checkpoint, baseline, k=args.k, rank_by=args.rank_by,
                                          cam_methods=cam_methods, targets=targets) for a, b in pairs]
    if args.view == "all":  # the views every pair has the data for
        have = set.intersection(*({v.slug for v in available_views(e)} for e in expls))
        views = tuple(v for v in views if v in have)
    elif any(args.view not in {v.slug for v in available_views(e)} for e in expls):
        raise UserError(f"--view {args.view}: this explanation has no {args.view} maps "
                        f"(available: {', '.join(v.slug for v in available_views(expls[0]))})")
    written = []
    for view in views:
        settings = FigureSettings(view=view, cmap=args.cmap, alpha=args.alpha, scope=args.scope, k=args.k,
                                  dpi=args.dpi, width=args.width, font_size=args.font_size)
        if args.pairs:
            names = [f"{Path(a).name} / {Path(b).name}" for a, b in pairs]
            fig = multi_pair_figure(expls, view, settings, names=names)
        else:
            fig = pair_figure(expls[0], view, settings)
        written.append(save_figure(fig, figures[view], dpi=args.dpi))
    expl = expls[0]
    if args.json:
        text = expl.to_json() + "\n"
        atomic_write(Path(args.json), lambda tmp: tmp.write_text(text))
    if args.npz:
        expl.to_npz(args.npz)
    for (a, b), expl in zip(pairs, expls):
        _report(expl, f"{a} / {b}: " if args.pairs else "")
    for path in written:
        print(f"wrote {path}")
    return 0


def _report(expl, prefix: str) -> None:
    names = expl.class_names
    print(f"{prefix}image 1: {names[expl.targets[0]]} (p_self {expl.p_self1:.3f}, p_other {expl.p_other1:.3f}); "
          f"image 2: {names[expl.targets[1]]} (p_self {expl.p_self2:.3f}, p_other {expl.p_other2:.3f})")
    for index, line in enumerate(expl.unusual, 1):
        if line:
            print(f"{prefix}image {index}: {line}")
