"""``explain_pair``: run API-Net (and the baseline) on a pair and assemble a :class:`PairExplanation`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..attention import EXPLAIN_TEMPERATURE
from ._util import softmax, to_numpy
from .cams import CamMaps, cam_method, compute_cams, finer_cams
from .channels import RankBy, channel_sets, check_rank_by, contributions, ranking_order
from .correspondence import unit_vectors
from .exact import class_contrast_maps, default_references, exact_cams, linear_head
from .keys import CamPath, ModelName
from .ltpa import ltpa_maps
from .models import (DEFAULT_APINET_CHECKPOINT, DEFAULT_BASELINE_CHECKPOINT, ImageInput, default_preprocess,
                     describe_model, display_image, forward, load_pair_models, locked_eval, preprocess_from_card,
                     to_tensor)
from .result import RANK_MARGIN, PairExplanation

__all__ = ["explain_pair", "explain_pair_from_checkpoint", "unusual_lines"]


def explain_pair(
    model: nn.Module,
    image1: ImageInput,
    image2: ImageInput,
    baseline: nn.Module | None = None,
    *,
    k: int = 5,
    rank_by: RankBy = "gate",
    cam_methods: Sequence[str] = ("gradcam",),
    preprocess=None,
    class_names: Sequence[str] | None = None,
    targets: tuple[int, int] | None = None,
    ltpa_stages: Sequence[str] | None = None,
    cam_layer: str | None = None,
    cam_paths: Sequence[str] = ("test", "pair"),
    references: tuple[int, int] | None = None,
    contrast: bool = True,
    finer_alpha: float = 1.0,
) -> PairExplanation:
    """Explain how API-Net ``model`` compares ``image1`` with ``image2`` (and the ``baseline``).

    Args:
        model: an :class:`~apinet.model.APINet` (any module with ``forward_stages``,
            ``pool_features``, ``forward_head`` and ``interact``).
        image1, image2: paths, bytes, PIL images (decoded with ``apinet.data.load_image`` and
            ``preprocess``ed), or tensors ``[3, H, W]`` already preprocessed (same size).
        baseline: optional plain classifier explained on the same pair.
        k: channels per channel set.
        rank_by: ``"gate"`` (g_i), ``"gate_x_activation"`` (g_i * x_i, the channel's contribution
            to the gated residual x_i * g_i) or ``"contribution"`` (W[c,k] (1 + g_i[k]) x_i[k], the
            channel's share of the self logit of image i's reference class c).
        cam_methods: any of :data:`CAM_METHODS`; empty for none.
        preprocess: a :class:`~apinet.data.transforms.Preprocess`; default
            :func:`~apinet.explain.models.default_preprocess` (the cardless fallback of
            ``Preprocess.from_card``).
        class_names: names of the C classes (default "0", "1", ...).
        targets: reference class of each image; default its predicted test-path class.
        ltpa_stages: stages for parameter-free LTPA (default: the last stage only).
        cam_layer: CAM layer; ``None`` = the last feature maps (hook-free).
        cam_paths: which API-Net logit paths get CAMs (``"test"``, ``"pair"``).
        references: class B of "why A and not B" for each image (A = its target); default the
            partner's target, or the image's most probable other class when both share one.
        contrast: compute the class-contrast maps and Finer-CAM (``contrast_cams``).
        finer_alpha: Finer-CAM's comparison strength alpha (grad-cam's default 1).
    """
    if not all(hasattr(model, a) for a in ("interact", "forward_stages", "pool_features")):
        raise TypeError("explain_pair needs an API-Net model (with interact); got " + type(model).__name__)
    for method in cam_methods:
        cam_method(method)
    check_rank_by(rank_by)
    if preprocess is None:  # models passed without a card: the one fallback, apinet.data.transforms'
        preprocess = default_preprocess()
    timings: dict[str, float] = {}
    tic = time.perf_counter()
    t1_img = to_tensor(image1, preprocess, "image1")
    t2_img = to_tensor(image2, preprocess, "image2")
    if t1_img.shape != t2_img.shape:
        raise ValueError(f"both images must have the same size, got {tuple(t1_img.shape)} and {tuple(t2_img.shape)}")
    device = next(model.parameters()).device
    x = torch.stack([t1_img, t2_img]).to(device)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    timings["inputs"] = time.perf_counter() - tic

    models = [model] + ([baseline] if baseline is not None else [])
    with locked_eval(models):
        tic = time.perf_counter()
        with torch.no_grad():
            run = forward(model, x, ModelName.APINET)
            out = model.interact(run.pooled[0:1], run.pooled[1:2])
            test = model.forward_head(run.pooled)
            brun = forward(baseline, x, ModelName.BASELINE) if baseline is not None else None
            btest = baseline.forward_head(brun.pooled) if brun is not None else None
        timings["forward"] = time.perf_counter() - tic

        logits = {
            "1_self": to_numpy(out.logits1_self[0]), "1_other": to_numpy(out.logits1_other[0]),
            "2_self": to_numpy(out.logits2_self[0]), "2_other": to_numpy(out.logits2_other[0]),
            "1_test": to_numpy(test[0]), "2_test": to_numpy(test[1]),
        }
        num_classes = logits["1_test"].shape[0]
        if targets is None:
            targets = (int(np.argmax(logits["1_test"])), int(np.argmax(logits["2_test"])))
        targets = (int(targets[0]), int(targets[1]))
        for t in targets:
            if not 0 <= t < num_classes:
                raise ValueError(f"target {t} out of range for {num_classes} classes")
        if btest is not None and btest.shape[1] != num_classes:
            raise ValueError(f"baseline has {btest.shape[1]} classes, API-Net {num_classes}")
        names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")
        if references is None:
            references = default_references(targets, (logits["1_test"], logits["2_test"]))
        references = (int(references[0]), int(references[1]))
        for r in references:
            if not 0 <= r < num_classes:
                raise ValueError(f"reference class {r} out of range for {num_classes} classes")

        tic = time.perf_counter()
        gated = torch.cat([out.self1, out.self2])
        stages = list(ltpa_stages) if ltpa_stages is not None else [run.last]
        with torch.no_grad():  # the trained estimator's projections would otherwise record a graph
            ltpa = ltpa_maps(model, ModelName.APINET, run, stages, gated)
            if brun is not None:
                ltpa.update(ltpa_maps(baseline, ModelName.BASELINE, brun, stages, None))
        timings["ltpa"] = time.perf_counter() - tic

        tic = time.perf_counter()
        cams: dict[str, CamMaps] = {}
        contrast_cams: dict[str, Any] = {}
        if cam_methods:
            use_pair = "pair" in cam_paths
            cams.update(compute_cams(model, ModelName.APINET, x, run, targets, cam_methods, use_pair, cam_layer, size))
            if "test" not in cam_paths:
                cams = {key: v for key, v in cams.items() if key.path != CamPath.TEST}
            if baseline is not None:
                cams.update(compute_cams(baseline, ModelName.BASELINE, x, brun, targets, cam_methods, False,
                                         cam_layer, size))
        if contrast:
            for m, r in ((model, run), (baseline, brun)):
                if m is not None:
                    name = ModelName.APINET if m is model else ModelName.BASELINE
                    contrast_cams.update(finer_cams(m, name, x, r, targets, references, cam_layer, size, finer_alpha))
        timings["cams"] = time.perf_counter() - tic

    tic = time.perf_counter()
    x1, x2 = to_numpy(run.pooled[0]), to_numpy(run.pooled[1])
    g1, g2 = to_numpy(out.gate1[0]), to_numpy(out.gate2[0])
    features = to_numpy(run.features)
    xm = to_numpy(out.mutual[0])
    exact, exact_note = exact_cams(model, features, (g1, g2), targets, logits, size)
    if contrast:
        contrast_cams.update(class_contrast_maps(model, ModelName.APINET, features, targets, references, logits,
                                                 size, gates=(g1, g2), layer=run.last))
        if brun is not None:
            blogits = {"1_test": to_numpy(btest[0]), "2_test": to_numpy(btest[1])}
            contrast_cams.update(class_contrast_maps(baseline, ModelName.BASELINE, to_numpy(brun.features), targets,
                                                     references, blogits, size, layer=brun.last))
    timings["exact"] = time.perf_counter() - tic

    tic = time.perf_counter()
    head = linear_head(model)
    contribution = ((None, None) if head is None else
                    tuple(contributions(head[0][t], g, xi).astype(np.float32)
                          for t, g, xi in ((targets[0], g1, x1), (targets[1], g2, x2))))
    if rank_by == "contribution" and head is None:
        raise ValueError("rank_by='contribution' needs a model whose classifier is one nn.Linear")
    channels = channel_sets(k, rank_by, x1, x2, g1, g2, xm, features, contribution, brun)
    order1 = ranking_order(rank_by, g1, x1, xm, contribution[0])
    order2 = ranking_order(rank_by, g2, x2, xm, contribution[1])
    probabilities = {key: softmax(v).astype(np.float32) for key, v in logits.items()}
    p = {key: float(v[targets[0] if key.startswith("1") else targets[1]]) for key, v in probabilities.items()}
    units = [unit_vectors(features[i]) for i in (0, 1)]
    timings["assemble"] = time.perf_counter() - tic

    a2 = dict(run.a2)
    if brun is not None:
        a2.update(brun.a2)
    settings = {
        "k": int(k), "rank_by": rank_by, "cam_methods": list(cam_methods), "cam_layer": cam_layer or run.last,
        "cam_paths": list(cam_paths), "ltpa_stages": stages, "preprocess": preprocess.to_dict(),
        "apinet": describe_model(model), "baseline": describe_model(baseline) if baseline is not None else None,
        "ltpa_similarity": "dot", "ltpa_temperature": EXPLAIN_TEMPERATURE,
        "rank_margin": RANK_MARGIN, "references": list(references), "finer_alpha": float(finer_alpha),
        "exact_cams": exact_note or "exact: mean + bias = the model's logits (checked)", "timings_s": timings,
    }
    return PairExplanation(
        image1=display_image(t1_img, preprocess), image2=display_image(t2_img, preprocess),
        class_names=names, features1=x1, features2=x2, mutual=xm, gate1=g1, gate2=g2,
        logits=logits, targets=targets,
        p_self1=float(p["1_self"]), p_other1=float(p["1_other"]),
        p_self2=float(p["2_self"]), p_other2=float(p["2_other"]),
        rank_term1=float(max(0.0, p["1_other"] - p["1_self"] + RANK_MARGIN)),
        rank_term2=float(max(0.0, p["2_other"] - p["2_self"] + RANK_MARGIN)),
        channels=channels, ltpa=ltpa, cams=cams, a2=a2,
        baseline_logits={} if btest is None else {"1_test": to_numpy(btest[0]), "2_test": to_numpy(btest[1])},
        baseline_features1=None if brun is None else to_numpy(brun.pooled[0]),
        baseline_features2=None if brun is None else to_numpy(brun.pooled[1]),
        settings=settings,
        interaction={name: to_numpy(getattr(out, name)[0]) for name in ("self1", "other1", "self2", "other2")},
        gate_order1=order1, gate_order2=order2, probabilities=probabilities, rank_margin=RANK_MARGIN,
        exact_cams=exact, contrast_cams=contrast_cams, contribution1=contribution[0], contribution2=contribution[1],
        unit_features1=units[0], unit_features2=units[1],
    )


def explain_pair_from_checkpoint(image1: ImageInput, image2: ImageInput,
                                 checkpoint: str | Path = DEFAULT_APINET_CHECKPOINT,
                                 baseline: str | Path | None = DEFAULT_BASELINE_CHECKPOINT,
                                 **kwargs: Any) -> PairExplanation:
    """Load the checkpoints (with their cards' preprocessing and class names) and explain a pair;
    images unlike the model's training data are flagged in :attr:`PairExplanation.unusual` when the
    checkpoint carries a reference (:mod:`apinet.ood`)."""
    from ..ood import FeatureReference

    model, card, bmodel, _ = load_pair_models(checkpoint, baseline)
    kwargs.setdefault("preprocess", preprocess_from_card(card))
    kwargs.setdefault("class_names", card.get("class_names"))
    expl = explain_pair(model, image1, image2, bmodel, **kwargs)
    reference = FeatureReference.from_checkpoint(checkpoint, card)
    if reference is not None:
        expl.unusual = unusual_lines(reference, expl)
    return expl


def unusual_lines(reference, expl: PairExplanation) -> tuple[str | None, str | None]:
    """For each image of the pair, the reference's one-line warning when it is unlike the training data."""
    scores = reference.scores(np.stack([expl.features1, expl.features2]))
    return tuple(reference.message(float(s)) if s > reference.threshold else None for s in scores)  # type: ignore
