"""The explanation protocol: does the map of image A point at the part that tells A from B?

:func:`evaluate_explanations` runs every metric of :mod:`apinet.metrics` on contrast pairs with ground
truth (:mod:`apinet.data.contrast_pairs`): SynthBirds sibling pairs (classes that differ in exactly
one part, scored against the part's pixel mask) or CUB-200-2011 (each species with its nearest
species by annotated attributes, scored against the keypoints of the body region they differ in
most). It returns an :class:`ExplanationResults`; ``.to_dict()`` is the ``results.json`` of
``python -m apinet evaluate-explanations`` (benchmarks/explanations/PROTOCOL.md), and
:func:`apinet.metrics.report.results_markdown` its table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..resample import upsample_map
from .localisation import TIE_RTOL, energy_pointing_game, pointing_outcomes, standard_tolerance, within_tolerance
from .perturbation import pair_perturbation_aucs, perturbation_curve
from .randomization import RANDOMIZATION_SEEDS
from .sanity import SANITY_PAIRS, pair_sanity, sanity_summary
from .statistics import hit_rate, mcnemar_exact, paired_sign_flip

__all__ = ["COMPARISONS", "MAP_TYPES", "TIE_RULE", "ExplanationResults", "chance_maps", "evaluate_explanations",
           "expected_point_rate", "maps_for_image"]

#: The pointing game's tie rule since PROTOCOL.md amendment 6 (``results.json``'s ``tie_rule``).
TIE_RULE = (f"expected hit under a uniform choice among the tied maxima (pixels within {TIE_RTOL:g} of the maximum, "
            f"relatively, on the map upsampled to float32)")
#: The rule of every run before amendment 6 (a ``results.json`` without ``tie_rule``).
OLD_TIE_RULE = "first maximum in row-major order"

# Fields added after results.json files were stored: read back from an older file with these values.
_ADDED_FIELDS = {"tie_rule": OLD_TIE_RULE, "sanity_seeds": [0]}


@dataclass(eq=False)
class ExplanationResults(Mapping):
    """What :func:`evaluate_explanations` measured. The fields, in this order, are the keys of
    ``results.json`` (:meth:`to_dict`); read-only ``results["key"]`` access works as on that dict."""

    checkpoint: str
    baseline: str | None
    pairs: int
    images_scored: int
    distinct_images: int
    images_skipped_part_occluded: int
    dataset: str  # "<data> <split>"
    data: str
    split: str
    tolerance_px: float
    tolerance_measured_on: str
    part_radius_px: float | None
    input_size: int
    preprocess: dict[str, Any]
    mean_part_area_fraction: float
    mean_bird_area_fraction: float
    summary: dict[str, dict[str, Any]]  # map type -> pointing, CIs, energy, by part, deletion / insertion AUC
    comparisons: list[dict[str, Any]]  # McNemar tests of COMPARISONS at "tol" and "0px"
    deletion_pairs: int
    deletion_images: list[int]
    steps: int
    sanity_pairs: int
    sanity_summary: dict[str, Any]
    sanity: list[dict[str, Any]]
    records: list[dict[str, Any]]  # per pair: indices, classes, part, every hit (expected hit under the tie rule)
    tie_rule: str  # how a map with several maximal pixels is scored (TIE_RULE)
    sanity_seeds: list[int]  # seeds of the randomisation check (each re-initialises every layer once)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The ``results.json`` dict (shallow: the nested values are this object's own)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ExplanationResults":
        """Read back a ``results.json`` (unknown keys are ignored, missing ones are an error)."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data and n not in _ADDED_FIELDS]
        if missing:
            raise ValueError(f"not an evaluate-explanations result: missing {', '.join(missing)}")
        return cls(**{n: data[n] if n in data else _ADDED_FIELDS[n] for n in names})

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    @classmethod
    def _keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


