"""Time from a display-setting change to the finished rerun, in-process (Streamlit's AppTest).

    python benchmarks/bench_rerun.py make-assets DIR            # paper-size random checkpoints + gallery
    python benchmarks/bench_rerun.py run [--code DIR] [--assets DIR] [--repeats 5] [--threads 1] [--tab LABEL]

``run`` opens the app once (models load, the gallery's feature bank and the default pair's explanation
are computed: not timed), then changes one display setting at a time (colormap, top-k, opacity,
normalisation scope), each a rerun that must not run a model, and prints every rerun's seconds and
their median. ``--code DIR`` runs the app of another checkout (e.g. ``git worktree add /tmp/before
6abe915``) with the same script, so before / after are measured alike. Without ``--assets`` the app
uses its own demo checkpoints and gallery; ``make-assets`` writes random (untrained) API-Net and
baseline checkpoints of the paper's shape (ResNet-101, 448 px input, 20 SynthBirds classes) and a
one-image-per-class gallery: sizes and times do not depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: (widget kind, key, values to alternate): the sidebar's display settings, none of which runs a model.
CHANGES = [("selectbox", "cmap", ["inferno", "viridis"]), ("slider", "k", [3, 5]),
           ("slider", "alpha", [0.7, 0.5]), ("radio", "scope", ["map", "pair"])]


def make_assets(out: Path, backbone: str = "resnet101", size: int = 448) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    import apinet
    from apinet.data import SynthBirds, export_gallery

    names = list(SynthBirds.CLASSES)
    preprocess = {"input_size": size, "resize": size}
    torch.manual_seed(0)
    model = apinet.APINet(backbone, num_classes=len(names)).eval()
    apinet.save_checkpoint(model, out / "checkpoints" / "apinet_synthbirds.safetensors", class_names=names,
                           preprocess=preprocess)
    torch.manual_seed(1)
    baseline = apinet.Baseline(backbone, num_classes=len(names)).eval()
    apinet.save_checkpoint(baseline, out / "checkpoints" / "baseline_synthbirds.safetensors", class_names=names,
                           preprocess=preprocess)
    export_gallery(out / "gallery", per_class=1)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    print(f"wrote {backbone} / {size} px checkpoints and a {len(names)}-image gallery to {out}")


def run(code: Path, assets: Path | None, repeats: int, threads: int, tab: str | None = None) -> None:
    if assets is not None:
        os.environ["APINET_CHECKPOINT_DIR"] = str(assets / "checkpoints")
        os.environ["APINET_RUNS_DIR"] = str(assets / "runs")
        os.environ["APINET_GALLERY_DIR"] = str(assets / "gallery")
    sys.path.insert(0, str(code))
    os.chdir(code)
    import torch
    from streamlit.testing.v1 import AppTest

    if threads:
        torch.set_num_threads(threads)
    tic = time.perf_counter()
    at = AppTest.from_file(str(code / "streamlit_app.py"), default_timeout=1800).run()
    first = time.perf_counter() - tic
    if at.exception:
        raise SystemExit(f"the app raised: {at.exception[0].message}")
    from app import resources

    if tab:  # after the split into app/tabs/ only the open tab runs: time a heavier one than the default
        from app.tabs import TAB_KEY

        at.session_state[TAB_KEY] = tab
        at.run()
    calls = resources.EXPLAIN_CALLS.value
    times: dict[str, list[float]] = {}
    for i in range(repeats):
        for kind, key, values in CHANGES:
            widget = getattr(at.sidebar, kind)(key=key)
            widget.set_value(values[i % 2])
            tic = time.perf_counter()
            at.run()
            times.setdefault(key, []).append(time.perf_counter() - tic)
            if at.exception:
                raise SystemExit(f"the app raised: {at.exception[0].message}")
    assert resources.EXPLAIN_CALLS.value == calls, "a display setting ran a model"
    every = [t for ts in times.values() for t in ts]
    print(f"app from {code}{f', tab {tab!r} open' if tab else ''}; first run (models, feature bank, default pair) {first:.1f} s; "
          f"torch threads {torch.get_num_threads()}")
    for key, ts in times.items():
        print(f"  {key:6s} " + " ".join(f"{t:.3f}" for t in ts) + f"  (median {statistics.median(ts):.3f} s)")
    print(f"display-setting rerun: median {statistics.median(every):.3f} s, max {max(every):.3f} s "
          f"over {len(every)} reruns")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-assets")
    m.add_argument("out", type=Path)
    m.add_argument("--backbone", default="resnet101")
    m.add_argument("--size", type=int, default=448)
    r = sub.add_parser("run")
    r.add_argument("--code", type=Path, default=ROOT)
    r.add_argument("--assets", type=Path)
    r.add_argument("--repeats", type=int, default=5)
    r.add_argument("--threads", type=int, default=0)
    r.add_argument("--tab", help="open this tab (label) first; only for the app with app/tabs/")
    args = p.parse_args()
    if args.cmd == "make-assets":
        make_assets(args.out, args.backbone, args.size)
    else:
        run(args.code.resolve(), args.assets.resolve() if args.assets else None, args.repeats, args.threads, args.tab)


if __name__ == "__main__":
    main()
