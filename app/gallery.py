"""The gallery the pair is chosen from, its feature bank and the paper's pair construction (cached).

The gallery is ``gallery.json`` with its images (``APINET_GALLERY_DIR``), or, without one, SynthBirds
test images rendered in memory. Its feature bank (pooled features of every image, one forward pass
each) is computed once per checkpoint, on the first partner suggestion. An atlas replaces both
(:mod:`app.atlas_source`). Split out of :mod:`app.resources`, which re-exports these names.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st
import torch
from PIL import Image

if TYPE_CHECKING:
    from app.resources import LoadedModel

__all__ = ["MAX_GALLERY_IMAGES", "Gallery", "GalleryItem", "Partners", "feature_bank", "load_gallery", "random_pair",
           "suggest_partners"]

# ----------------------------------------------------------------------------------------------
# Gallery
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GalleryItem:
    id: str
    label: int
    class_name: str
    data: bytes = field(repr=False)  # encoded image (PNG) bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Gallery:
    items: list[GalleryItem]
    classes: list[str]
    source: str  # its name for the caption (never a server path)
    note: str = ""  # what was skipped while reading it (shown on the page)

    def __post_init__(self) -> None:
        self._by_id = {item.id: item for item in self.items}

    def get(self, item_id: str) -> GalleryItem | None:
        return self._by_id.get(item_id)

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    def of_class(self, label: int) -> list[GalleryItem]:
        return [item for item in self.items if item.label == label]

    @property
    def key(self) -> str:
        return hashlib.sha256("".join(item.sha256 for item in self.items).encode()).hexdigest()[:16]


@st.cache_resource(show_spinner=False)
def load_gallery(gallery_dir: str) -> Gallery:
    """``gallery.json`` + images from ``gallery_dir``; without one, 2 SynthBirds test images per class
    rendered in memory (deterministic, the same images ``export_gallery`` writes)."""
    root = Path(gallery_dir)
    manifest = root / "gallery.json"
    if manifest.is_file():
        try:
            return _gallery_from_manifest(root, manifest)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            note = f"{manifest.name} skipped ({' '.join(str(exc).split())[:200]})"
            fallback = _synthbirds_gallery()
            return Gallery(fallback.items, fallback.classes, fallback.source, note=note)
    return _synthbirds_gallery()


def _synthbirds_gallery() -> Gallery:
    from apinet.data import SynthBirds

    dataset = SynthBirds(split="test", per_class=2)
    items = []
    for index in range(len(dataset)):
        sample = dataset.sample(index)
        buffer = io.BytesIO()
        sample.image.save(buffer, format="PNG")
        slug = "".join(c if c.isalnum() else "-" for c in dataset.classes[sample.label].lower())
        items.append(GalleryItem(f"test_{index:04d}_{slug}", sample.label, dataset.classes[sample.label], buffer.getvalue()))
    return Gallery(items, list(dataset.classes), "SynthBirds demo gallery (test split, rendered in memory)")


# ----------------------------------------------------------------------------------------------
# Feature bank and the paper's pair construction
# ----------------------------------------------------------------------------------------------


#: Most images a gallery.json may list (a gallery is a browsing aid, not a dataset).
MAX_GALLERY_IMAGES = 5_000


def _gallery_from_manifest(root: Path, manifest: Path) -> Gallery:
    """Read ``gallery.json`` defensively: it may come from anywhere. Entries with a file outside the
    gallery folder, a missing file, a label that is not a small integer or a non-text class name are
    skipped and counted in ``Gallery.note``; class names are text whatever the JSON held."""
    meta = json.loads(manifest.read_text())
    if not isinstance(meta, dict):
        raise ValueError(f"gallery.json is a JSON {type(meta).__name__}, not an object")
    raw_classes = meta.get("classes") or []
    if not isinstance(raw_classes, list):
        raise ValueError("gallery.json 'classes' is not a list")
    classes = [str(c) for c in raw_classes[:100_000] if isinstance(c, (str, int, float)) and not isinstance(c, bool)]
    entries = meta.get("images") or []
    if not isinstance(entries, list):
        raise ValueError("gallery.json 'images' is not a list")
    items, skipped, real_root = [], 0, root.resolve()
    for entry in entries[:MAX_GALLERY_IMAGES]:
        try:
            file_name, label = entry["file"], entry["label"]
            if not isinstance(file_name, str) or isinstance(label, bool) or not isinstance(label, int):
                raise TypeError
            if not 0 <= label < 100_000:
                raise ValueError
            path = (root / file_name).resolve()
            if real_root not in path.parents or not path.is_file():
                raise ValueError
            name = entry.get("class_name")
            if name is None:
                name = classes[label] if label < len(classes) else str(label)
            if isinstance(name, bool) or not isinstance(name, (str, int, float)):
                raise TypeError
            items.append(GalleryItem(Path(file_name).stem, label, str(name), path.read_bytes()))
        except (KeyError, TypeError, ValueError, OSError):
            skipped += 1
    skipped += max(0, len(entries) - MAX_GALLERY_IMAGES)
    note = f"{skipped} gallery.json entr{'y' if skipped == 1 else 'ies'} skipped (bad or missing file, label or " \
           f"class name)" if skipped else ""
    return Gallery(items, classes, _gallery_name(meta), note=note)


def _gallery_name(meta: dict) -> str:
    """What the page calls a gallery: its own ``name``, else its dataset; never a server path."""
    name = meta.get("name")
    if isinstance(name, str) and name.strip():
        return " ".join(name.split())[:80]
    if meta.get("dataset") == "synthbirds":
        return "SynthBirds demo gallery"
    dataset = meta.get("dataset")
    return f"{' '.join(dataset.split())[:60]} gallery" if isinstance(dataset, str) and dataset.strip() else "Gallery"


def _decode(data: bytes) -> Image.Image:
    from apinet.data import load_image

    return load_image(data)


def _pooled_features(loaded: LoadedModel, images: list[Image.Image]) -> np.ndarray:
    batch = torch.stack([loaded.preprocess(img) for img in images])
    from apinet.explain import model_lock

    with model_lock(loaded.model), torch.inference_mode():
        maps = loaded.model.forward_features(batch)
        return loaded.model.pool_features(maps).float().numpy()


@st.cache_resource(show_spinner=False, max_entries=4)
def feature_bank(ckpt_path: str, sha256: str, gallery_dir: str, gallery_key: str) -> np.ndarray:
    """Globally pooled features ``[N, D]`` of every gallery image, computed once per checkpoint."""
    del gallery_key  # cache key only: the gallery's content
    from app.resources import load_checkpoint  # resources imports this module

    loaded = load_checkpoint(ckpt_path, sha256)
    gallery = load_gallery(gallery_dir)
    images = [_decode(item.data) for item in gallery.items]
    chunks = [_pooled_features(loaded, images[i : i + 32]) for i in range(0, len(images), 32)]
    return np.concatenate(chunks) if chunks else np.zeros((0, loaded.model.feature_dim), np.float32)


@dataclass(frozen=True)
class Partners:
    label: int  # class of image A used for mining (true label, or the prediction for an upload)
    label_is_prediction: bool
    intra: str | None  # gallery id of the nearest same-class image
    inter: str | None  # gallery id of the nearest other-class image
    intra_distance: float
    inter_distance: float


def suggest_partners(
    loaded: LoadedModel, bank: np.ndarray, gallery: Gallery, data: bytes, gallery_id: str | None
) -> Partners:
    """API-Net's pair construction applied to the gallery: for image A, the nearest same-class and
    the nearest other-class gallery image by squared Euclidean distance of pooled features
    (:func:`apinet.pairs.suggest_partners` on the bank, with A as a query when it is an upload)."""
    from apinet.pairs import suggest_partners as choose

    if hasattr(gallery, "partners"):  # an atlas (app.atlas_source.AtlasGallery): one query, never N x N
        return gallery.partners(loaded, data, gallery_id)
    labels = [item.label for item in gallery.items]
    if gallery_id is not None and gallery.get(gallery_id) is not None:
        index = gallery.ids.index(gallery_id)
        label, predicted = labels[index], False
        choice = choose(bank, labels, index)
    else:
        feature = _pooled_features(loaded, [_decode(data)])
        with torch.inference_mode():
            label = int(loaded.model.forward_head(torch.from_numpy(feature)).argmax(1))
        predicted = True
        choice = choose(bank, labels, 0, query=feature[0], query_label=label)
    return Partners(
        label=label,
        label_is_prediction=predicted,
        intra=gallery.items[choice.intra].id if choice.intra is not None else None,
        inter=gallery.items[choice.inter].id if choice.inter is not None else None,
        intra_distance=choice.intra_distance,
        inter_distance=choice.inter_distance,
    )


def random_pair(gallery: Gallery, rng: random.Random) -> tuple[str, str]:
    """Two different gallery images; half the time of the same class (an intra pair)."""
    first = rng.choice(gallery.items)
    same = [it for it in gallery.of_class(first.label) if it.id != first.id]
    others = [it for it in gallery.items if it.label != first.label]
    pool = same if (same and (rng.random() < 0.5 or not others)) else (others or same)
    second = rng.choice(pool) if pool else first
    return first.id, second.id
