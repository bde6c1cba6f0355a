"""Colour maps and overlays: values -> RGB through a 256-entry lookup table, blended over an image.

Sequential maps use OpenCV's colormaps (:data:`COLORMAPS`). Signed maps use a diverging table
(:data:`DIVERGING_COLORMAPS`, ColorBrewer anchors) whose two middle entries (127 and 128) are both
the neutral centre colour, so with symmetric limits ``(-m, m)`` a value of 0 is drawn neutral.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["COLORMAPS", "DIVERGING_COLORMAPS", "colorize", "colormap_lut", "is_diverging", "overlay"]

#: Colormap names accepted everywhere (OpenCV's built-in maps).
COLORMAPS: dict[str, str] = {
    "viridis": "COLORMAP_VIRIDIS", "inferno": "COLORMAP_INFERNO", "magma": "COLORMAP_MAGMA",
    "plasma": "COLORMAP_PLASMA", "cividis": "COLORMAP_CIVIDIS", "jet": "COLORMAP_JET",
    "turbo": "COLORMAP_TURBO", "hot": "COLORMAP_HOT", "parula": "COLORMAP_PARULA",
    "twilight": "COLORMAP_TWILIGHT", "bone": "COLORMAP_BONE", "ocean": "COLORMAP_OCEAN",
}

#: Diverging colormaps for signed maps: anchors from the negative end through the centre to the
#: positive end (ColorBrewer RdBu / PuOr, reversed so that negative is blue / purple).
DIVERGING_COLORMAPS: dict[str, tuple[str, ...]] = {
    "RdBu_r": ("#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
               "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f"),
    "PuOr_r": ("#2d004b", "#542788", "#8073ac", "#b2abd2", "#d8daeb", "#f7f7f7",
               "#fee0b6", "#fdb863", "#e08214", "#b35806", "#7f3b08"),
}


def is_diverging(cmap: str) -> bool:
    return cmap in DIVERGING_COLORMAPS


def _hex(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def _ramp(anchors: list[tuple[int, int, int]], n: int) -> np.ndarray:
    stops = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(t, stops, [a[c] for a in anchors]) for c in range(3)], axis=1)


def _diverging_lut(anchors: tuple[str, ...]) -> np.ndarray:
    rgb = [_hex(a) for a in anchors]
    mid = len(rgb) // 2
    # Entries 0..127 run to the centre colour, 128..255 start from it: 0 (at 127.5) is neutral either way.
    low, high = _ramp(rgb[: mid + 1], 128), _ramp(rgb[mid:], 128)
    return np.rint(np.concatenate([low, high])).astype(np.uint8)


@lru_cache(maxsize=None)
def colormap_lut(cmap: str) -> np.ndarray:
    """The 256-entry RGB lookup table ``[256, 3] uint8`` of a colormap (OpenCV's or a diverging one)."""
    if cmap in DIVERGING_COLORMAPS:
        lut = _diverging_lut(DIVERGING_COLORMAPS[cmap])
    elif cmap in COLORMAPS:
        import cv2

        ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
        bgr = cv2.applyColorMap(ramp, getattr(cv2, COLORMAPS[cmap]))
        lut = bgr[:, 0, ::-1].copy()
    else:
        raise ValueError(f"unknown cmap {cmap!r}; choose from {', '.join([*COLORMAPS, *DIVERGING_COLORMAPS])}")
    lut.setflags(write=False)
    return lut


def _resize(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    m = np.asarray(m, dtype=np.float32)
    if m.shape == size:
        return m
    return cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def colorize(map_: np.ndarray, *, cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
             size: tuple[int, int] | None = None) -> np.ndarray:
    """Map values to colours: bilinear upsampling to ``size``, clip to [vmin, vmax], LUT -> uint8 RGB."""
    m = _resize(map_, size) if size is not None else np.asarray(map_, dtype=np.float32)
    lo = float(np.min(map_)) if vmin is None else float(vmin)
    hi = float(np.max(map_)) if vmax is None else float(vmax)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    index = np.clip((m - lo) * scale, 0, 255).astype(np.uint8)
    return colormap_lut(cmap)[index]


def overlay(image: np.ndarray, map_: np.ndarray, *, cmap: str = "viridis", alpha: float = 0.5,
            vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Blend ``map_ [h, w]`` (upsampled bilinearly) over ``image [H, W, 3] uint8``.

    ``alpha`` is the weight of the colour map (0: image only, 1: map only). ``vmin`` / ``vmax``
    default to the map's own range (for a signed map pass symmetric limits, see
    :func:`~apinet.render.signed_scale`, and a diverging ``cmap``).
    """
    import cv2

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    colours = colorize(map_, cmap=cmap, vmin=vmin, vmax=vmax, size=image.shape[:2])
    return cv2.addWeighted(colours, float(alpha), image, 1.0 - float(alpha), 0.0)
