"""Memory of one cached pair explanation at paper size, and the speed of a correspondence click.

    python benchmarks/explanation_memory.py [--backbone resnet101] [--input-size 448] [--classes 200]
                                            [--code DIR] [--threads N]

Builds random (untrained) API-Net and baseline models of the paper's shape (ResNet-101, 448 px input,
14 x 14 x 2048 feature maps, 200 classes), explains one pair of random images with the app's settings
(every CAM method, LTPA at every stage, k = 10 channels per set) and reports

* the bytes of every numpy array the explanation holds (walking its fields, dictionaries and map
  records; an array reachable twice is counted once): what ``st.cache_resource`` would keep;
* the length of its pickle: what ``st.cache_data`` (the app's cache) stores per pair;
* the largest arrays, so a regression names its cause;
* with the package's ``correspondence_map``: the median time of a click (one position of image 1
  against every position of image 2) over 200 clicks.

``--code DIR`` imports ``apinet`` from DIR instead of this checkout, e.g. an exported older commit
(``git archive COMMIT apinet | tar -x -C DIR``), to measure before / after with the same script.
Random weights are fine here: sizes do not depend on the values.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from pathlib import Path


def array_bytes(obj, seen: set[int] | None = None, path: str = "expl", found: list | None = None) -> int:
    """Bytes of every numpy array reachable from ``obj`` through attributes, dicts, lists and tuples."""
    import numpy as np

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        if found is not None:
            found.append((obj.nbytes, path, obj.shape, str(obj.dtype)))
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(array_bytes(v, seen, f"{path}[{str(k)!r}]", found) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return sum(array_bytes(v, seen, f"{path}[{i}]", found) for i, v in enumerate(obj))
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return sum(array_bytes(v, seen, f"{path}.{k}", found) for k, v in vars(obj).items())
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--input-size", type=int, default=448)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--code", help="import apinet from this folder (an exported older commit)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.code).resolve() if args.code else Path(__file__).resolve().parents[1]))

    import torch

    import apinet
    from apinet import APINet, Baseline
    from apinet.explain import CAM_METHODS, explain_pair

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = APINet(args.backbone, num_classes=args.classes).eval()
    baseline = Baseline(args.backbone, num_classes=args.classes).eval()
    stages = list(reversed(list(model.trunk.stage_channels)))
    g = torch.Generator().manual_seed(1)
    images = [torch.randn(3, args.input_size, args.input_size, generator=g) for _ in range(2)]
    tic = time.perf_counter()
    expl = explain_pair(model, *images, baseline, k=args.k, cam_methods=tuple(CAM_METHODS), ltpa_stages=stages)
    seconds = time.perf_counter() - tic

    found: list = []
    total = array_bytes(expl, found=found)
    pickled = len(pickle.dumps(expl, protocol=pickle.HIGHEST_PROTOCOL))
    print(f"apinet from {Path(apinet.__file__).resolve().parent}")
    print(f"models: random {args.backbone} API-Net + baseline, {args.classes} classes, input {args.input_size} px, "
          f"feature maps {tuple(expl.channels['apinet_gate1'].maps1.shape[1:])}; CAM methods {len(CAM_METHODS)}, "
          f"LTPA stages {stages}, k {args.k}; explain_pair took {seconds:.1f} s")
    print(f"arrays held by one PairExplanation: {total / 1e6:.2f} MB ({total} bytes)")
    print(f"pickle (what st.cache_data stores per pair): {pickled / 1e6:.2f} MB")
    print("largest arrays:")
    for nbytes, path, shape, dtype in sorted(found, reverse=True)[:8]:
        print(f"  {nbytes / 1e6:7.3f} MB  {path}  {shape} {dtype}")
    try:
        from apinet.explain import correspondence_map
    except ImportError:
        return
    h, w = expl.unit_features1.shape[:2]
    times = []
    for i in range(200):
        tic = time.perf_counter()
        correspondence_map(expl, 1 + i % 2, (i * 7) % h, (i * 3) % w)
        times.append(time.perf_counter() - tic)
    print(f"correspondence_map click at {h} x {w} x {expl.unit_features1.shape[2]}: median "
          f"{statistics.median(times) * 1000:.2f} ms, max {max(times) * 1000:.2f} ms (200 clicks)")


if __name__ == "__main__":
    main()
