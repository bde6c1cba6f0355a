"""Display ranges: the one implementation of the normalisation scopes, for sequential and signed maps.

A *scope* says what one colour scale spans:

* ``"map"``: every map its own range (shapes only; values not comparable);
* ``"pair"``: one range per group (the two maps of a pair: image 1 and image 2 comparable);
* ``"models"``: one range over every group with the same units (and signedness): maps of different
  models comparable; activations are never put on one scale with attention weights.

A *signed* map (e.g. an exact contrast map, where negative values mean "lowers the score") gets
symmetric limits ``(-m, m)`` so that zero lands on the centre of a diverging colormap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

__all__ = ["SCOPES", "Scope", "scale_for", "scope_ranges", "signed_scale"]

Scope = Literal["map", "pair", "models"]
#: The scopes, in menu order.
SCOPES: tuple[str, ...] = ("map", "pair", "models")

Range = tuple[float, float]


def check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")


def value_range(arrays: Sequence[np.ndarray], percentile: float | None = None, signed: bool = False) -> Range:
    """``(min, max)`` of ``arrays`` together, or the [100-p, p] percentiles; symmetric about 0 if ``signed``."""
    if signed:
        if percentile is None:
            m = max(float(np.max(np.abs(a))) for a in arrays)
        else:
            m = float(np.percentile(np.concatenate([np.abs(np.ravel(a)) for a in arrays]), percentile))
        m = m if m > 0 else 1.0  # an all-zero signed map still puts 0 at the centre
        return -m, m
    if percentile is None:
        return float(min(a.min() for a in arrays)), float(max(a.max() for a in arrays))
    values = np.concatenate([np.ravel(a) for a in arrays])
    return float(np.percentile(values, 100 - percentile)), float(np.percentile(values, percentile))


def scope_ranges(groups: Sequence[Sequence[np.ndarray]], scope: Scope = "pair", *,
                 percentile: float | None = None, units: Sequence[str] | None = None,
                 signed: Sequence[bool] | bool = False) -> list[list[Range]]:
    """The range of every map of ``groups`` (``groups[i]`` = the maps of group i, e.g. a pair).

    ``units[i]`` / ``signed[i]`` describe group i (default: all the same units, unsigned); under
    ``"models"`` only groups with equal units and signedness share a range. Returns a nested list with
    the shape of ``groups``. This is the only place the scopes are implemented.
    """
    check_scope(scope)
    groups = [[np.asarray(m, dtype=np.float32) for m in g] for g in groups]
    n = len(groups)
    units = [""] * n if units is None else list(units)
    flags = [bool(signed)] * n if isinstance(signed, (bool, np.bool_)) else [bool(s) for s in signed]
    if len(units) != n or len(flags) != n:
        raise ValueError("units and signed need one entry per group")
    if any(len(g) == 0 for g in groups):
        raise ValueError("every group needs at least one map")
    if scope == "map":
        return [[value_range([m], percentile, s) for m in g] for g, s in zip(groups, flags)]
    if scope == "pair":
        return [[value_range(g, percentile, s)] * len(g) for g, s in zip(groups, flags)]
    shared: dict[tuple[str, bool], Range] = {}
    for key in dict.fromkeys(zip(units, flags)):
        members = [m for g, u, s in zip(groups, units, flags) if (u, s) == key for m in g]
        shared[key] = value_range(members, percentile, key[1])
    return [[shared[(u, s)]] * len(g) for g, u, s in zip(groups, units, flags)]


def scale_for(maps: Any, scope: Scope = "map", *, percentile: float | None = None, signed: bool = False) -> Any:
    """Display ranges ``(vmin, vmax)`` in the maps' own units (for colour bars).

    ``maps`` may be

    * one map ``[h, w]``: its range;
    * a flat sequence of maps (e.g. the two maps of a pair): ``"pair"`` / ``"models"`` give one
      range spanning them all; ``"map"`` gives a list with each map's own range (a one-element
      sequence gives that map's range directly);
    * a sequence of groups, one per model, each a sequence of maps
      (``[[api1, api2], [base1, base2]]``): a nested list of ranges with the same shape, where
      ``"map"`` = every map its own range, ``"pair"`` = one range per group, ``"models"`` = one range
      over everything.

    ``percentile`` (e.g. 99) uses the [100-p, p] percentiles instead of min / max (robust to a hot
    pixel); with ``signed`` the limits are ``(-m, m)``, m the largest (or p-th percentile) |value|.
    Computed by :func:`scope_ranges`.
    """
    check_scope(scope)
    if isinstance(maps, np.ndarray) and maps.ndim == 2:
        return scope_ranges([[maps]], "map", percentile=percentile, signed=signed)[0][0]
    if len(maps) == 0:
        raise ValueError("scale_for needs at least one map")
    if np.ndim(maps[0]) == 2:  # flat: one group
        if scope != "map":
            return scope_ranges([list(maps)], "pair", percentile=percentile, signed=signed)[0][0]
        ranges = scope_ranges([list(maps)], "map", percentile=percentile, signed=signed)[0]
        return ranges[0] if len(ranges) == 1 else ranges
    return scope_ranges([list(g) for g in maps], scope, percentile=percentile, signed=signed)


def signed_scale(maps: Any, scope: Scope = "map", *, percentile: float | None = None) -> Any:
    """:func:`scale_for` for signed maps: symmetric limits ``(-m, m)`` in every scope (zero at the
    centre of a diverging colormap)."""
    return scale_for(maps, scope, percentile=percentile, signed=True)
