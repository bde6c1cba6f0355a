"""Small array helpers shared by the explanation modules (private)."""

from __future__ import annotations

import numpy as np
from torch import Tensor


def to_numpy(t: Tensor) -> np.ndarray:
    """A tensor as a float32 numpy array on the CPU (detached)."""
    return t.detach().cpu().float().numpy()


def softmax(v: np.ndarray) -> np.ndarray:
    z = np.asarray(v, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def minmax(a: np.ndarray) -> np.ndarray:
    a = a - a.min()
    return a / (a.max() + 1e-7)


def upsample(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one ``[h, w]`` map to ``size = (H, W)`` (float32; the map itself when the sizes match)."""
    m = np.ascontiguousarray(m, dtype=np.float32)
    if tuple(m.shape) == tuple(size):
        return m.copy()
    import cv2

    return cv2.resize(m, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
