"""Statistics the explanation metrics report: McNemar's exact test, Wilson intervals, Spearman's
rank correlation and a t-interval of a mean, on plain arrays."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["hit_rate", "mcnemar_exact", "spearman", "t_interval", "wilson"]


def mcnemar_exact(hits_a: Sequence[int], hits_b: Sequence[int]) -> dict[str, float]:
    """McNemar's exact test of two maps' pointing-game hits on the same images (paired).

    Returns the two hit rates, the discordant counts (``a_only``: images only map A hits,
    ``b_only``: only map B hits) and the two-sided exact p-value of "A and B hit equally often",
    ``min(1, 2 * P[Binomial(a_only + b_only, 1/2) <= min(a_only, b_only)])``.
    """
    a = np.asarray(hits_a, dtype=bool)
    b = np.asarray(hits_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equally long, non-empty hit lists, got {a.shape} and {b.shape}")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = a_only + b_only
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1)) / 2.0 ** n if n else 1.0
    return {"n": int(a.size), "rate_a": float(a.mean()), "rate_b": float(b.mean()),
            "a_only": a_only, "b_only": b_only, "p_value": float(min(1.0, 2.0 * tail))}


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``hits / n`` (NaN, NaN for ``n = 0``)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def hit_rate(hits: Sequence[int]) -> dict[str, Any]:
    """``{"rate": mean, "ci95": Wilson interval}`` of 0/1 hits (NaN rate for none)."""
    n, h = len(hits), int(sum(hits))
    return {"rate": h / n if n else float("nan"), "ci95": wilson(h, n)}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (ties get average ranks); 0 when one is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.ravel(a)), rankdata(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Column means of ``values [n, L]`` and the half-width of their two-sided Student-t interval
    (NaN with fewer than 2 rows)."""
    from scipy.stats import t as student_t

    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    mean = values.mean(axis=0)
    if n > 1:
        half = student_t.ppf(0.5 + level / 2, n - 1) * values.std(axis=0, ddof=1) / math.sqrt(n)
    else:
        half = np.full_like(mean, np.nan)
    return mean, half
