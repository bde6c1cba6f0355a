"""The map records a :class:`~apinet.explain.PairExplanation` holds (plain numpy, no model).

Every map is stored at the resolution it was computed at (the feature maps, ``h x w``); the display
form at the input size (``map1`` / ``map2`` of :class:`CamMaps`, ``display`` of :class:`ExactMap`)
is a bilinear upsampling made on access and never stored, so a cached explanation stays small
(``benchmarks/explanation_memory.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._util import minmax, upsample

__all__ = ["A2StageMaps", "AttentionMap", "CamMaps", "ChannelMaps", "ContrastMaps", "ExactMap"]


@dataclass
class ChannelMaps:
    """Feature maps before global pooling at k selected channels, for both images."""

    indices: np.ndarray  # [k] int64, channels shown for image 1 (ranked, best first)
    scores: np.ndarray  # [k] float32, ranking score of image 1 at those channels
    maps1: np.ndarray  # [k, h, w] float32, image 1's activations (raw units)
    maps2: np.ndarray  # [k, h, w] float32, image 2's activations at indices2
    label: str
    ranking: str  # how indices were chosen, in words
    indices2: np.ndarray | None = None  # [k] channels of maps2 (== indices unless ranked per image)
    scores2: np.ndarray | None = None  # [k] the same score for image 2 at indices2

    def __post_init__(self) -> None:
        if self.indices2 is None:
            self.indices2 = self.indices.copy()


@dataclass
class AttentionMap:
    """LTPA attention of both images at one stage."""

    map1: np.ndarray  # [h, w] float32, softmax over positions: sums to 1
    map2: np.ndarray  # [h, w] float32
    label: str
    normalisation: str
    compatibility1: np.ndarray | None = None  # [h, w] raw compatibility c_i = <l_i, g> (trained: its c_i)
    compatibility2: np.ndarray | None = None
    scores1: np.ndarray | None = None  # [h, w] what the softmax saw: c_i / T (parameter-free maps)
    scores2: np.ndarray | None = None
    similarity: str = "dot"  # "dot" for the parameter-free maps, "dot" / "pc" for the trained estimator
    temperature1: float = 1.0  # T of image 1's parameter-free map (the std of its c over positions)
    temperature2: float = 1.0

    def effective_support(self) -> tuple[float, float]:
        """exp(entropy) of each softmax map: the number of cells it spreads over (1 = one-hot)."""
        out = []
        for m in (self.map1, self.map2):
            p = np.asarray(m, dtype=np.float64).ravel()
            p = p[p > 0] / p.sum()
            out.append(float(np.exp(-(p * np.log(p)).sum())))
        return out[0], out[1]


class CamMaps:
    """A class activation map of each image, in raw CAM units.

    Stored: ``raw1`` / ``raw2`` ``[h, w]`` float32 at the CAM layer's resolution (what was computed:
    ReLU(sum_c w_c A_c) before grad-cam's per-map min-max) and the display ``size`` ``(H, W)``.
    ``map1`` / ``map2`` are the raw maps bilinearly upsampled to ``size``, made on each access.

    ``CamMaps(map1, map2, target1, target2, method, label)`` (maps given at display size, no raw
    maps) keeps working: the given maps are then stored as they are.
    """

    signed = False  # ReLU'd maps: zero is the bottom of the scale

    def __init__(self, map1: np.ndarray | None = None, map2: np.ndarray | None = None, target1: int = 0,
                 target2: int = 0, method: str = "", label: str = "", raw1: np.ndarray | None = None,
                 raw2: np.ndarray | None = None, raw_min1: float | None = None, raw_max1: float | None = None,
                 raw_min2: float | None = None, raw_max2: float | None = None, layer: str = "",
                 size: tuple[int, int] | list[int] | None = None) -> None:
        if raw1 is None or raw2 is None:
            if map1 is None or map2 is None:
                raise ValueError("CamMaps needs raw1 and raw2 (or map1 and map2)")
            raw1, raw2 = map1, map2
        self.raw1 = np.asarray(raw1, dtype=np.float32)
        self.raw2 = np.asarray(raw2, dtype=np.float32)
        if size is None:
            size = map1.shape[-2:] if map1 is not None else self.raw1.shape[-2:]
        self.size = (int(size[0]), int(size[1]))
        self.target1, self.target2 = int(target1), int(target2)
        self.method, self.label, self.layer = method, label, layer
        self.raw_min1 = float(self.raw1.min()) if raw_min1 is None else float(raw_min1)
        self.raw_max1 = float(self.raw1.max()) if raw_max1 is None else float(raw_max1)
        self.raw_min2 = float(self.raw2.min()) if raw_min2 is None else float(raw_min2)
        self.raw_max2 = float(self.raw2.max()) if raw_max2 is None else float(raw_max2)

    @property
    def map1(self) -> np.ndarray:
        """``[H, W]`` float32: ``raw1`` upsampled to the input size (computed on access, not stored)."""
        return upsample(self.raw1, self.size)

    @property
    def map2(self) -> np.ndarray:
        return upsample(self.raw2, self.size)

    def normalised(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-map min-max scaled maps, as grad-cam returns them (for comparison only)."""
        return minmax(self.map1), minmax(self.map2)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(method={self.method!r}, label={self.label!r}, "
                f"raw shape {self.raw1.shape}, size {self.size})")


