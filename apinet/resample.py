"""One resampling helper for maps: bilinear upsampling of a ``[h, w]`` map to an image's size.

The explanation overlays, the figures and the metrics all upsample a feature-map-resolution map
the same way (OpenCV ``INTER_LINEAR``, the pixel-centre convention of ``cv2.resize``), so what a
metric scores is what a user sees. NumPy and OpenCV only: importable from anywhere in the package.
"""

from __future__ import annotations

import numpy as np

__all__ = ["upsample_map"]


def upsample_map(map_: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of ``map_ [h, w]`` to ``shape = (H, W)`` as float32 (returned as is,
    converted to float32, when it already has that shape)."""
    import cv2

    m = np.ascontiguousarray(map_, dtype=np.float32)
    if m.shape == tuple(shape):
        return m
    return cv2.resize(m, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)
