"""The markdown table of an explanation evaluation (``results.md`` of ``evaluate-explanations``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .sanity import sanity_summary
from .statistics import format_p

__all__ = ["results_markdown"]


def results_markdown(results: Mapping[str, Any]) -> str:
    """A markdown table of :func:`~apinet.metrics.protocol.evaluate_explanations` results (an
    :class:`~apinet.metrics.protocol.ExplanationResults` or the dict of its ``results.json``)."""
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
        f"input (the standard 15 px at 224 px, scaled), and at 0 px. "
        + (f"Tie rule: {results['tie_rule']} (PROTOCOL.md amendment 6); rates are means of expected hits."
           if results.get("tie_rule", "").startswith("expected") else
           "Tie rule: the first maximum in row-major order (the rule before PROTOCOL.md amendment 6)."),
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
        noise = ("i.i.d. noise at input resolution: a uniformly random pixel" if "pointing_expected" in s
                 else "i.i.d. noise at feature-map resolution, upsampled")
        label = {"random": f"random (chance: {noise})",
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
    ties = {name: s for name, s in results["summary"].items() if "pointing_first" in s}
    if ties:
        lines += ["", f"Tie rules at {tol:.1f} px: the score above is the expected hit under a uniform choice among "
                      "a map's tied maxima; beside it, the first maximum in row-major order (this project's rule "
                      "before amendment 6) and 'any maximum counts' (Quantus). 'tied' is the share of scorings "
                      "whose map has more than one maximal pixel, with the median number of tied pixels among them.",
                  "", "| map | uniform over ties (expected) | first maximum | any maximum | tied "
                      "| median tied pixels |",
                  "|---|---|---|---|---|---|"]
        for name, s in sorted(ties.items(), key=lambda kv: -kv[1]["pointing"]):
            lines.append(f"| {name} | {s['pointing']:.3f} | {s['pointing_first']:.3f} | {s['pointing_any']:.3f} "
                         f"| {100 * s['tied_share']:.0f}% | {s['tied_median']:.0f} |")
    if results.get("deletion_images"):
        lines += ["", f"Deletion / insertion: first image of {len(results['deletion_images'])} pairs, "
                      f"{len(set(results['deletion_images']))} distinct images, {results['steps']} steps, blur baseline."]
        paired = {name: s for name, s in results["summary"].items() if "pair_deletion_auc" in s}
        if paired:
            lines += ["", "Pair-path deletion / insertion (API-Net's self score of image 1 with its partner held "
                          "fixed, gates recomputed at every step):", "",
                      "| map | pair deletion AUC (lower better) | pair insertion AUC |", "|---|---|---|"]
            for name, s in sorted(paired.items(), key=lambda kv: kv[1]["pair_deletion_auc"]):
                lines.append(f"| {name} | {s['pair_deletion_auc']:.3f} | {s['pair_insertion_auc']:.3f} |")
    comparisons = results.get("comparisons") or []
    if comparisons and "mcnemar_first" in comparisons[0]["tol"]:
        lines += ["", "Paired comparisons on the same images (two-sided paired sign-flip test on the expected hits, "
                      "exact where every outcome is 0 or 1, where it is McNemar's exact test; 'A ahead' = images "
                      "where map A's expected hit is higher). Last column: McNemar's exact test under the first-"
                      "maximum rule, for comparison with earlier runs:", "",
                  "| map A | map B | tolerance | A | B | A ahead | B ahead | p | p, first maximum |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in comparisons:
            for key, label in (("tol", f"{tol:.1f} px"), ("0px", "0 px")):
                m = c[key]
                lines.append(f"| {c['a']} | {c['b']} | {label} | {m['rate_a']:.3f} | {m['rate_b']:.3f} "
                             f"| {m['a_only']} | {m['b_only']} | {format_p(m)} | {m['mcnemar_first']['p_value']:.2g} |")
    elif comparisons:
        lines += ["", "Paired comparisons on the same images (McNemar's exact test, two-sided; "
                      "'A only' = images only map A points at the part):", "",
                  "| map A | map B | tolerance | A | B | A only | B only | p |", "|---|---|---|---|---|---|---|---|"]
        for c in comparisons:
            for key, label in (("tol", f"{tol:.1f} px"), ("0px", "0 px")):
                m = c[key]
                lines.append(f"| {c['a']} | {c['b']} | {label} | {m['rate_a']:.3f} | {m['rate_b']:.3f} "
                             f"| {m['a_only']} | {m['b_only']} | {m['p_value']:.2g} |")
    summary = results.get("sanity_summary") or (sanity_summary(results["sanity"]) if results.get("sanity") else {})
    if summary:
        n = len(results["sanity"])
        seeds = next(iter(summary.values())).get("seeds", [0])
        if len(seeds) > 1:
            how = (f"mean over {n} pairs x {len(seeds)} seeds (seeds {', '.join(map(str, seeds))}: each re-initialises "
                   f"every layer once, shared by all pairs) [95% two-way bootstrap over pairs and seeds]")
        else:
            how = f"mean over {n} pairs [95% t-interval]"
        lines += ["", f"Cascading randomisation (Adebayo et al. 2018): Spearman correlation with the original map "
                      f"after randomising the model cumulatively down to each layer, {how}; a faithful map "
                      f"decorrelates as layers are randomised:", ""]
        for model_name, res in summary.items():
            layers = res["layers"]
            lines.append(f"| {model_name} map | " + " | ".join(layers) + " |")
            lines.append("|---" * (len(layers) + 1) + "|")
            for key, row in res["spearman"].items():
                cells = [f"{m:.2f}" + ("" if math.isnan(lo) else f" [{lo:.2f}, {hi:.2f}]")
                         for m, (lo, hi) in zip(row["mean"], row["ci95"])]
                lines.append(f"| {key} | " + " | ".join(cells) + " |")
            lines.append("")
            if len(res.get("seeds", [0])) > 1:
                lines += [f"Per-seed means over the pairs ({model_name}; seeds " + ", ".join(map(str, res["seeds"]))
                          + "):", "", f"| {model_name} map | " + " | ".join(layers) + " |",
                          "|---" * (len(layers) + 1) + "|"]
                for key, row in res["spearman"].items():
                    cells = [" / ".join(f"{v:.2f}" for v in per_layer) for per_layer in zip(*row["seed_means"])]
                    lines.append(f"| {key} | " + " | ".join(cells) + " |")
                lines.append("")
    return "\n".join(lines) + "\n"