#: Map types compared by ``evaluate-explanations`` (a key is skipped when the models lack it).
#: ``apinet_top_gated_channel`` ranks channels by the gate g_i (the paper's figure);
#: ``apinet_top_gate_x_act_channel`` by g_i * x_i (the channel's share of the gated residual);
#: ``apinet_top_activation_channel`` by x_i alone (a control: API-Net's trunk without the gate).
MAP_TYPES = (
    "apinet_top_gated_channel", "apinet_top_gate_x_act_channel", "apinet_top_activation_channel",
    "apinet_ltpa_pooled", "apinet_ltpa_gated", "apinet_ltpa_trained", "apinet_gradcam_pair", "apinet_gradcam_test",
    "baseline_top_channel", "baseline_gradcam", "random", "chance_bird_point", "chance_box_centre",
    # issue #14's pair-native maps (PROTOCOL.md amendment 5): "why A and not B" and the exact pair contrast
    "apinet_top_contribution_channel", "apinet_class_contrast", "baseline_class_contrast", "apinet_finercam",
    "baseline_finercam", "apinet_pair_contrast",
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
    # amendment 5: H5 is the first two rows; the rest is descriptive
    ("apinet_class_contrast", "apinet_gradcam_test"),
    ("apinet_class_contrast", "chance_bird_point"),
    ("baseline_class_contrast", "baseline_gradcam"),
    ("apinet_finercam", "apinet_gradcam_test"),
    ("apinet_pair_contrast", "chance_bird_point"),
    ("apinet_top_contribution_channel", "apinet_top_gated_channel"),
)


