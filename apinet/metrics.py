"""How good is an explanation? Localisation, faithfulness and sanity metrics on plain arrays.

* Pointing game (Zhang et al., ECCV 2016): does the maximum of the (bilinearly upsampled) map fall
  inside the annotation (optionally within ``tolerance`` pixels; the paper's standard is 15 px at
  224 px, :func:`standard_tolerance` scales it to other input sizes)? :func:`pointing_game`, and
  :func:`pointing_game_points` for keypoints such as CUB part locations (hit = within ``radius``).
  Two maps scored on the same images are compared with McNemar's exact test, :func:`mcnemar_exact`.
* Energy pointing game (Wang et al., Score-CAM, CVPRW 2020): fraction of the map's (non-negative)
  mass inside the mask, :func:`energy_pointing_game`. A random map scores the mask's area fraction.
* Deletion / insertion (Petsiuk et al., RISE, BMVC 2018): remove (or insert) pixels in the order
  the map ranks them, track the target class probability, report the area under that curve
  (deletion: lower is better; insertion: higher is better), :func:`perturbation_curve`.
* Model-randomisation sanity check (Adebayo et al., NeurIPS 2018): randomise the layers of a copy
  of the model cumulatively from the top and measure the Spearman rank correlation between the
  original and the randomised maps; maps that stay the same do not depend on what the model learnt.
  :func:`cascading_randomization`.

``python -m apinet evaluate-explanations`` runs all of them on SynthBirds sibling pairs (classes
that differ in exactly one part, scored against the part's pixel mask) or on CUB-200-2011 (each
species with its nearest species by annotated attributes, scored against the keypoints of the body
region they differ in most): does the map of image A point at the part that tells A from B?
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np


__all__ = [
    "PerturbationCurve",
    "RandomizationResult",
    "cascading_randomization",
    "default_randomization_order",
    "energy_pointing_game",
    "evaluate_explanations",
    "mcnemar_exact",
    "perturbation_curve",
    "pointing_game",
    "pointing_game_points",
    "spearman",
    "standard_tolerance",
    "upsample_map",
]

#: Zhang et al. (2016) count a pointing-game hit within 15 pixels of the annotation at 224 px input.
STANDARD_TOLERANCE_PX = 15.0
STANDARD_TOLERANCE_INPUT = 224
#: Default number of pairs of the randomisation sanity check: 38 = every SynthBirds sibling pair twice,
#: enough for a t-interval of the mean Spearman correlation per randomised layer.
SANITY_PAIRS = 38


# --------------------------------------------------------------------------------------------------
# Localisation
# --------------------------------------------------------------------------------------------------


def upsample_map(map_: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of ``map_ [h, w]`` to ``shape`` (as the overlays show it)."""
    import cv2

    m = np.asarray(map_, dtype=np.float32)
    if m.shape == tuple(shape):
        return m
    return cv2.resize(m, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)


def _argmax2d(m: np.ndarray) -> tuple[int, int]:
    row, col = np.unravel_index(int(np.argmax(m)), m.shape)
    return int(row), int(col)


def pointing_game(map_: np.ndarray, mask: np.ndarray, tolerance: float = 0.0) -> bool:
    """True when the maximum of ``map_`` (upsampled to the mask) lies in ``mask`` or within
    ``tolerance`` pixels of it. The first maximum in row-major order wins ties."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("pointing game needs a non-empty mask")
    row, col = _argmax2d(upsample_map(map_, mask.shape))
    if tolerance <= 0:
        return bool(mask[row, col])
    rows, cols = np.nonzero(mask)
    return bool(np.min((rows - row) ** 2 + (cols - col) ** 2) <= tolerance ** 2)


def energy_pointing_game(map_: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the map's non-negative mass inside ``mask`` (map upsampled to the mask)."""
    mask = np.asarray(mask, dtype=bool)
    m = np.maximum(upsample_map(map_, mask.shape), 0.0)
    total = float(m.sum())
    if total <= 0:
        return float(mask.mean())  # a map with no mass points nowhere: count it as uniform
    return float(m[mask].sum() / total)


def standard_tolerance(input_size: int) -> float:
    """The pointing game's standard tolerance (15 px at 224 px) scaled to ``input_size`` pixels."""
    if input_size <= 0:
        raise ValueError(f"input_size must be positive, got {input_size}")
    return STANDARD_TOLERANCE_PX * input_size / STANDARD_TOLERANCE_INPUT


def mcnemar_exact(hits_a: Sequence[int], hits_b: Sequence[int]) -> dict[str, float]:
    """McNemar's exact test of two maps' pointing-game hits on the same images (paired).

    Returns the two hit rates, the discordant counts (``a_only``: images only map A hits,
    ``b_only``: only map B hits) and the two-sided exact p-value of "A and B hit equally often",
    ``min(1, 2 * P[Binomial(a_only + b_only, 1/2) <= min(a_only, b_only)])``.
    """
    a = np.asarray(hits_a, dtype=bool)
    b = np.asarray(hits_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equally long, non-empty hit lists, got {a.shape} and {b.shape}")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = a_only + b_only
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1)) / 2.0 ** n if n else 1.0
    return {"n": int(a.size), "rate_a": float(a.mean()), "rate_b": float(b.mean()),
            "a_only": a_only, "b_only": b_only, "p_value": float(min(1.0, 2.0 * tail))}


