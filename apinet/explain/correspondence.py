"""Where does this part match? Cosine similarity of one position's feature vector to every position
of the partner image.

The explanation keeps API-Net's last feature maps of both images as unit vectors
(``PairExplanation.unit_features1/2``, ``[h, w, D]`` float16: each position's D-vector divided by its
L2 norm; a position whose features are all zero stays zero). :func:`correspondence_map` is then one
``[h*w, D] x [D]`` product, well under a millisecond at 14 x 14 x 2048 (benchmarks/RESULTS.md). The
float16 storage bounds the similarity's error by about 1e-3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._util import upsample

__all__ = ["CorrespondenceMap", "correspondence_map", "feature_cell", "start_cell", "unit_vectors"]


def unit_vectors(features: np.ndarray) -> np.ndarray:
    """``[D, h, w]`` feature maps -> ``[h, w, D]`` float16 unit vectors (zero vectors stay zero)."""
    f = np.moveaxis(np.asarray(features, dtype=np.float32), 0, -1)
    norm = np.linalg.norm(f, axis=-1, keepdims=True)
    return (f / np.maximum(norm, 1e-12)).astype(np.float16)


@dataclass
class CorrespondenceMap:
    """Cosine similarity of image ``source``'s feature vector at ``(row, col)`` to every position of
    image ``target`` (the partner)."""

    similarity: np.ndarray  # [h, w] float32 in [-1, 1] (ReLU features: [0, 1]), on image ``target``
    source: int  # the image that was clicked (1 or 2)
    target: int  # the image the map lies on
    row: int  # the clicked feature cell
    col: int
    best: tuple[int, int]  # the most similar cell of ``target`` (ties: the first in row-major order)
    size: tuple[int, int]  # display size (H, W)
    label: str = ""

    signed = True

    @property
    def raw(self) -> np.ndarray:
        return self.similarity

    @property
    def display(self) -> np.ndarray:
        """``[H, W]``: the similarity bilinearly upsampled to the input size (computed on access)."""
        return upsample(self.similarity, self.size)


def _units(expl, image: int) -> np.ndarray:
    units = expl.unit_features1 if image == 1 else expl.unit_features2
    if units is None:
        raise ValueError("this explanation keeps no feature vectors (made before correspondence maps existed)")
    return units


def feature_cell(expl, y: float, x: float) -> tuple[int, int]:
    """The feature cell ``(row, col)`` under display pixel ``(y, x)`` of either image (same size)."""
    h, w = _units(expl, 1).shape[:2]
    big_h, big_w = expl.image1.shape[:2]
    row = int(np.clip(np.floor(float(y) * h / big_h), 0, h - 1))
    col = int(np.clip(np.floor(float(x) * w / big_w), 0, w - 1))
    return row, col


def correspondence_map(expl, image: int, row: int, col: int) -> CorrespondenceMap:
    """Cosine similarity of image ``image``'s (1 or 2) feature vector at cell ``(row, col)`` to every
    cell of the other image; ``correspondence_map(expl, 2, r, c)`` is the reverse direction."""
    if image not in (1, 2):
        raise ValueError(f"image must be 1 or 2, got {image!r}")
    source, target = _units(expl, image), _units(expl, 3 - image)
    h, w, d = source.shape
    if not (0 <= int(row) < h and 0 <= int(col) < w):
        raise ValueError(f"cell ({row}, {col}) is outside the {h} x {w} feature map")
    query = source[int(row), int(col)].astype(np.float32)
    sim = (target.reshape(-1, d).astype(np.float32) @ query).reshape(target.shape[:2])
    best = np.unravel_index(int(np.argmax(sim)), sim.shape)
    size = tuple(int(s) for s in expl.image1.shape[:2])
    return CorrespondenceMap(
        similarity=sim.astype(np.float32), source=image, target=3 - image, row=int(row), col=int(col),
        best=(int(best[0]), int(best[1])), size=size,  # type: ignore[arg-type]
        label=f"cosine similarity of image {image}'s feature at cell ({row}, {col}) to image {3 - image}")


def start_cell(expl, image: int) -> tuple[int, int]:
    """A cell of image ``image`` worth starting from: where its exact pair-path self map (its own class's
    logit per position) is largest, so the object rather than the background; without exact maps, the
    cell whose best match on the partner is the most similar (ties: the first in row-major order)."""
    units = _units(expl, image)
    h, w, d = units.shape
    exact = (getattr(expl, "exact_cams", None) or {}).get(f"{image}_self")
    raw = getattr(exact, "raw", exact)
    if isinstance(raw, np.ndarray) and raw.shape == (h, w) and np.isfinite(raw).all():
        best = np.unravel_index(int(np.argmax(raw)), raw.shape)
        return int(best[0]), int(best[1])
    partner = _units(expl, 3 - image).reshape(-1, d).astype(np.float32)
    sim = units.reshape(-1, d).astype(np.float32) @ partner.T
    best = np.unravel_index(int(np.argmax(sim.max(axis=1))), (h, w))
    return int(best[0]), int(best[1])
