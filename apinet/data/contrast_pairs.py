"""Contrast pairs with ground truth: image pairs of two classes, and where in each image the part that
tells the two classes apart is, in the preprocessed network input's pixels.

* :func:`synthbirds_pairs`: SynthBirds sibling pairs (classes that differ in exactly one part),
  scored against the part's pixel mask.
* :func:`cub_pairs`: CUB-200-2011, each species with its nearest species by annotated attributes,
  scored against the keypoints of the body region they differ in most.

Both yield :class:`ScoredPair` records; :func:`mask_to_input`, :func:`to_input_xy`,
:func:`points_to_mask` and :func:`box_to_mask` carry annotations through a
:class:`~apinet.data.transforms.Preprocess` geometry (resize, then centre crop).
``apinet.metrics.evaluate_explanations`` scores explanation maps on them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ScoredPair", "box_to_mask", "cub_pairs", "mask_to_input", "points_to_mask", "synthbirds_pairs",
           "to_input_xy"]


def mask_to_input(mask: np.ndarray, preprocess) -> np.ndarray:
    """Apply the preprocessing geometry (resize -- square or shorter side -- then centre crop) to a mask."""
    from PIL import Image

    h, w = mask.shape
    nw, nh, left, top = preprocess.geometry(w, h)
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    if (nh, nw) != (h, w):
        img = img.resize((nw, nh), Image.NEAREST)
    img = img.crop((left, top, left + preprocess.input_size, top + preprocess.input_size))
    return np.asarray(img) > 127


def to_input_xy(x: float, y: float, size: tuple[int, int], pre) -> tuple[float, float]:
    """A point ``(x, y)`` of a ``size = (w, h)`` image in the preprocessed input's pixel coordinates."""
    w, h = size
    nw, nh, left, top = pre.geometry(w, h)
    return x * nw / w - left, y * nh / h - top


@dataclass
class ScoredPair:
    """One image pair with, for each image, where the part that tells the two classes apart is."""

    image1: Any  # PIL images
    image2: Any
    classes: tuple[int, int]
    indices: tuple[int, int]  # dataset indices
    region: str  # SynthBirds part / CUB body region
    masks: tuple[np.ndarray, np.ndarray]  # bool [input, input] each (may be empty: part not visible)
    objects: tuple[np.ndarray, np.ndarray]  # bool [input, input]: the visible bird (CUB: its box)
    centres: tuple[tuple[float, float], tuple[float, float]]  # (x, y) of the bird box's centre, input pixels


def synthbirds_pairs(data, pre, pairs: int) -> Iterator[ScoredPair]:
    """Pair p: sibling class pair p mod 19 (classes that differ in exactly one part), image p // 19."""
    from .synthbirds import SynthBirds

    siblings = SynthBirds.sibling_pairs()
    if pairs > len(siblings) * data.per_class:
        raise ValueError(f"at most {len(siblings) * data.per_class} sibling pairs in the {data.split} split, "
                         f"asked for {pairs}")
    for p in range(pairs):
        a, b, part = siblings[p % len(siblings)]
        rnd = p // len(siblings)
        ia, ib = rnd * data.num_classes + a, rnd * data.num_classes + b
        sa, sb = data.sample(ia), data.sample(ib)
        centres = tuple(to_input_xy((s.box[0] + s.box[2]) / 2, (s.box[1] + s.box[3]) / 2, s.image.size, pre)
                        for s in (sa, sb))
        yield ScoredPair(sa.image, sb.image, (a, b), (ia, ib), part,
                          (mask_to_input(sa.masks[part], pre), mask_to_input(sb.masks[part], pre)),
                          (mask_to_input(sa.masks["bird"], pre), mask_to_input(sb.masks["bird"], pre)),
                          centres)  # type: ignore[arg-type]