def pointing_game_points(map_: np.ndarray, points: Sequence[tuple[float, float]], radius: float,
                         image_shape: tuple[int, int] | None = None) -> bool:
    """True when the map's maximum lies within ``radius`` pixels of any ``(x, y)`` point.

    Points are in the pixel coordinates of an image of ``image_shape`` (H, W); the map is upsampled
    to it (default: the map's own shape). Invisible parts should simply be left out of ``points``.
    """
    if len(points) == 0:
        raise ValueError("pointing game needs at least one point")
    shape = image_shape or np.asarray(map_).shape
    row, col = _argmax2d(upsample_map(map_, shape))
    pts = np.asarray(points, dtype=np.float64)
    d2 = (pts[:, 0] - col) ** 2 + (pts[:, 1] - row) ** 2
    return bool(d2.min() <= radius ** 2)


# --------------------------------------------------------------------------------------------------
# Deletion / insertion
# --------------------------------------------------------------------------------------------------


@dataclass
class PerturbationCurve:
    """Target probability as pixels are deleted or inserted in map order."""

    mode: str  # "deletion" | "insertion"
    baseline: str  # "blur" | "mean" | "zero"
    fractions: np.ndarray  # [steps + 1] fraction of pixels perturbed, 0..1
    scores: np.ndarray  # [steps + 1] softmax probability of the target
    auc: float  # trapezoidal area under scores(fractions)


def _baseline_image(image, kind: str):
    import torch
    from torchvision.transforms.functional import gaussian_blur

    if kind == "blur":  # RISE: Gaussian blur, kernel 11, sigma 5
        return gaussian_blur(image[None], kernel_size=[11, 11], sigma=[5.0, 5.0])[0]
    if kind == "mean":
        return image.mean(dim=(1, 2), keepdim=True).expand_as(image).clone()
    if kind == "zero":
        return torch.zeros_like(image)
    raise ValueError(f"baseline must be 'blur', 'mean' or 'zero', got {kind!r}")


def perturbation_curve(model_fn: Callable, image, saliency: np.ndarray, target: int, *,
                       mode: Literal["deletion", "insertion"] = "deletion", steps: int = 20,
                       baseline: Literal["blur", "mean", "zero"] = "blur", batch_size: int = 32
                       ) -> PerturbationCurve:
    """Deletion or insertion curve of ``saliency`` for ``model_fn`` on ``image [3, H, W]``.

    ``model_fn`` maps ``[B, 3, H, W]`` to logits ``[B, C]``. Pixels are ranked by the saliency
    upsampled to the image (stable sort, so ties keep row-major order); after step i the first
    ``round(i / steps * H * W)`` of them are replaced by the baseline (deletion) or taken from the
    image, the rest being baseline (insertion).
    """
    import torch

    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if steps < 1:
        raise ValueError("steps must be >= 1")
    image = torch.as_tensor(image, dtype=torch.float32)
    _, height, width = image.shape
    order = np.argsort(-upsample_map(saliency, (height, width)).ravel(), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    rank_t = torch.as_tensor(rank.reshape(height, width))
    base = _baseline_image(image, baseline)
    counts = [round(i / steps * height * width) for i in range(steps + 1)]
    start, end = (image, base) if mode == "deletion" else (base, image)
    scores = []
    with torch.no_grad():
        for lo in range(0, len(counts), batch_size):
            chunk = counts[lo: lo + batch_size]
            changed = torch.stack([(rank_t < n) for n in chunk])[:, None].float()  # [b, 1, H, W]
            batch = start[None] * (1 - changed) + end[None] * changed
            probs = torch.softmax(model_fn(batch).float(), dim=1)[:, target]
            scores.append(probs.cpu().numpy())
    fractions = np.asarray(counts, dtype=np.float64) / (height * width)
    values = np.concatenate(scores).astype(np.float64)
    auc = float(np.sum((values[1:] + values[:-1]) * np.diff(fractions)) / 2.0)
    return PerturbationCurve(mode, baseline, fractions, values, auc)


# --------------------------------------------------------------------------------------------------
# Model randomisation
# --------------------------------------------------------------------------------------------------


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (ties get average ranks); 0 when one is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.ravel(a)), rankdata(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def default_randomization_order(model) -> list[str]:
    """Module names from the top of the network down: head, interaction, LTPA, stages, stem."""
    names = []
    for name in ("fc", "mutual", "ltpa"):
        if getattr(model, name, None) is not None:
            names.append(name)
    trunk = model.trunk
    for stage in reversed(list(trunk.stages.keys())):
        if stage in trunk.inserts:
            names.append(f"trunk.inserts.{stage}")
        if stage == next(reversed(trunk.stages.keys())) and len(list(trunk.tail.parameters())):
            names.append("trunk.tail")
        names.append(f"trunk.stages.{stage}")
    names.append("trunk.stem")
    return names


def _reinitialise(module, seed: int) -> None:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in module.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset) and any(True for _ in sub.parameters(recurse=False)):
                reset()
            if hasattr(sub, "reset_running_stats"):
                sub.reset_running_stats()


