"""Speed of a full pair explanation (both models) and of re-rendering its overlays.

    python benchmarks/bench_explain.py [--checkpoint A.safetensors] [--baseline B.safetensors]
                                       [--pairs 6] [--methods gradcam] [--threads N] [--app-request]

Defaults to the demo checkpoints in assets/checkpoints/; when they are missing it builds random
ResNet-18 (output stride 16, 20 classes, 128 px) models of the demo's shape and says so.

"Full explanation" = decode + preprocess both images, both trunks, gates, top-k maps of every channel
set, LTPA maps (parameter-free and trained when present, at the last stage), the CAMs of every
target (API-Net test path, API-Net pair path with one backward per image, baseline test path), the
exact gated maps (``exact_cams``), "why A and not B" (class contrast of both models, Finer-CAM of both
models: one more backward each), the channel contributions and the unit feature vectors that
correspondence maps use.
Every timed call gets a pair it has not seen (SynthBirds test images), so nothing is cached.
``--app-request`` asks what the app asks for (``app/resources.py``): every CAM method, LTPA at every
stage, k = 10.

* import: ``import pytorch_grad_cam`` (sklearn, scipy, matplotlib come with it), paid once per
  process; the app pays it at start-up.
* cold: the first explanation in the process after the models are loaded.
* warm: median of the following ones.
* correspondence: ``correspondence_map`` for a new click (median of 200).
* re-render: ``apinet.render.overlay_grid`` for the app's grid (channels of every set at k=5, every
  LTPA map, every CAM, both images), i.e. a change of cmap / alpha / k / scope without a model.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="assets/checkpoints/apinet_synthbirds.safetensors")
    parser.add_argument("--baseline", default="assets/checkpoints/baseline_synthbirds.safetensors")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--methods", default="gradcam")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--app-request", action="store_true",
                        help="the app's request: every CAM method, LTPA at every stage, k = 10 (overrides --methods)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    tic = time.perf_counter()
    import pytorch_grad_cam  # noqa: F401

    import_s = time.perf_counter() - tic

    from apinet import APINet, Baseline
    from apinet.data.synthbirds import SynthBirds
    from apinet.explain import explain_pair, load_pair_models, preprocess_from_card
    from apinet.render import overlay_grid

    if Path(args.checkpoint).is_file():
        model, card, baseline, _ = load_pair_models(args.checkpoint, args.baseline)
        source = f"{args.checkpoint} + {args.baseline}"
    else:
        torch.manual_seed(0)
        model = APINet("resnet18", num_classes=20, output_stride=16).eval()
        baseline = Baseline("resnet18", num_classes=20, output_stride=16).eval()
        card, source = None, "random ResNet-18 os16 models (demo checkpoints not found)"
    pre = preprocess_from_card(card)
    data = SynthBirds("test", image_size=pre.resize)
    images = [data.load_pil(i) for i in range(2 * (args.pairs + 1))]
    methods = tuple(m for m in args.methods.split(",") if m)
    request = {"k": 5}
    if args.app_request:
        from apinet.explain import CAM_METHODS

        methods = tuple(CAM_METHODS)
        request = {"k": 10, "ltpa_stages": list(reversed(list(model.trunk.stage_channels)))}

    times, expl = [], None
    for p in range(args.pairs + 1):
        tic = time.perf_counter()
        expl = explain_pair(model, images[2 * p], images[2 * p + 1], baseline, cam_methods=methods,
                            preprocess=pre, **request)
        times.append(time.perf_counter() - tic)
    cold, warm = times[0], statistics.median(times[1:])

    def grid():
        return [overlay_grid(expl, "channels", cmap="inferno", alpha=0.45, k=5, scope="pair"),
                overlay_grid(expl, "ltpa", cmap="inferno", alpha=0.45, scope="pair"),
                overlay_grid(expl, "cams", cmap="inferno", alpha=0.45, scope="models")]

    grid()
    renders = []
    for _ in range(10):
        tic = time.perf_counter()
        panels = sum(len(g.panels) for g in grid())
        renders.append(time.perf_counter() - tic)

    from apinet.explain import correspondence_map

    h, w = expl.unit_features1.shape[:2]
    clicks = []
    for i in range(200):
        tic = time.perf_counter()
        correspondence_map(expl, 1 + i % 2, (i * 7) % h, (i * 3) % w)
        clicks.append(time.perf_counter() - tic)

    cpu = platform.processor() or platform.machine()
    print(f"models: {source}; input {pre.input_size} px; CAM methods {methods}"
          + ("; the app's request (k = 10, LTPA at every stage)" if args.app_request else ""))
    print(f"machine: {platform.platform()}, {cpu}, {os.cpu_count()} CPUs visible, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads")
    print(f"import pytorch_grad_cam: {import_s:.2f} s (once per process)")
    print(f"explain_pair cold (first call): {cold:.3f} s")
    print(f"explain_pair warm (median of {args.pairs} new pairs): {warm:.3f} s "
          f"(min {min(times[1:]):.3f}, max {max(times[1:]):.3f})")
    print("  last call's parts: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in expl.settings["timings_s"].items()))
    print(f"correspondence_map click ({h} x {w} cells): median {statistics.median(clicks) * 1000:.2f} ms, "
          f"max {max(clicks) * 1000:.2f} ms")
    print(f"re-render {panels} panels x 2 images (overlay_grid): median {statistics.median(renders) * 1000:.1f} ms, "
          f"max {max(renders) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
