"""What the app pays on every rerun to notice new checkpoints (issue #24, item 3).

Builds a runs folder of ``--runs`` training runs (each: ``best.safetensors`` + card, ``last.safetensors``
+ card, a log, a metrics file and a ``state/`` folder of 3 files; the checkpoints are hard links of one
tiny checkpoint, so the folder costs no disk) and times, with the median of ``--repeats``:

* ``checkpoint_fingerprint``: the cache key, computed on every rerun;
* ``discover_checkpoints`` with an unchanged folder (fingerprint + cache hit): every rerun's cost;
* ``discover_checkpoints`` after a change (cache miss: every card is read again).

    OMP_NUM_THREADS=1 python benchmarks/bench_checkpoint_listing.py --runs 200 --repeats 20
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _build(root: Path, runs: int) -> tuple[Path, Path]:
    import torch

    import apinet

    demo, folder = root / "checkpoints", root / "runs"
    torch.manual_seed(0)
    model = apinet.Baseline("resnet18", num_classes=3, output_stride=16)
    seed = apinet.save_checkpoint(model, demo / "baseline_synthbirds.safetensors", class_names=["a", "b", "c"],
                                  preprocess={"input_size": 64, "resize": 64})
    for i in range(runs):
        run = folder / f"run-{i:04d}"
        (run / "state").mkdir(parents=True)
        for name in ("best", "last"):
            os.link(seed, run / f"{name}.safetensors")
            os.link(seed.with_suffix(".json"), run / f"{name}.json")
        (run / "log.txt").write_text("epoch 1\n" * 50)
        (run / "metrics.jsonl").write_text("{}\n" * 50)
        for j in range(3):
            (run / "state" / f"shard{j}.bin").write_bytes(b"x" * 64)
    return demo, folder


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append((time.perf_counter() - tic) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    logging.getLogger("streamlit").setLevel(logging.ERROR)  # "no runtime" warnings outside `streamlit run`
    from app import resources

    with tempfile.TemporaryDirectory() as tmp:
        demo, runs = _build(Path(tmp), args.runs)
        files = sum(len(f) for _, _, f in os.walk(runs))
        d, r = str(demo), str(runs)
        fingerprint = _median_ms(lambda: resources.checkpoint_fingerprint(d, r), args.repeats)
        found, _ = resources.discover_checkpoints(d, r)
        hit = _median_ms(lambda: resources.discover_checkpoints(d, r), args.repeats)

        def miss() -> None:
            resources._discover_checkpoints.clear()
            resources.discover_checkpoints(d, r)

        cold = _median_ms(miss, max(3, args.repeats // 4))
    print(f"{args.runs} runs, {files} files under the runs folder, {len(found)} checkpoints listed")
    print(f"checkpoint_fingerprint:                 {fingerprint:8.2f} ms (median of {args.repeats})")
    print(f"discover_checkpoints, unchanged folder: {hit:8.2f} ms")
    print(f"discover_checkpoints, after a change:   {cold:8.2f} ms")


if __name__ == "__main__":
    main()