@dataclass
class RandomizationResult:
    """Spearman correlation of each map type after randomising the model down to each layer."""

    layers: list[str]  # cumulative: entry i = layers[0..i] randomised
    spearman: dict[str, list[float]]  # map type -> [len(layers)] correlation with the original map
    spearman_abs: dict[str, list[float]]  # the same on absolute values


def cascading_randomization(model, compute_maps: Callable[[Any], Mapping[str, np.ndarray]],
                            layers: Sequence[str] | None = None, seed: int = 0) -> RandomizationResult:
    """Cascading randomisation (Adebayo et al., 2018) of a deep copy of ``model``.

    ``compute_maps(m)`` returns the maps to test (``{map type: [h, w]}``) computed with model ``m``;
    it is called once with ``model`` and once per entry of ``layers`` with a copy whose layers
    ``layers[0..i]`` have been re-initialised (default :func:`default_randomization_order`).
    """
    original = {k: np.asarray(v) for k, v in compute_maps(model).items()}
    layers = list(layers) if layers is not None else default_randomization_order(model)
    work = copy.deepcopy(model).eval()
    result = RandomizationResult(layers, {k: [] for k in original}, {k: [] for k in original})
    for i, name in enumerate(layers):
        _reinitialise(work.get_submodule(name), seed + i)
        maps = compute_maps(work)
        for key, ref in original.items():
            result.spearman[key].append(spearman(ref, maps[key]))
            result.spearman_abs[key].append(spearman(np.abs(ref), np.abs(maps[key])))
    return result


# --------------------------------------------------------------------------------------------------
# Evaluation on SynthBirds sibling pairs
# --------------------------------------------------------------------------------------------------

#: Map types compared by ``evaluate-explanations`` (a key is skipped when the models lack it).
#: ``apinet_top_gated_channel`` ranks channels by the gate g_i (the paper's figure);
#: ``apinet_top_gate_x_act_channel`` by g_i * x_i (the channel's share of the gated residual);
#: ``apinet_top_activation_channel`` by x_i alone (a control: API-Net's trunk without the gate).
MAP_TYPES = (
    "apinet_top_gated_channel", "apinet_top_gate_x_act_channel", "apinet_top_activation_channel",
    "apinet_ltpa_pooled", "apinet_ltpa_gated", "apinet_ltpa_trained", "apinet_gradcam_pair", "apinet_gradcam_test",
    "baseline_top_channel", "baseline_gradcam", "random", "chance_bird_point", "chance_box_centre",
)

#: Paired comparisons reported by ``evaluate-explanations`` (McNemar's exact test on the same images).
#: The first is the question of the project's issue #4: does API-Net's top gated channel point at the
#: differing part more often than the baseline's top channel? The ``chance_bird_point`` rows ask
#: whether a map does better than a uniformly random point on the bird (PROTOCOL.md, amendment 3).
COMPARISONS = (
    ("apinet_top_gated_channel", "baseline_top_channel"),
    ("apinet_top_gated_channel", "random"),
    ("apinet_top_gate_x_act_channel", "baseline_top_channel"),
    ("apinet_top_gate_x_act_channel", "apinet_top_activation_channel"),
    ("apinet_gradcam_test", "baseline_gradcam"),
    ("apinet_top_gated_channel", "chance_bird_point"),
    ("baseline_top_channel", "chance_bird_point"),
    ("apinet_gradcam_test", "chance_bird_point"),
    ("baseline_gradcam", "chance_bird_point"),
    ("apinet_ltpa_pooled", "chance_bird_point"),
)