def cub_pairs(data, pre, pairs: int, radius: float) -> Iterator[ScoredPair]:
    """Each class a with the class b whose annotated attributes are closest (L1 over all 312), image
    k of each; the target region is the body region in which a and b differ most
    (:func:`~apinet.data.cub.attribute_region_distances`), located by disks of ``radius`` input
    pixels around its visible part keypoints. Pair p: class p mod C, image p // C."""
    from .cub import ATTRIBUTE_REGIONS, attribute_region_distances, read_class_attributes

    attributes = read_class_attributes(data.root)
    n_classes = len(data.classes)
    if attributes.values.shape[0] != n_classes:
        raise ValueError(f"CUB attributes describe {attributes.values.shape[0]} classes, the dataset has {n_classes}")
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(data.labels):
        by_class.setdefault(label, []).append(index)
    distance = np.abs(attributes.values[:, None, :] - attributes.values[None, :, :]).sum(-1)
    np.fill_diagonal(distance, np.inf)
    plan = []
    for rnd in range(max((len(v) for v in by_class.values()), default=0)):
        for a in range(n_classes):
            b = int(np.argmin(distance[a]))
            if rnd < len(by_class.get(a, ())) and rnd < len(by_class.get(b, ())):
                plan.append((a, b, by_class[a][rnd], by_class[b][rnd]))
    if pairs > len(plan):
        raise ValueError(f"at most {len(plan)} CUB pairs in the {data.split} split, asked for {pairs}")
    for a, b, ia, ib in plan[:pairs]:
        regions = attribute_region_distances(attributes, a, b)
        region = max(regions, key=regions.get)
        images, masks, objects, centres = [], [], [], []
        for index in (ia, ib):
            image = data.load_pil(index)
            points = [xy for name, xy in data.parts(index).items() if name in ATTRIBUTE_REGIONS[region]]
            images.append(image)
            masks.append(points_to_mask(points, image.size, pre, radius))
            x0, y0, x1, y1 = data.box(index)
            objects.append(box_to_mask((x0, y0, x1, y1), image.size, pre))
            centres.append(to_input_xy((x0 + x1) / 2, (y0 + y1) / 2, image.size, pre))
        yield ScoredPair(images[0], images[1], (a, b), (ia, ib), region, (masks[0], masks[1]),
                          (objects[0], objects[1]), (centres[0], centres[1]))


def points_to_mask(points: Sequence[tuple[float, float]], size: tuple[int, int], pre, radius: float) -> np.ndarray:
    """The input pixels of ``(x, y)`` points of a ``size = (w, h)`` image, in the preprocessed input's
    geometry (:meth:`Preprocess.geometry <apinet.data.transforms.Preprocess.geometry>`): with
    ``radius = 0`` the pixel each point falls in, else disks of ``radius`` around the points."""
    yy, xx = np.mgrid[0:pre.input_size, 0:pre.input_size]
    mask = np.zeros((pre.input_size, pre.input_size), dtype=bool)
    for x, y in points:
        px, py = to_input_xy(x, y, size, pre)
        if radius <= 0:
            col, row = math.floor(px), math.floor(py)
            if 0 <= row < pre.input_size and 0 <= col < pre.input_size:
                mask[row, col] = True
            continue
        # pixel (col, row) covers [col, col + 1): its centre is col + 0.5
        mask |= (xx - (px - 0.5)) ** 2 + (yy - (py - 0.5)) ** 2 <= radius ** 2
    return mask


def box_to_mask(box: tuple[float, float, float, float], size: tuple[int, int], pre) -> np.ndarray:
    """The input pixels whose centres lie inside box ``(x0, y0, x1, y1)`` of a ``size = (w, h)`` image."""
    (x0, y0), (x1, y1) = to_input_xy(box[0], box[1], size, pre), to_input_xy(box[2], box[3], size, pre)
    centres = np.arange(pre.input_size) + 0.5
    cols = (centres >= x0) & (centres < x1)
    rows = (centres >= y0) & (centres < y1)
    return rows[:, None] & cols[None, :]