class ContrastMaps(CamMaps):
    """"Why A and not B" for both images: image i's map for its class A = ``target_i`` against
    class B = ``reference_i`` (by default the partner's class).

    ``method == "class_contrast"``: the signed map sum_k (W[A,k] - W[B,k]) F_i[k] (``signed``); its
    spatial mean plus ``offset_i`` (= b_A - b_B) equals ``value_i`` (= logit A - logit B of the
    path). ``method == "finercam"``: grad-cam's Finer-CAM, ReLU'd, no offset / value.
    """

    def __init__(self, map1: np.ndarray | None = None, map2: np.ndarray | None = None, target1: int = 0,
                 target2: int = 0, method: str = "", label: str = "", *, reference1: int = 0,
                 reference2: int = 0, signed: bool = False, offset1: float | None = None,
                 offset2: float | None = None, value1: float | None = None, value2: float | None = None,
                 **kwargs) -> None:
        super().__init__(map1, map2, target1, target2, method, label, **kwargs)
        self.reference1, self.reference2 = int(reference1), int(reference2)
        self.signed = bool(signed)
        self.offset1 = None if offset1 is None else float(offset1)
        self.offset2 = None if offset2 is None else float(offset2)
        self.value1 = None if value1 is None else float(value1)
        self.value2 = None if value2 is None else float(value2)


@dataclass
class ExactMap:
    """One image's exact, signed map of a logit (``PairExplanation.exact_cams``).

    ``raw`` ``[h, w]`` float32 at the feature-map resolution: sum_k v[k] F_i[k] with the pair's gates
    fixed. ``raw.mean() + offset == value`` (the logit, or the logit difference, the model computed).
    ``display`` is ``raw`` upsampled to the input size ``size``, made on access (not stored).
    """

    raw: np.ndarray  # [h, w] float32, signed
    image: int  # 1 or 2: the image the map lies on
    kind: str  # "self", "other" or "contrast"
    target: int  # the class c (image ``image``'s reference class)
    offset: float  # the classifier bias b_c ("contrast": 0)
    value: float  # the model's number this map decomposes: logit_self(c), logit_other(c) or their difference
    label: str
    size: tuple[int, int] = (0, 0)  # display size (H, W) of the input image

    def __post_init__(self) -> None:
        self.raw = np.asarray(self.raw, dtype=np.float32)
        self.image, self.target = int(self.image), int(self.target)
        self.offset, self.value = float(self.offset), float(self.value)
        self.size = (int(self.size[0]), int(self.size[1])) if self.size and self.size[0] else tuple(self.raw.shape)

    signed = True

    @property
    def display(self) -> np.ndarray:
        """``[H, W]`` float32: ``raw`` bilinearly upsampled to the input size (computed on access)."""
        return upsample(self.raw, self.size)

    def reconstructed(self) -> float:
        """spatial mean + offset: equals :attr:`value` up to float32 rounding."""
        return float(self.raw.astype(np.float64).mean() + self.offset)


@dataclass
class A2StageMaps:
    """Attention maps of one A^2 block for both images."""

    gather1: np.ndarray  # [n, h, w] float32, softmax over positions (each map sums to 1)
    gather2: np.ndarray
    distribute1: np.ndarray  # [n, h, w] float32, softmax over the n maps (sums to 1 per position)
    distribute2: np.ndarray
    label: str