def _maps_for_image(expl, i: int, rng: np.random.Generator, maps: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every map type of image ``i`` (1 or 2) of an explanation; ``maps`` are API-Net's feature maps
    ``[2, D, h, w]`` of the pair, needed for the gate x activation and activation rankings (else those
    keys are left out)."""
    from .explain import gate_topk_channels

    last = expl.settings["ltpa_stages"][-1]
    out: dict[str, np.ndarray] = {
        "apinet_top_gated_channel": getattr(expl.channels[f"apinet_gate{i}"], f"maps{i}")[0],
    }
    if maps is not None:
        x, g = (expl.features1, expl.gate1) if i == 1 else (expl.features2, expl.gate2)
        (top,), _ = gate_topk_channels(g, 1, x, gate_logit=expl.mutual * x)
        out["apinet_top_gate_x_act_channel"] = maps[i - 1, top]
        (top,), _ = gate_topk_channels(x, 1)
        out["apinet_top_activation_channel"] = maps[i - 1, top]
    for kind in ("pooled", "gated"):
        key = f"apinet/{kind}/{last}"
        if key in expl.ltpa:
            out[f"apinet_ltpa_{kind}"] = getattr(expl.ltpa[key], f"map{i}")
    trained = [k for k in expl.ltpa if k.startswith("apinet/trained/")]
    if trained:
        out["apinet_ltpa_trained"] = getattr(expl.ltpa[trained[-1]], f"map{i}")
    for name, key in (("apinet_gradcam_pair", "apinet/pair/gradcam"), ("apinet_gradcam_test", "apinet/test/gradcam"),
                      ("baseline_gradcam", "baseline/test/gradcam")):
        if key in expl.cams:
            out[name] = getattr(expl.cams[key], f"map{i}")
    if "baseline_top" in expl.channels:
        out["baseline_top_channel"] = getattr(expl.channels["baseline_top"], f"maps{i}")[0]
    shape = out["apinet_top_gated_channel"].shape
    out["random"] = rng.random(shape).astype(np.float32)
    return out


def _mask_to_input(mask: np.ndarray, preprocess) -> np.ndarray:
    """Apply the preprocessing geometry (resize -- square or shorter side -- then centre crop) to a mask."""
    from PIL import Image

    h, w = mask.shape
    nw, nh, left, top = preprocess.geometry(w, h)
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    if (nh, nw) != (h, w):
        img = img.resize((nw, nh), Image.NEAREST)
    img = img.crop((left, top, left + preprocess.input_size, top + preprocess.input_size))
    return np.asarray(img) > 127


def _to_input_xy(x: float, y: float, size: tuple[int, int], pre) -> tuple[float, float]:
    """A point ``(x, y)`` of a ``size = (w, h)`` image in the preprocessed input's pixel coordinates."""
    w, h = size
    nw, nh, left, top = pre.geometry(w, h)
    return x * nw / w - left, y * nh / h - top


def _point_map(row: int, col: int, size: int) -> np.ndarray:
    """A map at input resolution whose only maximum is pixel (row, col), clipped into the input."""
    m = np.zeros((size, size), dtype=np.float32)
    m[min(max(int(row), 0), size - 1), min(max(int(col), 0), size - 1)] = 1.0
    return m


def _chance_maps(obj: np.ndarray, centre: tuple[float, float], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Object-aware chance: a uniformly random pixel of the visible bird, and the bird box's centre,
    as maps whose maximum is that pixel (scored exactly like the explanation maps)."""
    size = obj.shape[0]
    rows, cols = np.nonzero(obj)
    out = {}
    if rows.size:
        j = int(rng.integers(rows.size))
        out["chance_bird_point"] = _point_map(rows[j], cols[j], size)
    out["chance_box_centre"] = _point_map(math.floor(centre[1]), math.floor(centre[0]), size)
    return out


def _expected_point_rate(obj: np.ndarray, part: np.ndarray, tolerance: float) -> float:
    """Probability that a uniformly random pixel of ``obj`` lies within ``tolerance`` px of ``part``
    (the exact expectation of ``chance_bird_point``'s hit, same distance as :func:`pointing_game`)."""
    from scipy.ndimage import distance_transform_edt

    if not obj.any():
        return float("nan")
    distance = distance_transform_edt(~part)  # 0 on the part, else Euclidean distance to its nearest pixel
    return float(np.mean(distance[obj] <= max(tolerance, 0.0)))


def _wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def _rate(hits: Sequence[int]) -> dict[str, Any]:
    n, h = len(hits), int(sum(hits))
    return {"rate": h / n if n else float("nan"), "ci95": _wilson(h, n)}


@dataclass
class _ScoredPair:
    """One image pair with, for each image, where the part that tells the two classes apart is."""

    image1: Any  # PIL images
    image2: Any
    classes: tuple[int, int]
    indices: tuple[int, int]  # dataset indices
    region: str  # SynthBirds part / CUB body region
    masks: tuple[np.ndarray, np.ndarray]  # bool [input, input] each (may be empty: part not visible)
    objects: tuple[np.ndarray, np.ndarray]  # bool [input, input]: the visible bird (CUB: its box)
    centres: tuple[tuple[float, float], tuple[float, float]]  # (x, y) of the bird box's centre, input pixels


def _synthbirds_pairs(data, pre, pairs: int) -> Iterator[_ScoredPair]:
    """Pair p: sibling class pair p mod 19 (classes that differ in exactly one part), image p // 19."""
    from .data.synthbirds import SynthBirds

    siblings = SynthBirds.sibling_pairs()
    if pairs > len(siblings) * data.per_class:
        raise ValueError(f"at most {len(siblings) * data.per_class} sibling pairs in the {data.split} split, "
                         f"asked for {pairs}")
    for p in range(pairs):
        a, b, part = siblings[p % len(siblings)]
        rnd = p // len(siblings)
        ia, ib = rnd * data.num_classes + a, rnd * data.num_classes + b
        sa, sb = data.sample(ia), data.sample(ib)
        centres = tuple(_to_input_xy((s.box[0] + s.box[2]) / 2, (s.box[1] + s.box[3]) / 2, s.image.size, pre)
                        for s in (sa, sb))
        yield _ScoredPair(sa.image, sb.image, (a, b), (ia, ib), part,
                          (_mask_to_input(sa.masks[part], pre), _mask_to_input(sb.masks[part], pre)),
                          (_mask_to_input(sa.masks["bird"], pre), _mask_to_input(sb.masks["bird"], pre)),
                          centres)  # type: ignore[arg-type]


def _cub_pairs(data, pre, pairs: int, radius: float) -> Iterator[_ScoredPair]:
    """Each class a with the class b whose annotated attributes are closest (L1 over all 312), image
    k of each; the target region is the body region in which a and b differ most
    (:func:`~apinet.data.cub.attribute_region_distances`), located by disks of ``radius`` input
    pixels around its visible part keypoints. Pair p: class p mod C, image p // C."""
    from .data.cub import ATTRIBUTE_REGIONS, attribute_region_distances, read_class_attributes

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
            masks.append(_points_to_mask(points, image.size, pre, radius))
            x0, y0, x1, y1 = data.box(index)
            objects.append(_box_to_mask((x0, y0, x1, y1), image.size, pre))
            centres.append(_to_input_xy((x0 + x1) / 2, (y0 + y1) / 2, image.size, pre))
        yield _ScoredPair(images[0], images[1], (a, b), (ia, ib), region, (masks[0], masks[1]),
                          (objects[0], objects[1]), (centres[0], centres[1]))


def _points_to_mask(points: Sequence[tuple[float, float]], size: tuple[int, int], pre, radius: float) -> np.ndarray:
    """The input pixels of ``(x, y)`` points of a ``size = (w, h)`` image, in the preprocessed input's
    geometry (:meth:`Preprocess.geometry <apinet.data.transforms.Preprocess.geometry>`): with
    ``radius = 0`` the pixel each point falls in, else disks of ``radius`` around the points."""
    yy, xx = np.mgrid[0:pre.input_size, 0:pre.input_size]
    mask = np.zeros((pre.input_size, pre.input_size), dtype=bool)
    for x, y in points:
        px, py = _to_input_xy(x, y, size, pre)
        if radius <= 0:
            col, row = math.floor(px), math.floor(py)
            if 0 <= row < pre.input_size and 0 <= col < pre.input_size:
                mask[row, col] = True
            continue
        # pixel (col, row) covers [col, col + 1): its centre is col + 0.5
        mask |= (xx - (px - 0.5)) ** 2 + (yy - (py - 0.5)) ** 2 <= radius ** 2
    return mask


def _box_to_mask(box: tuple[float, float, float, float], size: tuple[int, int], pre) -> np.ndarray:
    """The input pixels whose centres lie inside box ``(x0, y0, x1, y1)`` of a ``size = (w, h)`` image."""
    (x0, y0), (x1, y1) = _to_input_xy(box[0], box[1], size, pre), _to_input_xy(box[2], box[3], size, pre)
    centres = np.arange(pre.input_size) + 0.5
    cols = (centres >= x0) & (centres < x1)
    rows = (centres >= y0) & (centres < y1)
    return rows[:, None] & cols[None, :]


def evaluate_explanations(checkpoint: str | Path, baseline: str | Path | None, *, pairs: int = 380,
                          data: str = "synthbirds", split: str = "test", tolerance: float | None = None,
                          part_radius: float | None = None, deletion_pairs: int = 4, steps: int = 16,
                          sanity_pairs: int = SANITY_PAIRS, seed: int = 0,
                          log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Pointing / energy game against the part that tells a pair's classes apart, with object-aware
    chance levels, deletion / insertion, and the cascading randomisation sanity check on many pairs.

    ``data``: ``"synthbirds[:SEED]"``: pair ``p`` takes sibling class pair ``p mod 19`` (two classes
    that differ in exactly one part) and image ``p // 19`` of each class, so ``pairs=380`` scores all
    19 sibling pairs on 20 images each: 760 scorings of the 400 distinct test images (an image of a
    class that has several siblings is scored once per sibling pair, against that pair's part).
    The target is the part's pixel mask.
    ``"cub:PATH"``: every class with its nearest class by annotated attributes; the target is the body
    region they differ in most, as the input pixels of its visible keypoints (``part_radius``: disks
    of that radius instead; default 0, so the tolerance is applied once, by the pointing game).
    Every map is scored at ``tolerance`` pixels (default: the standard 15 px at 224 px scaled to the
    input size, i.e. measured on the network input, not the original image) and at 0 px, and
    :data:`COMPARISONS` are tested pairwise with :func:`mcnemar_exact` at both.

    Chance levels, scored like the maps: ``random`` (i.i.d. noise: its argmax is a uniformly random
    input pixel), ``chance_bird_point`` (a uniformly random pixel of the visible bird; CUB: of its
    box; its exact expected rate is reported as ``pointing_expected``) and ``chance_box_centre``
    (the bird box's centre). A map that points at the part no more often than a random point on the
    bird has shown only that it looks at the bird.

    Deletion / insertion run on the first image of the first ``deletion_pairs`` pairs whose first
    image has not been used yet (distinct images). The sanity check runs on the first
    ``sanity_pairs`` pairs and reports, per randomised layer, the mean Spearman correlation with a
    95 % t-interval over the pairs.
    """
    import torch

    from .data import build_dataset
    from .explain import explain_pair, load_pair_models, preprocess_from_card

    model, card, bmodel, _ = load_pair_models(checkpoint, baseline)
    pre = preprocess_from_card(card)
    standard = standard_tolerance(pre.input_size)
    tolerance = standard if tolerance is None else float(tolerance)
    tolerances = {"tol": tolerance, "0px": 0.0}
    kind = data.split(":", 1)[0].strip().lower()
    if kind == "synthbirds":
        dataset = build_dataset(data, split, image_size=pre.resize)
        source = _synthbirds_pairs(dataset, pre, pairs)
        part_radius = None
    elif kind == "cub":
        dataset = build_dataset(data, split)
        part_radius = 0.0 if part_radius is None else float(part_radius)
        source = _cub_pairs(dataset, pre, pairs, part_radius)
    else:
        raise ValueError(f"evaluate-explanations needs part annotations: data 'synthbirds[:SEED]' or 'cub:PATH', "
                         f"got {data!r}")
    n_classes = len(dataset.classes)
    head = model.fc.out_features if hasattr(model, "fc") else n_classes
    if head != n_classes:
        raise ValueError(f"{checkpoint} has {head} classes, {data} has {n_classes}: use a checkpoint trained on it")
    rng = np.random.default_rng(seed)
    chance_rng = np.random.default_rng([seed, 1])  # its own stream: the noise maps stay as they were
    hits: dict[str, dict[str, list[int]]] = {key: {} for key in tolerances}
    expected: dict[str, list[float]] = {key: [] for key in tolerances}
    energy: dict[str, list[float]] = {}
    by_part: dict[str, dict[str, list[int]]] = {}
    area: list[float] = []
    bird_area: list[float] = []
    skipped = 0
    records = []
    scored_images: set[int] = set()
    deletion: dict[str, dict[str, list[float]]] = {}
    deletion_images: list[int] = []
    sanity: list[dict[str, Any]] = []
    tic = time.perf_counter()
    for p, pair in enumerate(source):
        a, b = pair.classes
        expl = explain_pair(model, pair.image1, pair.image2, bmodel, preprocess=pre, targets=(a, b), k=5,
                            cam_methods=("gradcam",), class_names=dataset.classes)
        with torch.no_grad():
            x = torch.stack([pre(pair.image1), pre(pair.image2)]).to(next(model.parameters()).device)
            feature_maps = model.forward_features(x).float().cpu().numpy()
        record = {"pair": [int(i) for i in pair.indices], "classes": [a, b], "part": pair.region, "hits": {}}
        for i, mask in ((1, pair.masks[0]), (2, pair.masks[1])):
            if not mask.any():
                skipped += 1
                continue
            # the part is on the bird: count its pixels as bird (a CUB keypoint can lie just outside its box)
            obj, centre = pair.objects[i - 1] | mask, pair.centres[i - 1]
            scored_images.add(int(pair.indices[i - 1]))
            area.append(float(mask.mean()))
            bird_area.append(float(obj.mean()))
            for key, tol in tolerances.items():
                expected[key].append(_expected_point_rate(obj, mask, tol))
            maps = {**_maps_for_image(expl, i, rng, feature_maps), **_chance_maps(obj, centre, chance_rng)}
            for name, m in maps.items():
                for key, tol in tolerances.items():
                    hit = int(pointing_game(m, mask, tol))
                    hits[key].setdefault(name, []).append(hit)
                    record["hits"][f"{i}/{name}/{key}"] = bool(hit)
                energy.setdefault(name, []).append(energy_pointing_game(m, mask))
                by_part.setdefault(name, {}).setdefault(pair.region, []).append(hits["tol"][name][-1])
        records.append(record)
        if len(deletion_images) < deletion_pairs and int(pair.indices[0]) not in deletion_images:
            deletion_images.append(int(pair.indices[0]))
            for name, m in _maps_for_image(expl, 1, rng, feature_maps).items():
                if name.startswith("baseline"):
                    continue
                for mode in ("deletion", "insertion"):
                    curve = perturbation_curve(model, x[0], m, a, mode=mode, steps=steps, baseline="blur")
                    deletion.setdefault(name, {}).setdefault(mode, []).append(curve.auc)
        if p < sanity_pairs:
            sanity.append(_sanity(model, bmodel, pair.image1, pair.image2, pre, (a, b)))
        if log and (p + 1) % 20 == 0:
            log(f"  {p + 1}/{pairs} pairs, {time.perf_counter() - tic:.1f} s")
    summary = {}
    for name in hits["tol"]:
        tol_rate, zero_rate = _rate(hits["tol"][name]), _rate(hits["0px"][name])
        summary[name] = {
            "n": len(hits["tol"][name]), "pointing": tol_rate["rate"], "pointing_ci95": tol_rate["ci95"],
            "pointing_0px": zero_rate["rate"], "pointing_0px_ci95": zero_rate["ci95"],
            "energy": float(np.mean(energy[name])),
            "pointing_by_part": {part: float(np.mean(v)) for part, v in sorted(by_part[name].items())},
        }
        if name in deletion:
            summary[name]["deletion_auc"] = float(np.mean(deletion[name]["deletion"]))
            summary[name]["insertion_auc"] = float(np.mean(deletion[name]["insertion"]))
    if "chance_bird_point" in summary:
        summary["chance_bird_point"]["pointing_expected"] = float(np.mean(expected["tol"]))
        summary["chance_bird_point"]["pointing_0px_expected"] = float(np.mean(expected["0px"]))
    comparisons = []
    for map_a, map_b in COMPARISONS:
        if map_a in hits["tol"] and map_b in hits["tol"]:
            comparisons.append({"a": map_a, "b": map_b,
                                **{key: mcnemar_exact(hits[key][map_a], hits[key][map_b]) for key in tolerances}})
    return {
        "checkpoint": str(checkpoint), "baseline": None if baseline is None else str(baseline),
        "pairs": pairs, "images_scored": len(area), "distinct_images": len(scored_images),
        "images_skipped_part_occluded": skipped,
        "dataset": f"{data} {split}", "data": data, "split": split, "tolerance_px": tolerance,
        "tolerance_measured_on": f"the {pre.input_size} px network input", "part_radius_px": part_radius,
        "input_size": pre.input_size, "preprocess": pre.to_dict(),
        "mean_part_area_fraction": float(np.mean(area)) if area else float("nan"),
        "mean_bird_area_fraction": float(np.mean(bird_area)) if bird_area else float("nan"),
        "summary": summary, "comparisons": comparisons, "deletion_pairs": deletion_pairs,
        "deletion_images": deletion_images, "steps": steps,
        "sanity_pairs": len(sanity), "sanity_summary": sanity_summary(sanity),
        "sanity": sanity, "records": records, "seconds": time.perf_counter() - tic,
    }


def sanity_summary(sanity: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per model, map type and randomised layer: the mean Spearman correlation over the sanity pairs
    with a 95 % t-interval (``ci95``; NaN with fewer than 2 pairs), its min and max, and ``n``."""
    from scipy.stats import t as student_t

    out: dict[str, Any] = {}
    for model_name in (sanity[0] if sanity else {}):
        layers = sanity[0][model_name]["layers"]
        rows: dict[str, Any] = {}
        for key in sanity[0][model_name]["spearman"]:
            values = np.asarray([s[model_name]["spearman"][key] for s in sanity], dtype=np.float64)  # [n, L]
            n = values.shape[0]
            mean = values.mean(axis=0)
            if n > 1:
                half = student_t.ppf(0.975, n - 1) * values.std(axis=0, ddof=1) / math.sqrt(n)
            else:
                half = np.full_like(mean, np.nan)
            rows[key] = {"mean": mean.tolist(), "ci95": list(zip((mean - half).tolist(), (mean + half).tolist())),
                         "min": values.min(axis=0).tolist(), "max": values.max(axis=0).tolist(), "n": n}
        out[model_name] = {"layers": layers, "spearman": rows}
    return out


def _sanity(model, bmodel, image1, image2, pre, targets) -> dict[str, Any]:
    from .explain import explain_pair

    def apinet_maps(m):
        e = explain_pair(m, image1, image2, None, preprocess=pre, targets=targets, cam_methods=("gradcam",))
        last = e.settings["ltpa_stages"][-1]
        return {"apinet_top_gated_channel": e.channels["apinet_gate1"].maps1[0],
                "apinet_ltpa_pooled": e.ltpa[f"apinet/pooled/{last}"].map1,
                "apinet_ltpa_gated": e.ltpa[f"apinet/gated/{last}"].map1,
                "apinet_gradcam_pair": e.cams["apinet/pair/gradcam"].raw1,
                "apinet_gradcam_test": e.cams["apinet/test/gradcam"].raw1}

    out = {"apinet": asdict(cascading_randomization(model, apinet_maps))}
    if bmodel is not None:
        def baseline_maps(b):
            e = explain_pair(model, image1, image2, b, preprocess=pre, targets=targets, cam_methods=("gradcam",))
            return {"baseline_top_channel": e.channels["baseline_top"].maps1[0],
                    "baseline_gradcam": e.cams["baseline/test/gradcam"].raw1}

        out["baseline"] = asdict(cascading_randomization(bmodel, baseline_maps))
    return out


def results_markdown(results: dict[str, Any]) -> str:
    """A markdown table of :func:`evaluate_explanations` results."""
    tol = results["tolerance_px"]
    data = results.get("data", "synthbirds")
    radius = results.get("part_radius_px") or 0.0
    if data.startswith("cub"):
        target = (f"disks of {radius:.1f} px around the keypoints" if radius > 0
                  else "the input pixels of the keypoints")
        what = (f"{results['pairs']} CUB-200-2011 {results['split']} pairs (each class with its nearest class by "
                f"annotated attributes; target: {target} of the body region they differ in most)")
    else:
        what = f"{results['pairs']} SynthBirds sibling {results.get('split', 'test')} pairs"
    distinct = results.get("distinct_images")
    distinct_text = f" ({distinct} distinct images; an image is scored once per pair it is in)" if distinct else ""
    lines = [
        f"Explanations on {what} ({results['images_scored']} images "
        f"scored{distinct_text}, {results['images_skipped_part_occluded']} skipped: differing part not visible). "
        f"Target of every map: the image's true class. Mean area of the differing part: "
        f"{100 * results['mean_part_area_fraction']:.1f}% of the image (the energy score of a uniform map). "
        f"Pointing game at {tol:.2f} px tolerance, measured on the {results.get('input_size', '?')} px network "
        f"input (the standard 15 px at 224 px, scaled), and at 0 px.",
        "",
        f"| map | pointing game, {tol:.1f} px | 95% CI | pointing game, 0 px | 95% CI | energy in part "
        "| deletion AUC (lower better) | insertion AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    chance = {name: s for name, s in results["summary"].items() if name == "random" or name.startswith("chance_")}
    maps = {name: s for name, s in results["summary"].items() if name not in chance}
    for name, s in [*sorted(maps.items(), key=lambda kv: -kv[1]["pointing"]), *chance.items()]:
        lo, hi = s["pointing_ci95"]
        lo0, hi0 = s["pointing_0px_ci95"]
        dele = f"{s['deletion_auc']:.3f}" if "deletion_auc" in s else "-"
        ins = f"{s['insertion_auc']:.3f}" if "insertion_auc" in s else "-"
        label = {"random": "random (chance: i.i.d. noise map)",
                 "chance_bird_point": "chance: random point on the bird" + (" box" if data.startswith("cub") else ""),
                 "chance_box_centre": "chance: centre of the bird's box"}.get(name, name)
        lines.append(f"| {label} | {s['pointing']:.3f} | {lo:.2f}-{hi:.2f} | {s['pointing_0px']:.3f} "
                     f"| {lo0:.2f}-{hi0:.2f} | {s['energy']:.3f} | {dele} | {ins} |")
    bird = results["summary"].get("chance_bird_point", {})
    if "pointing_expected" in bird:
        lines += ["", f"Object-aware chance: a uniformly random point on the "
                      f"{'bird box' if data.startswith('cub') else 'visible bird'} hits the part with probability "
                      f"{bird['pointing_expected']:.3f} at {tol:.1f} px and {bird['pointing_0px_expected']:.3f} at 0 px "
                      f"(exact expectation over these images; the row above is one draw per image). A map must beat "
                      f"this, not the noise map, to show that it finds the part rather than the bird."]
    if results.get("deletion_images"):
        lines += ["", f"Deletion / insertion: first image of {len(results['deletion_images'])} pairs, "
                      f"{len(set(results['deletion_images']))} distinct images, {results['steps']} steps, blur baseline."]
    if results.get("comparisons"):
        lines += ["", "Paired comparisons on the same images (McNemar's exact test, two-sided; "
                      "'A only' = images only map A points at the part):", "",
                  "| map A | map B | tolerance | A | B | A only | B only | p |", "|---|---|---|---|---|---|---|---|"]
        for c in results["comparisons"]:
            for key, label in (("tol", f"{tol:.1f} px"), ("0px", "0 px")):
                m = c[key]
                lines.append(f"| {c['a']} | {c['b']} | {label} | {m['rate_a']:.3f} | {m['rate_b']:.3f} "
                             f"| {m['a_only']} | {m['b_only']} | {m['p_value']:.2g} |")
    summary = results.get("sanity_summary") or (sanity_summary(results["sanity"]) if results.get("sanity") else {})
    if summary:
        n = len(results["sanity"])
        lines += ["", f"Cascading randomisation (Adebayo et al. 2018): Spearman correlation with the original map "
                      f"after randomising the model cumulatively down to each layer, mean over {n} pairs "
                      f"[95% t-interval]; a faithful map decorrelates as layers are randomised:", ""]
        for model_name, res in summary.items():
            layers = res["layers"]
            lines.append(f"| {model_name} map | " + " | ".join(layers) + " |")
            lines.append("|---" * (len(layers) + 1) + "|")
            for key, row in res["spearman"].items():
                cells = [f"{m:.2f}" + ("" if math.isnan(lo) else f" [{lo:.2f}, {hi:.2f}]")
                         for m, (lo, hi) in zip(row["mean"], row["ci95"])]
                lines.append(f"| {key} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines) + "\n"
