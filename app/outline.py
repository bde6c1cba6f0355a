"""The part that tells two SynthBirds sibling classes apart: its mask on each image, its outline on a
map, and whether the map's arg-max points at it (the pointing game of ``apinet.metrics``).

SynthBirds images are a pure function of ``(seed, split, index)``, and ``gallery.json`` (written by
:func:`apinet.data.export_gallery`) records them, so a gallery image is rendered again with its part
masks; the masks are used only when the rendering equals the gallery's pixels. The masks go through
the checkpoint's preprocessing geometry (:func:`apinet.data.contrast_pairs.mask_to_input`), exactly
as :func:`apinet.metrics.evaluate_explanations` scores maps, and a hit is the map's maximum within
15 px of the part at 224 px input (:func:`apinet.metrics.standard_tolerance`).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

__all__ = ["PartMasks", "annotate", "differing_part", "mark", "part_masks", "pointing_hit", "regenerate_masks"]

OUTLINE_COLOUR = (255, 255, 255)  # drawn twice: black underneath, white on top (visible on any map)
_IN_MEMORY_ID = re.compile(r"^(train|val|test)_(\d{4,})_")


@dataclass(frozen=True)
class PartMasks:
    """The differing part's masks on both images, in the network input's pixels, or why there are none."""

    part: str | None
    mask1: np.ndarray | None = None  # bool [H, W] of image A (the explanation's image1)
    mask2: np.ndarray | None = None
    note: str = ""  # why there is no outline ("" when there is one)

    @property
    def ok(self) -> bool:
        return self.mask1 is not None and self.mask2 is not None


def differing_part(class_names, target1: int, target2: int) -> tuple[str | None, str]:
    """The one SynthBirds part in which classes ``target1`` and ``target2`` differ, or ``(None, why)``."""
    from apinet.data import SynthBirds

    if list(class_names or [])[: len(SynthBirds.CLASSES)] != list(SynthBirds.CLASSES) or \
            len(class_names) != len(SynthBirds.CLASSES):
        return None, "the checkpoint's classes are not SynthBirds', so no part masks are known"
    if target1 == target2:
        return None, "A and B are of the same class: no part tells them apart"
    parts = SynthBirds.differing_parts(int(target1), int(target2))
    if len(parts) != 1:
        return None, (f"A's and B's classes differ in {len(parts)} parts ({', '.join(parts)}); "
                      "the outline needs sibling classes, which differ in exactly one")
    return parts[0], ""


def _source(gallery_dir: str, item_id: str) -> tuple[str, int, int, int] | None:
    """``(split, seed, image_size, index)`` that render gallery image ``item_id``, or None."""
    from apinet.data.synthbirds import DEFAULT_IMAGE_SIZE, GENERATOR_VERSION

    manifest = Path(gallery_dir) / "gallery.json"
    if manifest.is_file():
        try:
            meta = json.loads(manifest.read_text())
            if meta.get("dataset") != "synthbirds" or meta.get("generator_version") != GENERATOR_VERSION:
                return None
            entry = next(e for e in meta.get("images", []) if isinstance(e, dict)
                         and Path(str(e.get("file", ""))).stem == item_id)
            split, index = entry["split"], entry["index"]
            seed, size = meta["seed"], meta["image_size"]
            if not (isinstance(split, str) and all(isinstance(v, int) and not isinstance(v, bool)
                                                   for v in (index, seed, size))):
                return None
            return split, seed, size, index
        except (OSError, ValueError, KeyError, StopIteration, TypeError, AttributeError):
            return None
    match = _IN_MEMORY_ID.match(item_id)  # the in-memory gallery (app.gallery._synthbirds_gallery)
    return (match.group(1), 0, DEFAULT_IMAGE_SIZE, int(match.group(2))) if match else None


@st.cache_data(show_spinner=False, max_entries=64)
def regenerate_masks(gallery_dir: str, item_id: str, image_sha: str, part: str, ckpt_path: str,
                     ckpt_sha: str) -> tuple[np.ndarray | None, str]:
    """The mask of ``part`` on gallery image ``item_id`` in the checkpoint's input pixels, or
    ``(None, why)``. ``image_sha`` keys the cache (a changed file renders again)."""
    from PIL import Image

    from apinet.data import SynthBirds
    from apinet.data.contrast_pairs import mask_to_input
    from app import resources

    del image_sha
    source = _source(gallery_dir, item_id)
    if source is None:
        return None, "the gallery does not record how this image was rendered (no SynthBirds seed / index)"
    split, seed, size, index = source
    try:
        sample = SynthBirds(split=split, seed=seed, image_size=size).sample(index)
    except (ValueError, IndexError) as exc:
        return None, f"the image cannot be rendered again ({' '.join(str(exc).split())[:120]})"
    item = resources.load_gallery(gallery_dir).get(item_id)
    if item is None:
        return None, "the image is not in the gallery"
    with Image.open(io.BytesIO(item.data)) as stored:
        same = np.array_equal(np.asarray(stored.convert("RGB")), np.asarray(sample.image.convert("RGB")))
    if not same:
        return None, "rendering the image again from its seed does not give the gallery's pixels"
    pre = resources.load_checkpoint(ckpt_path, ckpt_sha).preprocess
    return mask_to_input(sample.masks[part], pre), ""


def part_masks(ctx) -> PartMasks:
    """The differing part's masks on A and B of the current pair (``ctx``: app.tabs.Context)."""
    from app import config
    from app.state import GALLERY_PREFIX

    e = ctx.expl
    part, why = differing_part(e.class_names, *e.targets)
    if part is None:
        return PartMasks(None, note=why)
    masks = []
    for chosen in (ctx.image_a, ctx.image_b):
        if not chosen.ref.startswith(GALLERY_PREFIX):
            return PartMasks(part, note="an uploaded image has no part masks (only gallery images are rendered again)")
        mask, why = regenerate_masks(str(config.paths_from_env().gallery), chosen.ref[len(GALLERY_PREFIX):],
                                     chosen.sha256, part, ctx.apinet.path, ctx.apinet.sha256)
        if mask is None:
            return PartMasks(part, note=why)
        if mask.shape != e.image1.shape[:2]:
            return PartMasks(part, note=f"the mask ({mask.shape}) does not match the input ({e.image1.shape[:2]})")
        masks.append(mask)
    if not masks[0].any() or not masks[1].any():
        return PartMasks(part, masks[0], masks[1], note=f"the {part} is hidden on "
                         f"{'A' if not masks[0].any() else 'B'} (occluded): nothing to point at")
    return PartMasks(part, masks[0], masks[1])