def maps_for_image(expl, i: int, rng: np.random.Generator, maps: np.ndarray | None = None,
                   noise_shape: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Every map type of image ``i`` (1 or 2) of an explanation; ``maps`` are API-Net's feature maps
    ``[2, D, h, w]`` of the pair, needed for the gate x activation and activation rankings (else those
    keys are left out). ``random`` is i.i.d. uniform noise of ``noise_shape``: the protocol passes the
    network input's size, so its maximum is a uniformly random *input pixel* (at the feature maps'
    size, the default, bilinear upsampling puts the maximum on one of the h x w cell centres)."""
    from ..explain import gate_topk_channels

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
    if maps is not None and expl.contribution(i) is not None:
        out["apinet_top_contribution_channel"] = maps[i - 1, int(expl.contribution_order(i)[0])]
    for name, key in (("apinet_class_contrast", "apinet/test/class_contrast"),
                      ("baseline_class_contrast", "baseline/test/class_contrast"),
                      ("apinet_finercam", "apinet/test/finercam"), ("baseline_finercam", "baseline/test/finercam")):
        if key in expl.contrast_cams:
            out[name] = getattr(expl.contrast_cams[key], f"map{i}")
    if f"{i}_contrast" in expl.exact_cams:
        out["apinet_pair_contrast"] = expl.exact_cams[f"{i}_contrast"].display
    shape = noise_shape or out["apinet_top_gated_channel"].shape
    out["random"] = rng.random(shape).astype(np.float32)
    return out


def _point_map(row: int, col: int, size: int) -> np.ndarray:
    """A map at input resolution whose only maximum is pixel (row, col), clipped into the input."""
    m = np.zeros((size, size), dtype=np.float32)
    m[min(max(int(row), 0), size - 1), min(max(int(col), 0), size - 1)] = 1.0
    return m


def chance_maps(obj: np.ndarray, centre: tuple[float, float], rng: np.random.Generator) -> dict[str, np.ndarray]:
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


def expected_point_rate(obj: np.ndarray, part: np.ndarray, tolerance: float) -> float:
    """Probability that a uniformly random pixel of ``obj`` lies within ``tolerance`` px of ``part``
    (the exact expectation of ``chance_bird_point``'s hit, same distance as :func:`pointing_game`)."""
    from scipy.ndimage import distance_transform_edt

    if not obj.any():
        return float("nan")
    distance = distance_transform_edt(~part)  # 0 on the part, else Euclidean distance to its nearest pixel
    return float(np.mean(distance[obj] <= max(tolerance, 0.0)))


def evaluate_explanations(checkpoint: str | Path, baseline: str | Path | None, *, pairs: int = 380,
                          data: str = "synthbirds", split: str = "test", tolerance: float | None = None,
                          part_radius: float | None = None, deletion_pairs: int = 4, steps: int = 16,
                          sanity_pairs: int = SANITY_PAIRS, seed: int = 0, pair_deletion: bool = True,
                          sanity_seeds: tuple[int, ...] = RANDOMIZATION_SEEDS,
                          log: Callable[[str], None] | None = print) -> ExplanationResults:
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
    :data:`COMPARISONS` are tested pairwise at both.

    Tie rule (PROTOCOL.md amendment 6): a map scores its *expected* hit under a uniform choice among
    its tied maximal pixels (:func:`~apinet.metrics.localisation.pointing_outcomes`; ReLU6 channel
    maps of EfficientNet-Lite have plateaus at 6.0), so rates are means of expected hits and the
    comparisons use :func:`~apinet.metrics.statistics.paired_sign_flip` on them (McNemar's exact test
    where every outcome is 0 or 1). Each summary also keeps the two other rules
    (``pointing_first``: the first maximum in row-major order, the rule before amendment 6;
    ``pointing_any``: any maximum counts) and how often maps tie (``tied_share``, ``tied_median``);
    each comparison also McNemar's test under the first-maximum rule (``mcnemar_first``).

    Chance levels, scored like the maps: ``random`` (i.i.d. noise: its argmax is a uniformly random
    input pixel), ``chance_bird_point`` (a uniformly random pixel of the visible bird; CUB: of its
    box; its exact expected rate is reported as ``pointing_expected``) and ``chance_box_centre``
    (the bird box's centre). A map that points at the part no more often than a random point on the
    bird has shown only that it looks at the bird.

    Deletion / insertion run on the first image of the first ``deletion_pairs`` pairs whose first
    image has not been used yet (distinct images); with ``pair_deletion`` (API-Net only) also on the
    pair-path self score of that image with its partner held fixed (``pair_deletion_auc``,
    ``pair_insertion_auc``: the pair's own faithfulness, PROTOCOL.md amendment 5). The sanity check runs on the first
    ``sanity_pairs`` pairs, once per seed of ``sanity_seeds``, and reports, per randomised layer, the
    mean Spearman correlation with a 95 % interval over pairs and seeds
    (:func:`~apinet.metrics.sanity.sanity_summary`).
    """
    import torch

    from ..data import build_dataset
    from ..data.contrast_pairs import cub_pairs, synthbirds_pairs
    from ..explain import explain_pair, load_pair_models, preprocess_from_card

    model, card, bmodel, _ = load_pair_models(checkpoint, baseline)
    pre = preprocess_from_card(card)
    standard = standard_tolerance(pre.input_size)
    tolerance = standard if tolerance is None else float(tolerance)
    tolerances = {"tol": tolerance, "0px": 0.0}
    kind = data.split(":", 1)[0].strip().lower()
    if kind == "synthbirds":
        dataset = build_dataset(data, split, image_size=pre.resize)
        source = synthbirds_pairs(dataset, pre, pairs)
        part_radius = None
    elif kind == "cub":
        dataset = build_dataset(data, split)
        part_radius = 0.0 if part_radius is None else float(part_radius)
        source = cub_pairs(dataset, pre, pairs, part_radius)
    else:
        raise ValueError(f"evaluate-explanations needs part annotations: data 'synthbirds[:SEED]' or 'cub:PATH', "
                         f"got {data!r}")
    n_classes = len(dataset.classes)
    head = model.fc.out_features if hasattr(model, "fc") else n_classes
    if head != n_classes:
        raise ValueError(f"{checkpoint} has {head} classes, {data} has {n_classes}: use a checkpoint trained on it")
    rng = np.random.default_rng(seed)
    chance_rng = np.random.default_rng([seed, 1])  # its own stream: the noise maps stay as they were
    hits: dict[str, dict[str, list[float]]] = {key: {} for key in tolerances}  # expected hits (the tie rule)
    first_hits: dict[str, dict[str, list[int]]] = {key: {} for key in tolerances}  # first maximum (old rule)
    any_hits: dict[str, dict[str, list[int]]] = {key: {} for key in tolerances}  # any maximum (Quantus)
    tied: dict[str, list[int]] = {}  # number of tied maximal pixels per scoring
    expected: dict[str, list[float]] = {key: [] for key in tolerances}
    noise_expected: dict[str, list[float]] = {key: [] for key in tolerances}
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
            within = {key: within_tolerance(mask, tol) for key, tol in tolerances.items()}
            for key, tol in tolerances.items():
                expected[key].append(expected_point_rate(obj, mask, tol))
                noise_expected[key].append(float(within[key].mean()))  # a uniformly random input pixel
            maps = {**maps_for_image(expl, i, rng, feature_maps, noise_shape=mask.shape),
                    **chance_maps(obj, centre, chance_rng)}
            for name, m in maps.items():
                up = upsample_map(m, mask.shape)
                for key in tolerances:
                    outcome = pointing_outcomes(up, within[key])
                    hits[key].setdefault(name, []).append(outcome.expected)
                    first_hits[key].setdefault(name, []).append(int(outcome.first))
                    any_hits[key].setdefault(name, []).append(int(outcome.any))
                    record["hits"][f"{i}/{name}/{key}"] = outcome.expected
                tied.setdefault(name, []).append(outcome.tied)
                energy.setdefault(name, []).append(energy_pointing_game(m, mask))
                by_part.setdefault(name, {}).setdefault(pair.region, []).append(hits["tol"][name][-1])
        records.append(record)
        if len(deletion_images) < deletion_pairs and int(pair.indices[0]) not in deletion_images:
            deletion_images.append(int(pair.indices[0]))
            apinet_maps = {name: m for name, m in maps_for_image(expl, 1, rng, feature_maps,
                                                                 noise_shape=pair.masks[0].shape).items()
                           if not name.startswith("baseline")}
            for name, m in apinet_maps.items():
                for mode in ("deletion", "insertion"):
                    curve = perturbation_curve(model, x[0], m, a, mode=mode, steps=steps, baseline="blur")
                    deletion.setdefault(name, {}).setdefault(mode, []).append(curve.auc)
            if pair_deletion and hasattr(model, "interact"):  # the pair-path score of image 1, its partner held fixed (amendment 5)
                aucs = pair_perturbation_aucs(model, x[0], x[1], apinet_maps, a, steps=steps, baseline="blur")
                for name, by_mode in aucs.items():
                    for mode, auc in by_mode.items():
                        deletion[name].setdefault(f"pair_{mode}", []).append(auc)
        if p < sanity_pairs:
            sanity.append(pair_sanity(model, bmodel, pair.image1, pair.image2, pre, (a, b), seeds=sanity_seeds))
        if log and (p + 1) % 20 == 0:
            log(f"  {p + 1}/{pairs} pairs, {time.perf_counter() - tic:.1f} s")
    summary = {}
    for name in hits["tol"]:
        tol_rate, zero_rate = hit_rate(hits["tol"][name]), hit_rate(hits["0px"][name])
        summary[name] = {
            "n": len(hits["tol"][name]), "pointing": tol_rate["rate"], "pointing_ci95": tol_rate["ci95"],
            "pointing_0px": zero_rate["rate"], "pointing_0px_ci95": zero_rate["ci95"],
            "energy": float(np.mean(energy[name])),
            "pointing_by_part": {part: float(np.mean(v)) for part, v in sorted(by_part[name].items())},
            "pointing_first": float(np.mean(first_hits["tol"][name])),
            "pointing_0px_first": float(np.mean(first_hits["0px"][name])),
            "pointing_any": float(np.mean(any_hits["tol"][name])),
            "pointing_0px_any": float(np.mean(any_hits["0px"][name])),
            "tied_share": float(np.mean(np.asarray(tied[name]) > 1)),
            "tied_median": float(np.median([t for t in tied[name] if t > 1] or [1])),
        }
        if name in deletion:
            summary[name]["deletion_auc"] = float(np.mean(deletion[name]["deletion"]))
            summary[name]["insertion_auc"] = float(np.mean(deletion[name]["insertion"]))
            if "pair_deletion" in deletion[name]:
                summary[name]["pair_deletion_auc"] = float(np.mean(deletion[name]["pair_deletion"]))
                summary[name]["pair_insertion_auc"] = float(np.mean(deletion[name]["pair_insertion"]))
    if "chance_bird_point" in summary:
        summary["chance_bird_point"]["pointing_expected"] = float(np.mean(expected["tol"]))
        summary["chance_bird_point"]["pointing_0px_expected"] = float(np.mean(expected["0px"]))
    if "random" in summary:  # noise at input resolution: its maximum is a uniformly random input pixel
        summary["random"]["pointing_expected"] = float(np.mean(noise_expected["tol"]))
        summary["random"]["pointing_0px_expected"] = float(np.mean(noise_expected["0px"]))
    comparisons = []
    for j, (map_a, map_b) in enumerate(COMPARISONS):
        if map_a in hits["tol"] and map_b in hits["tol"]:
            comparisons.append({"a": map_a, "b": map_b, **{
                key: {**paired_sign_flip(hits[key][map_a], hits[key][map_b], seed=seed * 1000 + 2 * j + t),
                      "mcnemar_first": mcnemar_exact(first_hits[key][map_a], first_hits[key][map_b])}
                for t, key in enumerate(tolerances)}})
    return ExplanationResults(**{
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
        "sanity": sanity, "records": records, "tie_rule": TIE_RULE, "sanity_seeds": [int(x) for x in sanity_seeds],
        "seconds": time.perf_counter() - tic,
    })
