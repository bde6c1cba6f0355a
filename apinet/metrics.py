"""How good is an explanation? Localisation, faithfulness and sanity metrics on plain arrays.

* Pointing game (Zhang et al., ECCV 2016): does the maximum of the (bilinearly upsampled) map fall
  inside the annotation (optionally within ``tolerance`` pixels)? :func:`pointing_game`, and
  :func:`pointing_game_points` for keypoints such as CUB part locations (hit = within ``radius``).
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
that differ in exactly one part): does the map of image A point at the part that tells A from B?
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._io import to_jsonable

__all__ = [
    "PerturbationCurve",
    "RandomizationResult",
    "cascading_randomization",
    "default_randomization_order",
    "energy_pointing_game",
    "evaluate_explanations",
    "perturbation_curve",
    "pointing_game",
    "pointing_game_points",
    "register",
    "spearman",
    "upsample_map",
]


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
MAP_TYPES = (
    "apinet_top_gated_channel", "apinet_ltpa_pooled", "apinet_ltpa_gated", "apinet_ltpa_trained",
    "apinet_gradcam_pair", "apinet_gradcam_test", "baseline_top_channel", "baseline_gradcam", "random",
)


def _maps_for_image(expl, i: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    last = expl.settings["ltpa_stages"][-1]
    out: dict[str, np.ndarray] = {
        "apinet_top_gated_channel": getattr(expl.channels[f"apinet_gate{i}"], f"maps{i}")[0],
    }
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
    """Apply the preprocessing geometry (resize shorter side, centre crop) to a mask."""
    from PIL import Image

    h, w = mask.shape
    scale = preprocess.resize / min(h, w)
    nh, nw = round(h * scale), round(w * scale)
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    if (nh, nw) != (h, w):
        img = img.resize((nw, nh), Image.NEAREST)
    top, left = (nh - preprocess.input_size) // 2, (nw - preprocess.input_size) // 2
    img = img.crop((left, top, left + preprocess.input_size, top + preprocess.input_size))
    return np.asarray(img) > 127


def _wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def evaluate_explanations(checkpoint: str | Path, baseline: str | Path | None, *, pairs: int = 40,
                          dataset_seed: int = 0, tolerance: float = 0.0, deletion_pairs: int = 4,
                          steps: int = 16, sanity_pairs: int = 1, seed: int = 0,
                          log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Pointing / energy game on SynthBirds sibling test pairs, deletion / insertion, sanity check."""
    import torch

    from .data.synthbirds import SynthBirds
    from .explain import explain_pair, load_pair_models, preprocess_from_card

    model, card, bmodel, _ = load_pair_models(checkpoint, baseline)
    pre = preprocess_from_card(card)
    data = SynthBirds("test", seed=dataset_seed, image_size=pre.resize)
    siblings = SynthBirds.sibling_pairs()
    n_classes = data.num_classes
    rng = np.random.default_rng(seed)
    hits: dict[str, list[int]] = {}
    energy: dict[str, list[float]] = {}
    by_part: dict[str, dict[str, list[int]]] = {}
    area: list[float] = []
    skipped = 0
    records = []
    deletion: dict[str, dict[str, list[float]]] = {}
    sanity: list[dict[str, Any]] = []
    tic = time.perf_counter()
    for p in range(pairs):
        a, b, part = siblings[p % len(siblings)]
        rnd = (p // len(siblings)) % data.per_class
        ia, ib = rnd * n_classes + a, rnd * n_classes + b
        sa, sb = data.sample(ia), data.sample(ib)
        expl = explain_pair(model, sa.image, sb.image, bmodel, preprocess=pre, targets=(a, b), k=5,
                            cam_methods=("gradcam",), class_names=data.classes)
        record = {"pair": [int(ia), int(ib)], "classes": [a, b], "part": part, "hits": {}}
        for i, sample in ((1, sa), (2, sb)):
            mask = _mask_to_input(sample.masks[part], pre)
            if not mask.any():
                skipped += 1
                continue
            area.append(float(mask.mean()))
            for name, m in _maps_for_image(expl, i, rng).items():
                hit = pointing_game(m, mask, tolerance)
                hits.setdefault(name, []).append(int(hit))
                energy.setdefault(name, []).append(energy_pointing_game(m, mask))
                by_part.setdefault(name, {}).setdefault(part, []).append(int(hit))
                record["hits"][f"{i}/{name}"] = bool(hit)
        records.append(record)
        if p < deletion_pairs:
            x = pre(sa.image)
            for name, m in _maps_for_image(expl, 1, rng).items():
                if name.startswith("baseline"):
                    continue
                for mode in ("deletion", "insertion"):
                    curve = perturbation_curve(model, x, m, a, mode=mode, steps=steps, baseline="blur")
                    deletion.setdefault(name, {}).setdefault(mode, []).append(curve.auc)
        if p < sanity_pairs:
            sanity.append(_sanity(model, bmodel, sa.image, sb.image, pre, (a, b)))
        if log and (p + 1) % 10 == 0:
            log(f"  {p + 1}/{pairs} pairs, {time.perf_counter() - tic:.1f} s")
    summary = {}
    for name in hits:
        n, h = len(hits[name]), int(sum(hits[name]))
        summary[name] = {
            "n": n, "pointing": h / n, "pointing_ci95": _wilson(h, n),
            "energy": float(np.mean(energy[name])),
            "pointing_by_part": {part: float(np.mean(v)) for part, v in sorted(by_part[name].items())},
        }
        if name in deletion:
            summary[name]["deletion_auc"] = float(np.mean(deletion[name]["deletion"]))
            summary[name]["insertion_auc"] = float(np.mean(deletion[name]["insertion"]))
    return {
        "checkpoint": str(checkpoint), "baseline": None if baseline is None else str(baseline),
        "pairs": pairs, "images_scored": len(area), "images_skipped_part_occluded": skipped,
        "dataset": f"synthbirds:{dataset_seed} test", "tolerance_px": tolerance,
        "mean_part_area_fraction": float(np.mean(area)) if area else float("nan"),
        "summary": summary, "deletion_pairs": deletion_pairs, "steps": steps,
        "sanity": sanity, "records": records, "seconds": time.perf_counter() - tic,
    }


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
    lines = [
        f"Explanations on {results['pairs']} SynthBirds sibling test pairs ({results['images_scored']} images "
        f"scored, {results['images_skipped_part_occluded']} skipped: differing part fully occluded). "
        f"Target of every map: the image's true class. Mean area of the differing part: "
        f"{100 * results['mean_part_area_fraction']:.1f}% of the image (the energy score of a uniform map).",
        "",
        "| map | pointing game | 95% CI | energy in part | deletion AUC (lower better) | insertion AUC |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in sorted(results["summary"].items(), key=lambda kv: -kv[1]["pointing"]):
        lo, hi = s["pointing_ci95"]
        dele = f"{s['deletion_auc']:.3f}" if "deletion_auc" in s else "-"
        ins = f"{s['insertion_auc']:.3f}" if "insertion_auc" in s else "-"
        lines.append(f"| {name} | {s['pointing']:.3f} | {lo:.2f}-{hi:.2f} | {s['energy']:.3f} | {dele} | {ins} |")
    if results["sanity"]:
        lines += ["", "Cascading randomisation (Spearman with the original map, first sanity pair; "
                      "a faithful map decorrelates as layers are randomised):", ""]
        for model_name, res in results["sanity"][0].items():
            layers = res["layers"]
            lines.append(f"| {model_name} map | " + " | ".join(layers) + " |")
            lines.append("|---" * (len(layers) + 1) + "|")
            for key, values in res["spearman"].items():
                lines.append(f"| {key} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
            lines.append("")
    return "\n".join(lines) + "\n"


def register(subparsers) -> None:
    from .explain import DEFAULT_APINET_CHECKPOINT, DEFAULT_BASELINE_CHECKPOINT

    p = subparsers.add_parser(
        "evaluate-explanations", help="score explanation maps on SynthBirds sibling pairs (pointing game, ...)",
        description="Pointing / energy game against the differing part of SynthBirds sibling pairs, "
                    "deletion / insertion AUC, and the cascading model-randomisation sanity check.")
    p.add_argument("--checkpoint", default=str(DEFAULT_APINET_CHECKPOINT))
    p.add_argument("--baseline", default=str(DEFAULT_BASELINE_CHECKPOINT), help="'none' to skip")
    p.add_argument("--pairs", type=int, default=40)
    p.add_argument("--out", required=True, help="output folder (results.json, results.md)")
    p.add_argument("--dataset-seed", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=0.0, help="pointing game tolerance in pixels")
    p.add_argument("--deletion-pairs", type=int, default=4)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--sanity-pairs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    baseline = None if args.baseline.lower() == "none" else args.baseline
    results = evaluate_explanations(args.checkpoint, baseline, pairs=args.pairs, dataset_seed=args.dataset_seed,
                                    tolerance=args.tolerance, deletion_pairs=args.deletion_pairs,
                                    steps=args.steps, sanity_pairs=args.sanity_pairs, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(to_jsonable(results), indent=1) + "\n")
    table = results_markdown(results)
    (out / "results.md").write_text(table)
    print(table)
    return 0


