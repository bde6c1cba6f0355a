"""Deletion / insertion (Petsiuk et al., RISE, BMVC 2018) of one image and of one image of a pair.

Remove (or insert) pixels in the order the map ranks them, track the target's score, report the area
under that curve (deletion: lower is better; insertion: higher is better).

* :func:`perturbation_curve`: a single-input classifier ``model_fn(images) -> logits``.
* :func:`pair_perturbation_curve`: image 1 of a pair is perturbed while its partner, image 2, is held
  fixed; ``pair_fn(images1, image2) -> logits`` (e.g. :func:`pair_path_logits`, the pair-path self
  logits of API-Net, whose gates depend on both images).

Removed pixels are replaced by a baseline: ``"blur"`` (RISE: Gaussian blur, kernel 11, sigma 5),
``"mean"`` (the image's per-channel mean), ``"zero"``, or ``"road"``: the noisy linear imputation of
ROAD (Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods",
ICML 2022; grad-cam's ``pytorch_grad_cam.metrics.road``), which fills the removed pixels from their
remaining neighbours so that the removal's shape leaks less class information than a blurred hole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..resample import upsample_map

__all__ = ["BASELINES", "PerturbationCurve", "baseline_image", "pair_path_logits", "pair_perturbation_aucs",
           "pair_perturbation_curve", "perturbation_curve", "road_impute"]

BASELINES = ("blur", "mean", "zero", "road")
Baseline = Literal["blur", "mean", "zero", "road"]
Score = Literal["probability", "logit"]


@dataclass
class PerturbationCurve:
    """Target score as pixels are deleted or inserted in map order."""

    mode: str  # "deletion" | "insertion"
    baseline: str  # "blur" | "mean" | "zero" | "road"
    fractions: np.ndarray  # [steps + 1] fraction of pixels perturbed, 0..1
    scores: np.ndarray  # [steps + 1] softmax probability (or logit, score="logit") of the target
    auc: float  # trapezoidal area under scores(fractions)


def baseline_image(image, kind: str):
    """The image every removed pixel is taken from, ``[3, H, W]`` (``"blur"``, ``"mean"``, ``"zero"``;
    ``"road"`` depends on which pixels are removed: :func:`road_impute`)."""
    import torch
    from torchvision.transforms.functional import gaussian_blur

    if kind == "blur":  # RISE: Gaussian blur, kernel 11, sigma 5
        return gaussian_blur(image[None], kernel_size=[11, 11], sigma=[5.0, 5.0])[0]
    if kind == "mean":
        return image.mean(dim=(1, 2), keepdim=True).expand_as(image).clone()
    if kind == "zero":
        return torch.zeros_like(image)
    raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {kind!r}")


def road_impute(image, removed: np.ndarray, *, noise: float = 0.01,
                rng: np.random.Generator | None = None):
    """ROAD's noisy linear imputation of the ``removed`` pixels (bool ``[H, W]``) of ``image [3, H, W]``.

    Each removed pixel becomes the weighted mean of its 8 neighbours (weights 1/6 at the sides,
    1/12 at the corners; known neighbours enter as constants), one sparse linear system per image,
    the equations of ``pytorch_grad_cam.metrics.road.NoisyLinearImputer``; then Gaussian noise of
    standard deviation ``noise`` is added to the imputed pixels, drawn from ``rng`` (default: a
    generator seeded with 0, so curves are reproducible) rather than the global RNG. With every pixel
    removed there is nothing to interpolate from: the image's per-channel mean is returned.
    """
    import torch
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer, neighbors_weights
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve

    image = torch.as_tensor(image, dtype=torch.float32)
    removed = np.asarray(removed, dtype=bool)
    if removed.shape != tuple(image.shape[1:]):
        raise ValueError(f"mask {removed.shape} does not match the image {tuple(image.shape[1:])}")
    if not removed.any():
        return image.clone()
    if removed.all():
        return image.mean(dim=(1, 2), keepdim=True).expand_as(image).clone()
    keep = (~removed).astype(np.float64)
    pixels = image.detach().cpu().double().numpy()
    a, b = NoisyLinearImputer.setup_sparse_system(keep, pixels, neighbors_weights)
    solved = np.asarray(spsolve(csc_matrix(a), b)).reshape(-1, pixels.shape[0])  # [n_removed, C]
    rng = np.random.default_rng(0) if rng is None else rng
    if noise:
        solved = solved + noise * rng.standard_normal(solved.shape)
    flat = pixels.reshape(pixels.shape[0], -1).copy()
    flat[:, np.flatnonzero(removed.ravel())] = solved.T
    return torch.as_tensor(flat.reshape(pixels.shape), dtype=torch.float32).to(image.device)


def _pixel_rank(saliency: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rank of every pixel by the saliency upsampled to the image (stable: ties keep row-major order)."""
    order = np.argsort(-upsample_map(saliency, (height, width)).ravel(), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank.reshape(height, width)


def perturbation_curve(model_fn: Callable, image, saliency: np.ndarray, target: int, *,
                       mode: Literal["deletion", "insertion"] = "deletion", steps: int = 20,
                       baseline: Baseline = "blur", batch_size: int = 32, score: Score = "probability",
                       road_noise: float = 0.01, seed: int = 0) -> PerturbationCurve:
    """Deletion or insertion curve of ``saliency`` for ``model_fn`` on ``image [3, H, W]``.

    ``model_fn`` maps ``[B, 3, H, W]`` to logits ``[B, C]``. Pixels are ranked by the saliency
    upsampled to the image (stable sort, so ties keep row-major order); after step i the first
    ``round(i / steps * H * W)`` of them are replaced by the baseline (deletion) or taken from the
    image, the rest being baseline (insertion). ``score``: the target's softmax probability (RISE)
    or its logit. ``baseline="road"`` imputes the removed pixels of every step anew
    (:func:`road_impute`, noise ``road_noise`` from a generator seeded with ``seed``).
    """
    import torch

    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if score not in ("probability", "logit"):
        raise ValueError(f"score must be 'probability' or 'logit', got {score!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    image = torch.as_tensor(image, dtype=torch.float32)
    _, height, width = image.shape
    rank = _pixel_rank(saliency, height, width)
    rank_t = torch.as_tensor(rank)
    counts = [round(i / steps * height * width) for i in range(steps + 1)]
    rng = np.random.default_rng(seed)
    if baseline == "road":
        def batch_for(chunk: list[int]):
            # deletion removes the first n ranked pixels; insertion keeps only them
            return torch.stack([road_impute(image, (rank < n) if mode == "deletion" else (rank >= n),
                                            noise=road_noise, rng=rng) for n in chunk])
    else:
        base = baseline_image(image, baseline)
        start, end = (image, base) if mode == "deletion" else (base, image)

        def batch_for(chunk: list[int]):
            changed = torch.stack([(rank_t < n) for n in chunk])[:, None].float()  # [b, 1, H, W]
            return start[None] * (1 - changed) + end[None] * changed

    scores = []
    with torch.no_grad():
        for lo in range(0, len(counts), batch_size):
            logits = model_fn(batch_for(counts[lo: lo + batch_size])).float()
            values = torch.softmax(logits, dim=1)[:, target] if score == "probability" else logits[:, target]
            scores.append(values.cpu().numpy())
    fractions = np.asarray(counts, dtype=np.float64) / (height * width)
    values = np.concatenate(scores).astype(np.float64)
    auc = float(np.sum((values[1:] + values[:-1]) * np.diff(fractions)) / 2.0)
    return PerturbationCurve(mode, baseline, fractions, values, auc)


def pair_perturbation_curve(pair_fn: Callable, image1, image2, saliency: np.ndarray, target: int,
                            **kwargs) -> PerturbationCurve:
    """Deletion / insertion of image 1 of a pair with its partner ``image2 [3, H, W]`` held fixed.

    ``pair_fn(images1 [B, 3, H, W], image2 [3, H, W])`` returns logits ``[B, C]`` of image 1 in the
    pair (for API-Net: :func:`pair_path_logits`); ``saliency`` is image 1's map. Keyword arguments
    are those of :func:`perturbation_curve`. To score image 2, swap the images (and the model's
    roles: ``pair_path_logits`` always scores the perturbed image).
    """
    import torch

    fixed = torch.as_tensor(image2, dtype=torch.float32)
    return perturbation_curve(lambda batch: pair_fn(batch, fixed), image1, saliency, target, **kwargs)


def pair_path_logits(model, path: Literal["self", "other"] = "self") -> Callable:
    """``pair_fn`` for :func:`pair_perturbation_curve` from an API-Net: the logits of the perturbed
    image's pair path, ``fc(x_1 + x_1 * g_1)`` (``"self"``) or ``fc(x_1 + x_1 * g_2)`` (``"other"``),
    with the gates computed from the perturbed image and the fixed partner (the model in eval mode:
    call ``model.eval()`` first, as the dropout of the interaction and the classifier would otherwise
    add noise). The partner's pooled features are computed once per batch."""
    import torch

    if path not in ("self", "other"):
        raise ValueError(f"path must be 'self' or 'other', got {path!r}")

    def pair_fn(images1, image2):
        device = next(model.parameters()).device
        images1 = torch.as_tensor(images1, dtype=torch.float32).to(device)
        partner = torch.as_tensor(image2, dtype=torch.float32).to(device)[None]
        pooled1 = model.pool_features(model.forward_features(images1))
        pooled2 = model.pool_features(model.forward_features(partner)).expand(pooled1.shape[0], -1)
        out = model.interact(pooled1, pooled2)
        return out.logits1_self if path == "self" else out.logits1_other

    return pair_fn


def pair_perturbation_aucs(model, image1, image2, maps: Mapping[str, np.ndarray], target: int, *,
                           path: Literal["self", "other"] = "self", **kwargs) -> dict[str, dict[str, float]]:
    """Deletion and insertion AUC of image 1's pair-path score for each of several maps of image 1
    (``{map name: [h, w]}``), the partner ``image2`` held fixed: ``{name: {"deletion": auc,
    "insertion": auc}}``. Keyword arguments go to :func:`perturbation_curve` (``steps``,
    ``baseline``, ``score``, ...); the model should be in eval mode."""
    pair_fn = pair_path_logits(model, path)
    out: dict[str, dict[str, float]] = {}
    for name, saliency in maps.items():
        out[name] = {mode: pair_perturbation_curve(pair_fn, image1, image2, saliency, target, mode=mode,
                                                   **kwargs).auc
                     for mode in ("deletion", "insertion")}
    return out
