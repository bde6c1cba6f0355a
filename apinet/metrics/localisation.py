"""Does a map point at the right place? Pointing game and energy pointing game on plain arrays.

* Pointing game (Zhang et al., ECCV 2016): does the maximum of the (bilinearly upsampled) map fall
  inside the annotation (optionally within ``tolerance`` pixels; the paper's standard is 15 px at
  224 px, :func:`standard_tolerance` scales it to other input sizes)?

  A map can have many maximal pixels: EfficientNet-Lite's ReLU6 clips activations at 6.0, so a channel
  map often has a plateau of hundreds of pixels at its maximum. :func:`pointing_score` (the protocol's
  score, PROTOCOL.md amendment 6) is the *exact expected hit* under a uniform choice among the tied
  maxima (:func:`tied_maxima`: the pixels within :data:`TIE_RTOL` of the maximum, relatively, after
  upsampling to float32), so 2 tied maxima, one in the part, score 0.5. :func:`pointing_outcomes`
  also gives the two other rules in use: the first maximum in row-major order (``numpy.argmax``;
  this project's rule up to amendment 5) and "any maximum counts" (Quantus). :func:`pointing_game`
  and :func:`pointing_game_points` (keypoints such as CUB part locations) keep the single-pixel rule
  (first maximum): a hit or a miss at the one pixel a marker can show.
* Energy pointing game (Wang et al., Score-CAM, CVPRW 2020): fraction of the map's (non-negative)
  mass inside the mask, :func:`energy_pointing_game`. A random map scores the mask's area fraction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..resample import upsample_map

__all__ = ["STANDARD_TOLERANCE_INPUT", "STANDARD_TOLERANCE_PX", "TIE_RTOL", "PointingOutcome", "energy_pointing_game",
           "pointing_game", "pointing_game_points", "pointing_outcomes", "pointing_score", "pointing_score_points",
           "standard_tolerance", "tied_maxima", "upsample_map", "within_tolerance"]

#: Zhang et al. (2016) count a pointing-game hit within 15 pixels of the annotation at 224 px input.
STANDARD_TOLERANCE_PX = 15.0
STANDARD_TOLERANCE_INPUT = 224

#: Two pixels of a map tie for its maximum when they differ from it by at most this fraction of its
#: magnitude, on the map upsampled to float32. float32 carries 24 bits (a relative step of 1.2e-7);
#: bilinear interpolation between equal values (a ReLU6 plateau at 6.0) is within a few of those
#: steps of them, while two distinct activations of a trained network differ by far more than 1e-6.
#: An all-zero map has every pixel tied (the tolerance is 0 there: exact equality).
TIE_RTOL = 1e-6


def _argmax2d(m: np.ndarray) -> tuple[int, int]:
    row, col = np.unravel_index(int(np.argmax(m)), m.shape)
    return int(row), int(col)


def tied_maxima(map_: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Boolean ``shape`` array of the pixels of ``map_`` (upsampled bilinearly to ``shape`` as float32;
    default: its own shape) that tie for its maximum: within :data:`TIE_RTOL` of it, relatively."""
    up = upsample_map(map_, shape or np.asarray(map_).shape)
    if not np.isfinite(up).all():
        raise ValueError("pointing game needs a finite map (it has NaN or infinite values)")
    top = float(up.max())
    return up >= np.float32(top - TIE_RTOL * abs(top))


def within_tolerance(mask: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
    """Boolean array: the pixels within ``tolerance`` px (Euclidean, pixel centres) of a ``True`` pixel
    of ``mask`` (the mask itself at 0 px): where a map's maximum counts as a hit."""
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("pointing game needs a non-empty mask")
    if tolerance <= 0:
        return mask.copy()
    # squared distances are integers: round them, then compare as pointing_game does (d^2 <= tol^2)
    d2 = np.rint(distance_transform_edt(~mask) ** 2)
    return d2 <= float(tolerance) ** 2


@dataclass(frozen=True)
class PointingOutcome:
    """One map's pointing game under the three tie rules (``within``: the hit region of
    :func:`within_tolerance`)."""

    expected: float  # uniform choice among the tied maxima: the fraction of them in the hit region
    first: bool  # the first maximum in row-major order (numpy.argmax) is in it
    any: bool  # at least one tied maximum is in it (Quantus's rule)
    tied: int  # number of tied maximal pixels (1: no tie)


def pointing_outcomes(map_: np.ndarray, within: np.ndarray) -> PointingOutcome:
    """The pointing game of ``map_`` (upsampled to ``within``'s shape) against the hit region
    ``within`` (:func:`within_tolerance` of the part), under every tie rule."""
    within = np.asarray(within, dtype=bool)
    tied = tied_maxima(map_, within.shape)
    n = int(tied.sum())
    inside = int(np.count_nonzero(within & tied))
    first = int(np.argmax(upsample_map(map_, within.shape)))
    return PointingOutcome(expected=inside / n, first=bool(within.ravel()[first]), any=inside > 0, tied=n)


def pointing_score(map_: np.ndarray, mask: np.ndarray, tolerance: float = 0.0) -> float:
    """The protocol's pointing game (PROTOCOL.md amendment 6): the probability that a maximum of
    ``map_`` (upsampled to the mask) chosen uniformly among its tied maxima (:func:`tied_maxima`)
    lies in ``mask`` or within ``tolerance`` pixels of it. A map with one maximum scores 0 or 1,
    as :func:`pointing_game`; two tied maxima, one inside, score 0.5."""
    return pointing_outcomes(map_, within_tolerance(mask, tolerance)).expected


def pointing_score_points(map_: np.ndarray, points: Sequence[tuple[float, float]], radius: float,
                          image_shape: tuple[int, int] | None = None) -> float:
    """:func:`pointing_game_points` under the uniform tie rule: the fraction of the map's tied maxima
    within ``radius`` pixels of any ``(x, y)`` point."""
    if len(points) == 0:
        raise ValueError("pointing game needs at least one point")
    shape = image_shape or np.asarray(map_).shape
    rows, cols = np.nonzero(tied_maxima(map_, shape))
    pts = np.asarray(points, dtype=np.float64)
    d2 = (pts[None, :, 0] - cols[:, None]) ** 2 + (pts[None, :, 1] - rows[:, None]) ** 2  # [tied, points]
    return float(np.mean(d2.min(axis=1) <= radius ** 2))


def pointing_game(map_: np.ndarray, mask: np.ndarray, tolerance: float = 0.0) -> bool:
    """True when the maximum of ``map_`` (upsampled to the mask) lies in ``mask`` or within
    ``tolerance`` pixels of it. The first maximum in row-major order wins ties: one pixel, the one
    a marker shows. Scores of many maps use :func:`pointing_score` (the expected hit over the tied
    maxima), which this equals whenever the map has a single maximum."""
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
    """True when the map's maximum (the first in row-major order) lies within ``radius`` pixels of any
    ``(x, y)`` point (:func:`pointing_score_points`: the uniform tie rule).

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
