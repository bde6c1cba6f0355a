"""Time to draw and save each publication figure of one pair (no model: from a saved explanation).

    python benchmarks/bench_figures.py [--npz pair.npz] [--repeat 3]

Without ``--npz`` the demo pair (tests/data/chelsea.jpg, coffee.jpg, demo checkpoints) is explained
once first. Prints the median seconds of ``pair_figure`` + ``save_figure`` (PDF) per view and width,
and the figure's size in inches.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a clone without installing


def main() -> None:
    import matplotlib

    from apinet.explain import PairExplanation, explain_pair_from_checkpoint
    from apinet.render import FigureSettings, available_views, pair_figure, save_figure

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--npz")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    if args.npz:
        expl = PairExplanation.from_npz(args.npz)
    else:
        data = ROOT / "tests" / "data"
        expl = explain_pair_from_checkpoint(data / "chelsea.jpg", data / "coffee.jpg")
    print(f"matplotlib {matplotlib.__version__}; k={expl.settings.get('k')}")
    print("| view | width | size (in) | draw + save PDF (s) |")
    print("|---|---|---|---:|")
    for view in available_views(expl):
        for width in ("single", "double"):
            times = []
            for _ in range(args.repeat):
                tic = time.perf_counter()
                fig = pair_figure(expl, view.slug, FigureSettings(width=width))
                save_figure(fig, io.BytesIO(), format="pdf")
                times.append(time.perf_counter() - tic)
            w, h = fig.get_size_inches()
            print(f"| {view.slug} | {width} | {w:.1f} x {h:.1f} | {statistics.median(times):.2f} |")


if __name__ == "__main__":
    main()
