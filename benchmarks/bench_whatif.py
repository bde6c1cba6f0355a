"""Speed of one what-if change on an explained pair (issue #22: target <= 0.3 s warm per change).

    OMP_NUM_THREADS=1 python benchmarks/bench_whatif.py [--checkpoint A.safetensors] [--pairs 4]
                                                         [--repeats 20] [--threads 1]

For each of ``--pairs`` SynthBirds gallery pairs (test split, the app's gallery), the pair is explained
once as the app does (``explain_pair``, not timed) and a :class:`apinet.explain.whatif.WhatIfPair` is
built from it with the preprocessed inputs. Timed, as the app runs them (``WhatIfPair.run``):

* head-only changes: gates 0.5, swap, one channel's gate to 0 (no trunk pass);
* occlusion: a new set of cells of A (2 x 2 cells, a different block every time, so nothing is cached):
  one trunk pass for A, then the pair head;
* the first change of each kind on a new pair counts as cold; the table reports the median and max of
  the rest (warm).

Defaults to the demo checkpoint; a checkpoint's ``.json`` card gives its preprocessing.
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
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    from apinet import load_model
    from apinet.data import Preprocess, SynthBirds
    from apinet.explain import explain_pair
    from apinet.explain.whatif import HalfGates, Occlude, SetGate, SwapGates, WhatIfPair

    if args.threads:
        torch.set_num_threads(args.threads)
    model, card = load_model(args.checkpoint)
    model.eval()
    pre = Preprocess.from_card(card)
    data = SynthBirds(split="test", per_class=2)
    head_times, occl_times, cold_head, cold_occl = [], [], [], []
    grid = None
    for p in range(args.pairs):
        a, b = data.sample(2 * p), data.sample(2 * p + 3)
        expl = explain_pair(model, a.image, b.image, k=5, cam_methods=(), preprocess=pre,
                            targets=(a.label, b.label), contrast=False)
        inputs = torch.stack([pre(a.image), pre(b.image)])
        pair = WhatIfPair.from_explanation(model, expl, inputs)
        grid = pair.grid
        d = int(expl.gate1.shape[0])
        heads = [[HalfGates()], [SwapGates()], [SetGate(1, int(expl.gate_order1[0]), 0.0)]]
        for n in range(args.repeats + 1):
            tic = time.perf_counter()
            pair.run(heads[n % 3] if n % 6 < 3 else heads[n % 3] + [SetGate(2, (7 * n) % d, 1.0)])
            (cold_head if n == 0 else head_times).append(time.perf_counter() - tic)
        h, w = grid
        for n in range(args.repeats + 1):
            r, c = divmod((7 * n + 31 * p) % ((h - 1) * (w - 1)), w - 1)  # a new block each time
            cells = frozenset({(r, c), (r + 1, c), (r, c + 1), (r + 1, c + 1)})
            tic = time.perf_counter()
            result = pair.run([Occlude(1, cells, grid)])
            (cold_occl if n == 0 else occl_times).append(time.perf_counter() - tic)
            assert result.trunk_passes == 1, result.trunk_passes

    def row(name, times, cold):
        return (f"| {name} | {len(times)} | {statistics.median(times) * 1000:.1f} | {max(times) * 1000:.1f} | "
                f"{statistics.median(cold) * 1000:.1f} |")

    print(f"checkpoint {args.checkpoint} ({card.get('backbone')}, input {pre.input_size} px, grid {grid}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '-')}, {platform.processor() or platform.machine()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| change | warm runs | median (ms) | max (ms) | cold, first of a pair (ms) |")
    print("|---|---:|---:|---:|---:|")
    print(row("head only (gates 0.5 / swap / one gate)", head_times, cold_head))
    print(row("occlusion of 4 cells of A (one trunk pass)", occl_times, cold_occl))


if __name__ == "__main__":
    main()
