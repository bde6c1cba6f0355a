"""Small images and their encoded bytes, shared by the image-decoding tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    """``image`` saved in ``fmt`` (PIL format name), as bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def noise(size: int, seed: int = 0) -> Image.Image:
    """A ``size`` x ``size`` RGB image of uniform noise (incompressible, so truncation really cuts data)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
