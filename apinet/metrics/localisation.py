"""Does a map point at the right place? Pointing game and energy pointing game on plain arrays.

* Pointing game (Zhang et al., ECCV 2016): does the maximum of the (bilinearly upsampled) map fall
  inside the annotation (optionally within ``tolerance`` pixels; the paper's standard is 15 px at
  224 px, :func:`standard_tolerance` scales it to other input sizes)? :func:`pointing_game`, and
  :func:`pointing_game_points` for keypoints such as CUB part locations (hit = within ``radius``).
* Energy pointing game (Wang et al., Score-CAM, CVPRW 2020): fraction of the map's (non-negative)
  mass inside the mask, :func:`energy_pointing_game`. A random map scores the mask's area fraction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..resample import upsample_map

__all__ = ["STANDARD_TOLERANCE_INPUT", "STANDARD_TOLERANCE_PX", "energy_pointing_game", "pointing_game",
           "pointing_game_points", "standard_tolerance", "upsample_map"]

#: Zhang et al. (2016) count a pointing-game hit within 15 pixels of the annotation at 224 px input.
STANDARD_TOLERANCE_PX = 15.0
STANDARD_TOLERANCE_INPUT = 224


def _argmax2d(m: np.ndarray) -> tuple[int, int]:
    row, col = np.unravel_index(int(np.argmax(m)), m.shape)
    return int(row), int(col)


def pointing_game(map_: np.ndarray, mask: np.ndarray, tolerance: float = 0.0) -> bool:
    """True when the maximum of ``map_`` (upsampled to the mask) lies in ``mask`` or within
    ``tolerance`` pixels of it. The first maximum in row-major order wins ties."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("pointing game needs a non-empty mask")
    row, col = _argmax2d(upsample_map(map_, mask.shape))
    if tolerance <= 0:
        return bool(mask[row, col])
    rows, cols = np.nonzero(mask)
    return bool(np.min((rows - row) ** 2 + (cols - col) ** 2) <= tolerance ** 2)


def energy_pointing_game(map_: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the map's non-negative mass inside ``mask`` (map upsampled to the mask)."""
    mask = np.asarray(mask, dtype=bool)
    m = np.maximum(upsample_map(map_, mask.shape), 0.0)
    total = float(m.sum())
    if total <= 0:
        return float(mask.mean())  # a map with no mass points nowhere: count it as uniform
    return float(m[mask].sum() / total)


def standard_tolerance(input_size: int) -> float:
    """The pointing game's standard tolerance (15 px at 224 px) scaled to ``input_size`` pixels."""
    if input_size <= 0:
        raise ValueError(f"input_size must be positive, got {input_size}")
    return STANDARD_TOLERANCE_PX * input_size / STANDARD_TOLERANCE_INPUT


def pointing_game_points(map_: np.ndarray, points: Sequence[tuple[float, float]], radius: float,
                         image_shape: tuple[int, int] | None = None) -> bool:
    """True when the map's maximum lies within ``radius`` pixels of any ``(x, y)`` point.

    Points are in the pixel coordinates of an image of ``image_shape`` (H, W); the map is upsampled
    to it (default: the map's own shape). Invisible parts should simply be left out of ``points``.
    """
    if len(points) == 0:
        raise ValueError("pointing game needs at least one point")
    shape = image_shape or np.asarray(map_).shape
    row, col = _argmax2d(upsample_map(map_, shape))
    pts = np.asarray(points, dtype=np.float64)
    d2 = (pts[:, 0] - col) ** 2 + (pts[:, 1] - row) ** 2
    return bool(d2.min() <= radius ** 2)
