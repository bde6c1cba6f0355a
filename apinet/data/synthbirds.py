"""SynthBirds: a procedurally generated fine-grained bird dataset that ships as code.

Why it exists: API-Net is about telling apart classes that differ in one small part. SynthBirds
makes that explicit: every class is a combination of part attributes (crown colour, beak shape and
colour, eye ring, wing bars, tail shape, breast pattern), and many class pairs ("siblings") differ in
exactly one part, so the part that *should* discriminate a pair is known. Every image comes with
per-part visibility masks and the bird's box, so explanations can be scored (pointing game, ...).

Everything else is nuisance that must not give the class away: body colour (a palette shared by all
classes), pose (rotation, flip, scale, position), cluttered backgrounds that reuse the attribute
colours, occluding leaves and branches, noise.

Images are a pure function of ``(seed, split, index)``: each item has its own random generator, so
items are identical whatever order (or worker process) renders them. They are drawn at twice the
output size and box-downsampled (anti-aliasing); part masks are drawn with the same polygons into an
id map and downsampled with the same 2x2 blocks (plurality vote), so masks line up with the pixels.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
from PIL import Image, ImageDraw

from apinet._io import atomic_write
from apinet.data.images import load_image

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_PER_CLASS",
    "GENERATOR_VERSION",
    "MASK_NAMES",
    "PARTS",
    "PART_DEBUG_COLOURS",
    "SPLITS",
    "SynthBirds",
    "SynthBirdsSample",
    "export_gallery",
]

#: Discriminative parts; every class is defined by one attribute value per part.
PARTS: tuple[str, ...] = ("crown", "beak", "eye", "wing", "tail", "breast")
#: Keys of :attr:`SynthBirdsSample.masks`: the parts plus "bird" (every visible bird pixel,
#: including head, body and legs, which carry no class information).
MASK_NAMES: tuple[str, ...] = PARTS + ("bird",)
#: Split name -> stream id mixed into each item's seed, so splits never share an image.
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
#: Images per class and split: 2,000 / 400 / 800 images for the 20 classes, so a training epoch on
#: two CPU cores takes seconds to render.
DEFAULT_PER_CLASS: dict[str, int] = {"train": 100, "val": 20, "test": 40}
DEFAULT_IMAGE_SIZE = 128
#: Bumped whenever rendering changes, so on-disk caches of an older generator are not reused.
GENERATOR_VERSION = 1
#: Flat colours used by ``sample(i, debug=True)``; the background and occluders are black.
PART_DEBUG_COLOURS: dict[str, tuple[int, int, int]] = {
    "crown": (255, 0, 0),
    "beak": (0, 255, 0),
    "eye": (0, 0, 255),
    "wing": (255, 255, 0),
    "tail": (255, 0, 255),
    "breast": (0, 255, 255),
    "bird": (128, 128, 128),
}

_SUPERSAMPLE = 2
_BACKGROUND_ID = 0
_PART_ID = {part: i + 1 for i, part in enumerate(PARTS)}
_OTHER_BIRD_ID = len(PARTS) + 1  # head, body, legs
_NUM_IDS = len(PARTS) + 2
_DEBUG_BY_ID = [(0, 0, 0)] + [PART_DEBUG_COLOURS[p] for p in PARTS] + [PART_DEBUG_COLOURS["bird"]]

RGB = tuple[int, int, int]

# ---------------------------------------------------------------------------------------------
# Class table
# ---------------------------------------------------------------------------------------------

_CROWN_COLOURS: dict[str, RGB] = {
    "red": (205, 38, 36), "yellow": (242, 200, 40), "blue": (48, 92, 205), "black": (28, 26, 26),
}
_BEAK_COLOURS: dict[str, RGB] = {"black": (35, 32, 30), "yellow": (238, 196, 48), "orange": (236, 122, 32)}
_RING_COLOURS: dict[str, RGB] = {"white": (244, 244, 238), "yellow": (242, 206, 44)}
_BAR_COLOURS: dict[str, RGB] = {"white": (240, 240, 232), "yellow": (240, 204, 52)}
# Shared by all classes: earthy, desaturated, never close to an attribute colour.
_BODY_PALETTE: tuple[RGB, ...] = (
    (133, 104, 78), (118, 116, 108), (112, 116, 78), (168, 146, 112), (94, 102, 116),
    (146, 98, 74), (98, 86, 74), (150, 150, 140), (124, 110, 96),
)
_SKY = ((170, 200, 230), (200, 215, 230), (150, 180, 200), (215, 210, 190))
_FOLIAGE = ((90, 130, 70), (120, 150, 80), (60, 100, 60), (150, 170, 100), (70, 110, 90))
_EARTH = ((160, 140, 110), (120, 100, 80), (190, 180, 160), (100, 90, 70))
# Berries and flowers in the attribute colours, so "red somewhere" is not "red crown".
_DISTRACTORS = (
    _CROWN_COLOURS["red"], _CROWN_COLOURS["yellow"], _CROWN_COLOURS["blue"], (240, 240, 235),
    (30, 28, 28), _BEAK_COLOURS["orange"],
)


@dataclass(frozen=True)
class _Species:
    name: str
    crown: str  # a _CROWN_COLOURS key, or "plain" (same colour as the head)
    beak_shape: str  # short | long | hooked
    beak_colour: str
    eye_ring: str  # none | white | yellow
    wing_bars: int  # 0, 1 or 2
    bar_colour: str  # "" when wing_bars == 0
    tail: str  # forked | rounded | long
    breast: str  # plain | spotted | streaked

    def attributes(self) -> dict[str, str]:
        bars = ("no bars", f"one {self.bar_colour} bar", f"two {self.bar_colour} bars")[self.wing_bars]
        return {
            "crown": self.crown,
            "beak": f"{self.beak_shape} {self.beak_colour}",
            "eye": "no ring" if self.eye_ring == "none" else f"{self.eye_ring} ring",
            "wing": bars,
            "tail": self.tail,
            "breast": self.breast,
        }


# Four genera of five species. Within a genus, species are a 2x2 grid over two parts plus one more
# variant (or a star around a base species), so most genus-mates differ in exactly one part, and
# every part is the only difference for at least one pair. Genera differ in 3+ parts.
_SPECIES: tuple[_Species, ...] = (
    _Species("Red-crowned Finch", "red", "short", "black", "none", 1, "white", "forked", "plain"),
    _Species("Golden-crowned Finch", "yellow", "short", "black", "none", 1, "white", "forked", "plain"),
    _Species("Double-barred Finch", "red", "short", "black", "none", 2, "white", "forked", "plain"),
    _Species("Golden Double-barred Finch", "yellow", "short", "black", "none", 2, "white", "forked", "plain"),
    _Species("Spectacled Finch", "red", "short", "black", "white", 1, "white", "forked", "plain"),
    _Species("Streaked Warbler", "plain", "long", "black", "none", 0, "", "rounded", "streaked"),
    _Species("Yellow-billed Warbler", "plain", "long", "yellow", "none", 0, "", "rounded", "streaked"),
    _Species("Plain-breasted Warbler", "plain", "long", "black", "none", 0, "", "rounded", "plain"),
    _Species("Yellow-billed Plain Warbler", "plain", "long", "yellow", "none", 0, "", "rounded", "plain"),
    _Species("Fork-tailed Warbler", "plain", "long", "black", "none", 0, "", "forked", "streaked"),
    _Species("Black-capped Shrike", "black", "hooked", "black", "none", 1, "white", "long", "plain"),
    _Species("Ringed Shrike", "black", "hooked", "black", "yellow", 1, "white", "long", "plain"),
    _Species("Blue-capped Shrike", "blue", "hooked", "black", "none", 1, "white", "long", "plain"),
    _Species("Blue-capped Ringed Shrike", "blue", "hooked", "black", "yellow", 1, "white", "long", "plain"),
    _Species("Spotted Shrike", "black", "hooked", "black", "none", 1, "white", "long", "spotted"),
    _Species("Spotted Flycatcher", "plain", "short", "orange", "white", 2, "yellow", "long", "spotted"),
    _Species("Red-crowned Flycatcher", "red", "short", "orange", "white", 2, "yellow", "long", "spotted"),
    _Species("Hook-billed Flycatcher", "plain", "hooked", "orange", "white", 2, "yellow", "long", "spotted"),
    _Species("Fork-tailed Flycatcher", "plain", "short", "orange", "white", 2, "yellow", "forked", "spotted"),
    _Species("Single-barred Flycatcher", "plain", "short", "orange", "white", 1, "yellow", "long", "spotted"),
)


# ---------------------------------------------------------------------------------------------
# Public dataclass and dataset
# ---------------------------------------------------------------------------------------------


@dataclass
class SynthBirdsSample:
    """One rendered SynthBirds item with its annotations."""

    image: Image.Image  # RGB, image_size x image_size
    label: int
    masks: dict[str, np.ndarray]  # MASK_NAMES -> bool (H, W): visible pixels of that part
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1), x1/y1 exclusive: whole bird, occluded parts too


class SynthBirds:
    """The SynthBirds dataset: ``(seed, split, index) -> (image, label)``, rendered on the fly.

    Args:
        split: "train", "val" or "test"; each split draws from its own random stream.
        seed: dataset seed; another seed gives another, equally valid, dataset.
        image_size: output side in pixels (square images).
        per_class: images per class; defaults to ``DEFAULT_PER_CLASS[split]``.
        transform: applied to the PIL image in ``__getitem__``.
        cache_dir: if given, rendered images are stored there as PNG and read back next time
            (masks are always re-rendered by :meth:`sample`).

    Labels are interleaved (``label = index % num_classes``), so any prefix is class-balanced and
    ``labels`` is known without rendering.
    """

    CLASS_ATTRIBUTES: ClassVar[dict[str, dict[str, str]]] = {s.name: s.attributes() for s in _SPECIES}
    CLASSES: ClassVar[tuple[str, ...]] = tuple(s.name for s in _SPECIES)

    def __init__(
        self,
        split: str = "train",
        seed: int = 0,
        image_size: int = DEFAULT_IMAGE_SIZE,
        per_class: int | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"SynthBirds split must be one of {sorted(SPLITS)}, got {split!r}")
        if image_size < 32:
            raise ValueError(f"SynthBirds image_size must be >= 32 (parts vanish below), got {image_size}")
        if int(seed) < 0:
            raise ValueError(f"SynthBirds seed must be >= 0, got {seed}")
        per_class = DEFAULT_PER_CLASS[split] if per_class is None else int(per_class)
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        self.split = split
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.per_class = per_class
        self.transform = transform
        self.name = f"synthbirds:{self.seed}"
        self.classes: list[str] = list(self.CLASSES)
        self.labels: list[int] = [i % len(self.classes) for i in range(per_class * len(self.classes))]
        self.cache_dir = None if cache_dir is None else (
            Path(cache_dir) / f"synthbirds-v{GENERATOR_VERSION}-seed{self.seed}-{self.image_size}px" / split
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.load_pil(index)
        label = self.labels[self._check_index(index)]
        return (self.transform(image) if self.transform is not None else image), label

    def __repr__(self) -> str:
        return (f"SynthBirds(split={self.split!r}, seed={self.seed}, image_size={self.image_size}, "
                f"per_class={self.per_class}, n={len(self)})")

    def load_pil(self, index: int) -> Image.Image:
        """The untransformed RGB image of item ``index`` (from the cache when there is one)."""
        index = self._check_index(index)
        if self.cache_dir is None:
            return self._render(index, debug=False)[0]
        path = self.cache_dir / f"{index:06d}.png"
        if path.is_file():
            return load_image(path)
        image = self._render(index, debug=False)[0]
        _atomic_save_png(image, path)
        return image

    def sample(self, index: int, *, debug: bool = False) -> SynthBirdsSample:
        """Render item ``index`` with its label, part masks and bird box.

        ``debug=True`` renders the very same geometry (same random stream) with every part in its
        flat :data:`PART_DEBUG_COLOURS` colour on black and no noise: a way to check masks by eye or
        in tests.
        """
        index = self._check_index(index)
        image, ids_before, occluded = self._render(index, debug)
        masks, box = _annotations(ids_before, occluded, self.image_size)
        return SynthBirdsSample(image=image, label=self.labels[index], masks=masks, box=box)

    @classmethod
    def differing_parts(cls, class_a: int, class_b: int) -> list[str]:
        """Parts (in :data:`PARTS` order) whose attribute differs between two classes."""
        attrs_a = cls.CLASS_ATTRIBUTES[cls.CLASSES[class_a]]
        attrs_b = cls.CLASS_ATTRIBUTES[cls.CLASSES[class_b]]
        return [part for part in PARTS if attrs_a[part] != attrs_b[part]]

    @classmethod
    def sibling_pairs(cls) -> list[tuple[int, int, str]]:
        """Class pairs ``(a, b, part)`` with ``a < b`` that differ in exactly one part."""
        pairs = []
        for a in range(len(cls.CLASSES)):
            for b in range(a + 1, len(cls.CLASSES)):
                parts = cls.differing_parts(a, b)
                if len(parts) == 1:
                    pairs.append((a, b, parts[0]))
        return pairs

    def _render(self, index: int, debug: bool) -> tuple[Image.Image, np.ndarray, np.ndarray]:
        # One generator per item, seeded by (seed, split, index): order- and worker-independent.
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index, GENERATOR_VERSION])
        return _render(_SPECIES[self.labels[index]], rng, self.image_size, debug)

    def _check_index(self, index: int) -> int:
        n = len(self.labels)
        if not -n <= index < n:
            raise IndexError(f"SynthBirds index {index} out of range for {n} items")
        return index % n


def export_gallery(
    out_dir: str | os.PathLike,
    per_class: int = 2,
    split: str = "test",
    *,
    seed: int = 0,
    image_size: int = DEFAULT_IMAGE_SIZE,
) -> list[dict[str, Any]]:
    """Write ``per_class`` images per class as PNG plus ``gallery.json`` describing them.

    Returns the list of entries written to ``gallery.json["images"]``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = SynthBirds(split=split, seed=seed, image_size=image_size)
    wanted = len(dataset.classes) * min(per_class, dataset.per_class)  # labels are interleaved
    entries = []
    for index in range(wanted):
        sample = dataset.sample(index)
        class_name = dataset.classes[sample.label]
        file_name = f"{split}_{index:04d}_{_slug(class_name)}.png"
        sample.image.save(out / file_name, optimize=True)
        entries.append({
            "file": file_name, "label": sample.label, "class_name": class_name,
            "split": split, "index": index, "box": list(sample.box),
        })
    manifest = {
        "dataset": "synthbirds", "seed": seed, "image_size": image_size,
        "generator_version": GENERATOR_VERSION, "classes": dataset.classes, "images": entries,
    }
    (out / "gallery.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return entries


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _atomic_save_png(image: Image.Image, path: Path) -> None:
    """Write then rename, so parallel DataLoader workers never read a half-written cache file."""
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
# Bird geometry lives in a local frame: unit = bird scale, facing +x, y pointing down. Every shape
# is a polygon in that frame, so one affine map (flip, rotate, scale, translate) places the whole
# bird and the same polygons feed both the colour image and the part-id map.


@lru_cache(maxsize=None)
def _unit_circle(vertices: int = 28) -> np.ndarray:
    angle = np.linspace(0.0, 2.0 * np.pi, vertices, endpoint=False)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _ellipse(
    cx: float, cy: float, rx: float, ry: float, tilt_deg: float = 0.0, vertices: int = 28
) -> np.ndarray:
    points = _unit_circle(vertices) * (rx, ry)
    return _rotate(points, tilt_deg) + (cx, cy)


def _rotate(points: np.ndarray, degrees: float, about: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    # Element-wise on purpose: a BLAS matmul may round differently across CPUs, and a vertex moved
    # by one ulp can flip an edge pixel, breaking byte-identical renders.
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    x, y = points[:, 0] - about[0], points[:, 1] - about[1]
    out = np.empty((len(points), 2))
    out[:, 0] = x * c - y * s + about[0]
    out[:, 1] = x * s + y * c + about[1]
    return out


def _leaf(length: float, width: float) -> np.ndarray:
    """Lens-shaped leaf along +x centred at the origin."""
    t = np.linspace(-0.5, 0.5, 9)
    upper = np.stack([t * length, -0.5 * width * np.cos(np.pi * t)], axis=1)
    lower = upper[-2:0:-1] * (1, -1)
    return np.concatenate([upper, lower])


def _jitter(rng: np.random.Generator, colour: Sequence[int], amount: int) -> RGB:
    offsets = rng.integers(-amount, amount + 1, size=3).tolist()
    return tuple(min(255, max(0, int(c) + d)) for c, d in zip(colour, offsets))  # type: ignore[return-value]


def _scale_colour(colour: Sequence[int], factor: float) -> RGB:
    return tuple(int(min(255, max(0, round(c * factor)))) for c in colour)  # type: ignore[return-value]


def _mix(a: Sequence[int], b: Sequence[int], t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


@dataclass
class _Shape:
    points: np.ndarray  # (n, 2) polygon, local frame until placed
    colour: RGB
    part_id: int


_HEAD = (0.29, -0.15, 0.125)  # centre x, y, radius
_EYE = (0.335, -0.14)
_TAIL_ANCHOR = (-0.22, -0.02)
_BEAKS = {
    "short": np.array([(0.385, -0.168), (0.50, -0.125), (0.385, -0.092)]),
    "long": np.array([(0.385, -0.152), (0.61, -0.127), (0.612, -0.120), (0.385, -0.104)]),
    # Longer than "short", with the upper mandible curling down past the lower one.
    "hooked": np.array([(0.385, -0.175), (0.47, -0.172), (0.53, -0.150), (0.555, -0.115),
                        (0.545, -0.082), (0.528, -0.098), (0.51, -0.116), (0.385, -0.090)]),
}
_TAILS = {
    # Swallow tail: two narrow prongs around a deep notch, unmistakable next to "rounded" at 128 px.
    "forked": np.array([(0.0, -0.05), (-0.34, -0.135), (-0.30, -0.08), (-0.14, 0.0),
                        (-0.30, 0.08), (-0.34, 0.135), (0.0, 0.05)]),
    "rounded": np.concatenate([
        [(0.0, -0.045)],
        0.23 * np.stack([np.cos(np.radians(np.linspace(208, 152, 9))),
                         np.sin(np.radians(np.linspace(208, 152, 9)))], axis=1),
        [(0.0, 0.045)],
    ]),
    "long": np.array([(0.0, -0.036), (-0.42, -0.03), (-0.46, 0.0), (-0.42, 0.03), (0.0, 0.036)]),
}


def _bird_colours(rng: np.random.Generator, species: _Species) -> dict[str, RGB]:
    body = _jitter(rng, _BODY_PALETTE[rng.integers(len(_BODY_PALETTE))], 14)
    body = _scale_colour(body, rng.uniform(0.9, 1.1))
    head = _scale_colour(body, rng.uniform(0.94, 1.08))
    return {
        "body": body,
        "head": head,
        "wing": _scale_colour(body, rng.uniform(0.66, 0.8)),
        "wing_tip": _scale_colour(body, rng.uniform(0.45, 0.55)),
        "tail": _scale_colour(body, rng.uniform(0.58, 0.74)),
        "breast": _mix(body, (236, 228, 214), rng.uniform(0.35, 0.6)),
        "pattern": _jitter(rng, (54, 42, 34), 10),
        "legs": _jitter(rng, ((80, 70, 60), (170, 130, 120))[rng.integers(2)], 10),
        "crown": head if species.crown == "plain" else _jitter(rng, _CROWN_COLOURS[species.crown], 10),
        "beak": _jitter(rng, _BEAK_COLOURS[species.beak_colour], 10),
        "ring": head if species.eye_ring == "none" else _jitter(rng, _RING_COLOURS[species.eye_ring], 8),
        "bar": _jitter(rng, _BAR_COLOURS.get(species.bar_colour, (0, 0, 0)), 8),
    }


def _bird_shapes(rng: np.random.Generator, species: _Species, colours: dict[str, RGB]) -> list[_Shape]:
    """All bird polygons in painting order (later shapes cover earlier ones)."""
    other, part = _OTHER_BIRD_ID, _PART_ID
    tail = _rotate(_TAILS[species.tail], rng.uniform(-12, 12)) + _TAIL_ANCHOR
    body_ry = 0.18 * rng.uniform(0.92, 1.08)
    shapes = [_Shape(tail, colours["tail"], part["tail"])]
    for foot_x in (0.03, 0.11):  # legs: thin quads down to the perch
        leg = np.array([(-0.012, 0.12), (0.012, 0.12), (0.002, 0.27), (-0.022, 0.27)]) + (foot_x, 0)
        shapes.append(_Shape(leg, colours["legs"], other))
        toes = np.array([(-0.06, 0.265), (0.05, 0.265), (0.05, 0.285), (-0.06, 0.285)]) + (foot_x, 0)
        shapes.append(_Shape(toes, colours["legs"], other))
    shapes.append(_Shape(_ellipse(0.0, 0.0, 0.30, body_ry), colours["body"], other))
    breast = _ellipse(0.13, 0.05, 0.15, 0.11 * body_ry / 0.18)
    shapes.append(_Shape(breast, colours["breast"], part["breast"]))
    shapes += _breast_pattern(rng, species.breast, colours["pattern"], body_ry)
    shapes += _wing(rng, species, colours)
    hx, hy, hr = _HEAD
    shapes.append(_Shape(_ellipse(hx, hy, hr, hr), colours["head"], other))
    cap = np.radians(np.linspace(203, 345, 14))
    crown = np.stack([hx + 1.04 * hr * np.cos(cap), hy + 1.04 * hr * np.sin(cap)], axis=1)
    shapes.append(_Shape(crown, colours["crown"], part["crown"]))
    shapes.append(_Shape(_ellipse(*_EYE, 0.05, 0.05, vertices=16), colours["ring"], part["eye"]))
    shapes.append(_Shape(_ellipse(*_EYE, 0.026, 0.026, vertices=12), (14, 14, 14), part["eye"]))
    shapes.append(_Shape(_BEAKS[species.beak_shape], colours["beak"], part["beak"]))
    return shapes


def _breast_pattern(rng: np.random.Generator, pattern: str, colour: RGB, body_ry: float) -> list[_Shape]:
    if pattern == "plain":
        return []
    shapes = []
    ry = 0.11 * body_ry / 0.18
    count = int(rng.integers(7, 11)) if pattern == "spotted" else int(rng.integers(5, 8))
    for _ in range(count):
        # Uniform in a shrunken breast ellipse so marks stay on the breast.
        r, a = 0.72 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        x, y = 0.13 + r * 0.15 * math.cos(a), 0.05 + r * ry * math.sin(a)
        if pattern == "spotted":
            points = _ellipse(x, y, 0.022, 0.022, vertices=10)
        else:
            points = _rotate(np.array([(-0.04, -0.009), (0.04, -0.009), (0.04, 0.009), (-0.04, 0.009)]),
                             rng.uniform(60, 80)) + (x, y)
        shapes.append(_Shape(points, colour, _PART_ID["breast"]))
    return shapes


def _wing(rng: np.random.Generator, species: _Species, colours: dict[str, RGB]) -> list[_Shape]:
    """Wing ellipse, darker primaries, and wing bars as bands across the wing's long axis."""
    centre, rx, ry, tilt = (-0.07, -0.035), 0.21, 0.095, rng.uniform(-12, -4)
    wing_id = _PART_ID["wing"]

    def band(u0: float, u1: float) -> np.ndarray:
        # The part of the wing ellipse with u0 <= u <= u1 (u along the wing, in wing units).
        u = np.linspace(u0, u1, 6)
        half = ry * np.sqrt(np.clip(1.0 - (u / rx) ** 2, 0.0, 1.0))
        outline = np.concatenate([np.stack([u, -half], 1), np.stack([u[::-1], half[::-1]], 1)])
        return _rotate(outline, tilt) + centre

    shapes = [
        _Shape(_ellipse(*centre, rx, ry, tilt), colours["wing"], wing_id),
        _Shape(band(-rx, -0.12), colours["wing_tip"], wing_id),
    ]
    bar_centres = {0: (), 1: (-0.01,), 2: (0.045, -0.055)}[species.wing_bars]
    for u in bar_centres:
        shapes.append(_Shape(band(u - 0.02, u + 0.02), colours["bar"], wing_id))
    return shapes


@dataclass
class _Pose:
    scale: float  # supersampled pixels per local unit
    degrees: float
    flip: bool
    offset: tuple[float, float]

    def apply(self, points: np.ndarray) -> np.ndarray:
        x = -points[:, 0] if self.flip else points[:, 0]
        placed = _rotate(np.stack([x, points[:, 1]], axis=1), self.degrees) * self.scale
        return placed + self.offset


def _sample_pose(rng: np.random.Generator, shapes: list[_Shape], canvas: int) -> _Pose:
    degrees, flip = rng.uniform(-25, 25), bool(rng.random() < 0.5)
    scale = canvas * rng.uniform(0.5, 0.68)
    outline = np.concatenate([s.points for s in shapes])
    placed = _Pose(scale, degrees, flip, (0.0, 0.0)).apply(outline)
    low, high = placed.min(axis=0), placed.max(axis=0)
    margin = 0.03 * canvas
    fit = (canvas - 2 * margin) / float((high - low).max())
    if fit < 1.0:  # long beak + long tail at a steep angle: shrink rather than crop the bird
        scale, low, high = scale * fit, low * fit, high * fit
    offset = tuple(float(rng.uniform(margin - lo, canvas - margin - hi)) for lo, hi in zip(low, high))
    return _Pose(scale, degrees, flip, offset)  # type: ignore[arg-type]


class _Canvas:
    """Supersampled colour image plus part-id map, painted with the same polygons."""

    def __init__(self, size: int, debug: bool) -> None:
        self.size = size
        self.debug = debug
        self.image = Image.new("RGB", (size, size))
        self.ids = Image.new("L", (size, size), _BACKGROUND_ID)
        self.paint = ImageDraw.Draw(self.image)
        self.label = ImageDraw.Draw(self.ids)

    def polygon(self, points: np.ndarray, colour: RGB, part_id: int) -> None:
        flat = points.ravel().tolist()
        self.paint.polygon(flat, fill=_DEBUG_BY_ID[part_id] if self.debug else colour)
        self.label.polygon(flat, fill=part_id)

    def scenery_polygon(self, points: np.ndarray, colour: RGB) -> None:
        self.paint.polygon(points.ravel().tolist(), fill=(0, 0, 0) if self.debug else colour)

    def scenery_line(self, points: np.ndarray, colour: RGB, width: int) -> None:
        fill = (0, 0, 0) if self.debug else colour
        self.paint.line(points.ravel().tolist(), fill=fill, width=width, joint="curve")


def _render(
    species: _Species, rng: np.random.Generator, size: int, debug: bool
) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """``(image, part ids before occlusion, occluded)``; the two maps at the supersampled size."""
    big = size * _SUPERSAMPLE
    canvas = _Canvas(big, debug)
    colours = _bird_colours(rng, species)
    shapes = _bird_shapes(rng, species, colours)
    pose = _sample_pose(rng, shapes, big)
    _draw_background(canvas, rng, pose)
    for shape in shapes:
        canvas.polygon(pose.apply(shape.points), shape.colour, shape.part_id)
    ids_before = np.asarray(canvas.ids)
    occluded = _draw_occluders(canvas, rng, pose, ids_before)
    return _finish_image(canvas.image, rng, debug), ids_before, occluded


def _annotations(
    ids_before: np.ndarray, occluded: np.ndarray, size: int
) -> tuple[dict[str, np.ndarray], tuple[int, int, int, int]]:
    """Visible part masks at output size, and the box of the whole (unoccluded) bird."""
    labels = _downsample_ids(np.where(occluded, _BACKGROUND_ID, ids_before), size)
    masks = {part: labels == _PART_ID[part] for part in PARTS}
    masks["bird"] = labels != _BACKGROUND_ID
    return masks, _box(ids_before)


def _draw_background(canvas: _Canvas, rng: np.random.Generator, pose: _Pose) -> None:
    size = canvas.size
    if not canvas.debug:
        canvas.image.paste(_gradient(rng, size))
    else:
        _gradient(rng, 2)  # keep the random stream identical to the normal render
    for _ in range(int(rng.integers(3, 8))):  # soft blobs: out-of-focus foliage, sky, earth
        palette = (_FOLIAGE, _SKY, _EARTH)[rng.integers(3)]
        colour = _jitter(rng, palette[rng.integers(len(palette))], 20)
        rx, ry = size * rng.uniform(0.05, 0.25), size * rng.uniform(0.05, 0.2)
        canvas.scenery_polygon(_ellipse(*(rng.uniform(0, size, 2)), rx, ry, rng.uniform(0, 180)), colour)
    for _ in range(int(rng.integers(0, 5))):  # berries / flowers in attribute colours
        colour = _jitter(rng, _DISTRACTORS[rng.integers(len(_DISTRACTORS))], 12)
        r = size * rng.uniform(0.012, 0.03)
        canvas.scenery_polygon(_ellipse(*(rng.uniform(0, size, 2)), r, r, vertices=12), colour)
    for _ in range(int(rng.integers(1, 4))):
        _branch(canvas, rng, rng.uniform(0, size, 2), rng.uniform(0, 180), size * rng.uniform(0.3, 1.0))
    for _ in range(int(rng.integers(2, 8))):
        _scenery_leaf(canvas, rng, rng.uniform(0, size, 2), size * rng.uniform(0.06, 0.16))
    # The perch under the feet makes the scene plausible and puts a branch right next to the bird.
    feet = pose.apply(np.array([(0.07, 0.285)]))[0]
    perch_angle = pose.degrees + rng.uniform(-15, 15)
    _branch(canvas, rng, feet + (0, size * 0.012), perch_angle, size * rng.uniform(0.6, 1.2))


def _gradient(rng: np.random.Generator, size: int) -> Image.Image:
    palettes = _SKY + _FOLIAGE + _EARTH
    start = np.array(_jitter(rng, palettes[rng.integers(len(palettes))], 20), dtype=np.float32)
    end = np.array(_jitter(rng, palettes[rng.integers(len(palettes))], 20), dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    # Built at output resolution and pixel-doubled: the final 2x2 box downsampling gives back
    # exactly these values, far cheaper than a smooth resize at the supersampled size.
    grid = np.linspace(-1.0, 1.0, max(1, size // _SUPERSAMPLE), dtype=np.float32)
    t = 0.5 + 0.35 * (np.cos(angle) * grid[None, :] + np.sin(angle) * grid[:, None])
    small = start + (end - start) * t[..., None]
    small_image = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8))
    return small_image.resize((size, size), Image.Resampling.NEAREST)


def _branch(
    canvas: _Canvas, rng: np.random.Generator, centre: np.ndarray, degrees: float, length: float
) -> None:
    direction = np.array([math.cos(math.radians(degrees)), math.sin(math.radians(degrees))])
    bend = np.array([-direction[1], direction[0]]) * length * rng.uniform(-0.08, 0.08)
    points = np.stack([centre - direction * length / 2, centre + bend, centre + direction * length / 2])
    colour = _jitter(rng, _EARTH[rng.integers(len(_EARTH))], 15)
    width = max(2, int(canvas.size * rng.uniform(0.015, 0.035)))
    canvas.scenery_line(points, _scale_colour(colour, 0.7), width)


def _scenery_leaf(canvas: _Canvas, rng: np.random.Generator, centre: np.ndarray, length: float) -> None:
    colour = _jitter(rng, _FOLIAGE[rng.integers(len(_FOLIAGE))], 18)
    points = _rotate(_leaf(length, length * rng.uniform(0.35, 0.55)), rng.uniform(0, 180)) + centre
    canvas.scenery_polygon(points, colour)


def _draw_occluders(canvas: _Canvas, rng: np.random.Generator, pose: _Pose, ids: np.ndarray) -> np.ndarray:
    """Leaves / twigs in front of the bird; every part keeps >= 50% and the bird >= 70% visible."""
    size = canvas.size
    occluded = np.zeros(ids.shape, dtype=bool)
    count = int(rng.choice(3, p=(0.4, 0.4, 0.2)))
    if count == 0:
        return occluded
    totals = np.bincount(ids.ravel(), minlength=_NUM_IDS)
    ys, xs = np.nonzero(ids)
    for _ in range(count):
        for _attempt in range(3):
            pick = int(rng.integers(len(xs)))
            centre = np.array([xs[pick], ys[pick]], dtype=np.float64) + rng.normal(0, size * 0.05, 2)
            length = size * rng.uniform(0.1, 0.22)
            points = _rotate(_leaf(length, length * rng.uniform(0.3, 0.5)), rng.uniform(0, 180)) + centre
            colour = _jitter(rng, _FOLIAGE[rng.integers(len(_FOLIAGE))], 18)
            shape = Image.new("L", (size, size), 0)
            ImageDraw.Draw(shape).polygon(points.ravel().tolist(), fill=1)
            candidate = occluded | np.asarray(shape, dtype=bool)
            hidden = np.bincount(ids[candidate], minlength=_NUM_IDS)
            visible = 1.0 - hidden / np.maximum(totals, 1)
            bird_visible = 1.0 - hidden[1:].sum() / max(totals[1:].sum(), 1)
            if visible[1:].min() >= 0.5 and bird_visible >= 0.7:
                canvas.scenery_polygon(points, colour)
                occluded = candidate
                break
    return occluded


def _finish_image(image: Image.Image, rng: np.random.Generator, debug: bool) -> Image.Image:
    small = image.reduce(_SUPERSAMPLE)  # box filter: each output pixel averages its 2x2 block
    if debug:
        return small  # nothing is drawn after this, so skipping the noise draws changes no geometry
    gain, bias, sigma = rng.uniform(0.85, 1.15), rng.uniform(-15, 15), rng.uniform(2.0, 7.0)
    noise = rng.standard_normal((small.height, small.width, 3), dtype=np.float32)
    pixels = np.asarray(small, dtype=np.float32) * gain + bias + noise * sigma
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


@lru_cache(maxsize=8)
def _block_index(size: int) -> np.ndarray:
    """For each supersampled pixel, the index of the output pixel it falls in (times _NUM_IDS)."""
    rows = np.arange(size * _SUPERSAMPLE) // _SUPERSAMPLE
    return ((rows[:, None] * size + rows[None, :]) * _NUM_IDS).ravel()


def _downsample_ids(ids: np.ndarray, size: int) -> np.ndarray:
    """Plurality vote of the ids in each 2x2 block (ties go to the lower id, background first)."""
    counts = np.bincount(_block_index(size) + ids.ravel(), minlength=size * size * _NUM_IDS)
    return counts.reshape(size, size, _NUM_IDS).argmax(axis=2)


def _box(ids: np.ndarray) -> tuple[int, int, int, int]:
    bird = ids != _BACKGROUND_ID
    cols, rows = np.flatnonzero(bird.any(axis=0)), np.flatnonzero(bird.any(axis=1))
    s = _SUPERSAMPLE
    return int(cols[0] // s), int(rows[0] // s), int(cols[-1] // s + 1), int(rows[-1] // s + 1)
