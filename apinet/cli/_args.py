"""Typed, range-checked argparse values shared by every command's parser.

``p.add_argument("--k", type=int_range(1, 64))`` turns ``--k 0`` into argparse's usual one-line
usage error (``argument --k: must be an integer from 1 to 64, got 0``, exit status 2) before
anything is loaded or computed. Floats refuse ``nan`` and ``inf`` as well as values out of range.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["float_range", "int_range"]


def _bounds(low, high, kind: str) -> str:
    if high is None:
        return f"{kind} >= {low}"
    if low is None:
        return f"{kind} <= {high}"
    return f"{kind} from {low} to {high}"


def int_range(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers with ``low <= value <= high`` (``None``: unbounded)."""
    what = _bounds(low, high, "an integer")

    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in some messages
    return parse


def float_range(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
) -> Callable[[str], float]:
    """An argparse ``type`` accepting finite floats in ``[low, high]`` (``(low, high]`` with
    ``low_open``; ``None``: unbounded)."""
    if low_open:
        what = f"a number > {low}" + ("" if high is None else f" and <= {high}")
    else:
        what = _bounds(low, high, "a number")

    def parse(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    parse.__name__ = "float"
    return parse
