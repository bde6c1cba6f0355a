"""Statistics the explanation metrics report, on plain arrays: McNemar's exact test and its
generalisation to fractional outcomes (a paired sign-flip test), Wilson intervals, Spearman's rank
correlation, a t-interval of a mean, and a two-way bootstrap over pairs and random seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["SIGN_FLIPS", "format_p", "hit_rate", "mcnemar_exact", "paired_sign_flip", "spearman", "t_interval",
           "two_way_bootstrap", "wilson"]

#: Random sign flips of :func:`paired_sign_flip` when its outcomes are fractional (its p-value then
#: has a resolution of 1 / (SIGN_FLIPS + 1), and a Monte Carlo standard error below 0.0007 at p = 0.05).
SIGN_FLIPS = 200_000


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


def paired_sign_flip(scores_a: Sequence[float], scores_b: Sequence[float], *, n_flips: int = SIGN_FLIPS,
                     seed: int = 0) -> dict[str, Any]:
    """Paired two-sided test that two maps score equally on the same images, for outcomes in [0, 1]
    such as the expected pointing hits of :func:`~apinet.metrics.localisation.pointing_score`.

    Statistic: the sum of the differences d_i = a_i - b_i. Under the null that A and B are
    exchangeable within each image, every sign pattern of the d_i is equally likely; the p-value is
    the share of sign patterns whose |sum| reaches the observed one. When every d_i is -1, 0 or 1
    (0/1 outcomes), that distribution is binomial and the p-value is exact and identical to
    :func:`mcnemar_exact` (the sign-flip test *is* McNemar's exact test there). Otherwise it is
    estimated from ``n_flips`` random sign patterns drawn from a generator seeded with ``seed``
    (reproducible), counting the observed pattern: ``(1 + hits) / (1 + n_flips)``.

    Returns ``n``, the two mean scores (``rate_a``, ``rate_b``), ``a_only`` / ``b_only`` (images
    where A scores more than B / less; the discordant counts for 0/1 outcomes), ``mean_difference``,
    ``p_value`` and ``method`` ("exact" or "sign-flip, N random flips").
    """
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equally long, non-empty score lists, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores must be finite")
    d = a - b
    out = {"n": int(a.size), "rate_a": float(a.mean()), "rate_b": float(b.mean()),
           "a_only": int(np.sum(d > 0)), "b_only": int(np.sum(d < 0)), "mean_difference": float(d.mean())}
    nz = d[d != 0]
    if np.all(np.abs(nz) == 1.0):
        exact = mcnemar_exact((d > 0).astype(int), (d < 0).astype(int))
        return {**out, "p_value": exact["p_value"], "method": "exact"}
    if n_flips < 1:
        raise ValueError(f"n_flips must be >= 1, got {n_flips}")
    observed = abs(float(nz.sum()))
    # float sums of the same terms in another order differ by rounding: count ties with the observed sum
    slack = 1e-9 * max(1.0, float(np.abs(nz).sum()))
    rng = np.random.default_rng(seed)
    reached, done = 0, 0
    while done < n_flips:
        chunk = min(20_000, n_flips - done)
        signs = rng.integers(0, 2, size=(chunk, nz.size), dtype=np.int8) * 2 - 1
        reached += int(np.count_nonzero(np.abs(signs @ nz) >= observed - slack))
        done += chunk
    return {**out, "p_value": float((1 + reached) / (1 + n_flips)), "method": f"sign-flip, {n_flips} random flips"}


def format_p(test: dict[str, Any]) -> str:
    """A test's p-value for a table (``{:.2g}``); a Monte Carlo sign-flip p-value at its floor, when no
    random sign pattern reached the observed sum, reads ``<1e-05`` style: ``< 2 / (n_flips + 1)``."""
    p = float(test["p_value"])
    method = str(test.get("method", ""))
    if method.startswith("sign-flip"):
        flips = int(method.split(",")[1].split()[0])
        if p <= 1.0 / (flips + 1) * (1 + 1e-9):
            return f"<{2.0 / (flips + 1):.0e}"
    return f"{p:.2g}"


def two_way_bootstrap(values: np.ndarray, *, n_boot: int = 4000, seed: int = 0,
                      level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over pairs and seeds of ``values [n_pairs, n_seeds, L]`` and its percentile interval from a
    two-way ("pigeonhole", Owen 2007) bootstrap: each replicate resamples the pairs *and* the seeds
    with replacement, independently, so the interval carries both the variance from which pairs were
    scored and the variance from which random re-initialisations were drawn (each seed re-initialises
    the model once, shared by every pair: a crossed design). Returns ``(mean, lo, hi)``, each ``[L]``.
    Needs at least 2 pairs and 2 seeds."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or values.shape[0] < 2 or values.shape[1] < 2:
        raise ValueError(f"need values [n_pairs >= 2, n_seeds >= 2, L], got shape {values.shape}")
    n, s, _ = values.shape
    rng = np.random.default_rng(seed)
    reps = np.empty((n_boot, values.shape[2]))
    for r in range(n_boot):
        rows = rng.integers(n, size=n)
        cols = rng.integers(s, size=s)
        reps[r] = values[rows][:, cols].mean(axis=(0, 1))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha], axis=0)
    return values.mean(axis=(0, 1)), lo, hi


def wilson(hits: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``hits / n`` (NaN, NaN for ``n = 0``). ``hits`` may be a
    sum of fractional outcomes in [0, 1] (expected pointing hits): such an outcome varies no more than
    a 0/1 outcome of the same mean, so the interval is then conservative."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def hit_rate(hits: Sequence[float]) -> dict[str, Any]:
    """``{"rate": mean, "ci95": Wilson interval}`` of 0/1 hits or of expected hits in [0, 1] (NaN rate
    for none)."""
    n, h = len(hits), float(sum(hits))
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