def argmax_pixel(map_: np.ndarray, shape: tuple[int, int]) -> tuple[int, int]:
    """``(row, col)`` of the maximum of ``map_`` upsampled to ``shape`` (the pointing game's rule)."""
    from apinet.resample import upsample_map

    up = upsample_map(np.asarray(map_, np.float32), shape)
    row, col = np.unravel_index(int(np.argmax(up)), up.shape)
    return int(row), int(col)


def pointing_hit(map_: np.ndarray, mask: np.ndarray) -> bool:
    """The pointing game of ``apinet.metrics`` at the standard tolerance (15 px at 224 px)."""
    from apinet.metrics.localisation import pointing_game, standard_tolerance

    return pointing_game(np.asarray(map_, np.float32), mask, standard_tolerance(mask.shape[0]))


def annotate(overlay: np.ndarray, mask: np.ndarray | None, peak: tuple[int, int] | None = None) -> np.ndarray:
    """``overlay`` with the outline of ``mask`` (black under white) and a cross at ``peak`` (row, col)."""
    import cv2

    out = np.ascontiguousarray(overlay).copy()
    if mask is not None and mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        thick = max(1, round(out.shape[0] / 112))
        cv2.drawContours(out, contours, -1, (0, 0, 0), thick + 1)
        cv2.drawContours(out, contours, -1, OUTLINE_COLOUR, thick)
    if peak is not None:
        size = max(3, out.shape[0] // 20)
        cv2.drawMarker(out, (int(peak[1]), int(peak[0])), (0, 0, 0), cv2.MARKER_CROSS, size + 2, 2)
        cv2.drawMarker(out, (int(peak[1]), int(peak[0])), (255, 255, 0), cv2.MARKER_CROSS, size, 1)
    return out


def outline_toggle(ctx, key: str) -> PartMasks | None:
    """The "Outline the part that differs" toggle; the masks when it is on and they exist, with a
    note in the page saying why not otherwise."""
    from app.text import md

    on = st.toggle("Outline the part that differs", key=key,
                   help="SynthBirds sibling classes differ in exactly one part. Its outline is drawn on the maps "
                        "(white), with the map's maximum (yellow cross): hit when the maximum lies within 15 px of "
                        "the part at 224 px, the pointing game of apinet.metrics.")
    if not on:
        return None
    masks = part_masks(ctx)
    if not masks.ok:
        st.info(f"No outline: {md(masks.note)}.", icon=":material/info:")
        return None
    st.caption(f"Outlined: the **{md(masks.part)}**, the one part in which A's and B's classes differ "
               "(rendered again from the gallery's SynthBirds seed). Hit / miss: the map's maximum (cross) within "
               "15 px of the part at 224 px input.")
    return masks


def hit_word(map_: np.ndarray, mask: np.ndarray) -> str:
    return "hit" if pointing_hit(map_, mask) else "miss"


def mark(overlay: np.ndarray, map_: np.ndarray, masks: PartMasks | None, image: int) -> tuple[np.ndarray, str]:
    """``overlay`` of image ``image`` (1 = A) with the part's outline and ``map_``'s maximum, and the
    caption suffix " · <part>: hit|miss"; unchanged and "" without masks (the toggle is off)."""
    if masks is None:
        return overlay, ""
    mask = masks.mask1 if image == 1 else masks.mask2
    return annotate(overlay, mask, argmax_pixel(map_, mask.shape)), f" · {masks.part}: {hit_word(map_, mask)}"
