"""What the tie rule of PROTOCOL.md amendment 6 costs: the pointing game of one 14 x 14 map against a
224 x 224 part mask, first-maximum rule vs expected hit over the tied maxima, and one sign-flip test
of 760 fractional outcomes (200,000 random sign patterns).

    OMP_NUM_THREADS=1 python benchmarks/bench_pointing.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from apinet.metrics import paired_sign_flip, pointing_game, pointing_outcomes, within_tolerance  # noqa: E402


def best_of(fn, repeat: int = 5, number: int = 50) -> float:
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - tic) / number)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    m = np.clip(rng.random((14, 14)) * 8, 0, 6).astype(np.float32)  # ReLU6-like: a plateau at 6
    mask = np.zeros((224, 224), bool)
    mask[100:110, 60:75] = True
    within = within_tolerance(mask, 15.0)
    first = best_of(lambda: pointing_game(m, mask, 15.0))
    expected = best_of(lambda: pointing_outcomes(m, within))
    region = best_of(lambda: within_tolerance(mask, 15.0))
    a, b = rng.random(760), rng.random(760)
    flip = best_of(lambda: paired_sign_flip(a, b), repeat=3, number=1)
    print(f"pointing_game (first maximum), one map:           {1e3 * first:.2f} ms")
    print(f"pointing_outcomes (every tie rule), one map:      {1e3 * expected:.2f} ms")
    print(f"within_tolerance (once per image and tolerance):  {1e3 * region:.2f} ms")
    print(f"paired_sign_flip, 760 fractional outcomes:        {flip:.2f} s")


if __name__ == "__main__":
    main()
