"""The cascading randomisation check of the explanation protocol: which maps of a pair are tested
(:func:`pair_sanity`) and the summary over many pairs (:func:`sanity_summary`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .randomization import RANDOMIZATION_SEEDS, cascading_randomization_seeds
from .statistics import t_interval, two_way_bootstrap

__all__ = ["SANITY_PAIRS", "pair_sanity", "sanity_summary"]

#: Default number of pairs of the randomisation sanity check: 38 = every SynthBirds sibling pair twice,
#: enough for a t-interval of the mean Spearman correlation per randomised layer.
SANITY_PAIRS = 38


def _by_seed(values: Any) -> np.ndarray:
    """One pair's correlations as ``[n_seeds, L]``: a run with seeds stores ``[[L] per seed]``, a run
    from before amendment 6 one cascade ``[L]`` (a single seed)."""
    arr = np.asarray(values, dtype=np.float64)
    return arr[None] if arr.ndim == 1 else arr


def sanity_summary(sanity: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per model, map type and randomised layer: the mean Spearman correlation over the sanity pairs
    and seeds, and its 95 % interval (``ci95``) with the method in ``interval``:

    * several seeds (PROTOCOL.md amendment 6): a two-way bootstrap over pairs and seeds
      (:func:`~apinet.metrics.statistics.two_way_bootstrap`), so the interval includes the variance
      between random re-initialisations; ``seed_means`` gives each seed's mean over the pairs;
    * one seed (earlier runs): a Student-t interval over the pairs (NaN with fewer than 2 pairs).

    Also the min and max over pairs and seeds, ``n`` (pairs) and ``seeds``."""
    out: dict[str, Any] = {}
    for model_name in (sanity[0] if sanity else {}):
        first = sanity[0][model_name]
        layers = first["layers"]
        seeds = list(first.get("seeds", [0]))
        rows: dict[str, Any] = {}
        for key in first["spearman"]:
            values = np.stack([_by_seed(s[model_name]["spearman"][key]) for s in sanity])  # [n, S, L]
            n, n_seeds = values.shape[:2]
            if n_seeds > 1 and n > 1:
                mean, lo, hi = two_way_bootstrap(values)
                interval = "two-way bootstrap over pairs and seeds"
            else:
                mean, half = t_interval(values[:, 0])
                lo, hi = mean - half, mean + half
                interval = "t over pairs"
            rows[key] = {"mean": mean.tolist(), "ci95": list(zip(np.asarray(lo).tolist(), np.asarray(hi).tolist())),
                         "min": values.min(axis=(0, 1)).tolist(), "max": values.max(axis=(0, 1)).tolist(),
                         "seed_means": values.mean(axis=0).tolist(), "n": n, "interval": interval}
        out[model_name] = {"layers": layers, "seeds": seeds, "spearman": rows}
    return out


def _per_seed(results) -> dict[str, Any]:
    """The cascades of several seeds as one dict: ``spearman[key]`` is ``[[L] per seed]``."""
    return {"layers": results[0].layers, "seeds": None,
            "spearman": {k: [r.spearman[k] for r in results] for k in results[0].spearman},
            "spearman_abs": {k: [r.spearman_abs[k] for r in results] for k in results[0].spearman_abs}}


def pair_sanity(model, bmodel, image1, image2, pre, targets,
                seeds: Sequence[int] = RANDOMIZATION_SEEDS) -> dict[str, Any]:
    """Cascading randomisation of API-Net (and the baseline ``bmodel``, unless ``None``) on one pair,
    once per seed: ``{"apinet": {"layers", "seeds", "spearman": {map: [[L] per seed]}, "spearman_abs"},
    "baseline": ...}`` for image 1's maps."""
    from ..explain import explain_pair

    def apinet_maps(m):
        e = explain_pair(m, image1, image2, None, preprocess=pre, targets=targets, cam_methods=("gradcam",))
        last = e.settings["ltpa_stages"][-1]
        return {"apinet_top_gated_channel": e.channels["apinet_gate1"].maps1[0],
                "apinet_ltpa_pooled": e.ltpa[f"apinet/pooled/{last}"].map1,
                "apinet_ltpa_gated": e.ltpa[f"apinet/gated/{last}"].map1,
                "apinet_gradcam_pair": e.cams["apinet/pair/gradcam"].raw1,
                "apinet_gradcam_test": e.cams["apinet/test/gradcam"].raw1}

    seeds = [int(x) for x in seeds]
    out = {"apinet": {**_per_seed(cascading_randomization_seeds(model, apinet_maps, seeds)), "seeds": seeds}}
    if bmodel is not None:
        def baseline_maps(b):
            e = explain_pair(model, image1, image2, b, preprocess=pre, targets=targets, cam_methods=("gradcam",))
            return {"baseline_top_channel": e.channels["baseline_top"].maps1[0],
                    "baseline_gradcam": e.cams["baseline/test/gradcam"].raw1}

        out["baseline"] = {**_per_seed(cascading_randomization_seeds(bmodel, baseline_maps, seeds)), "seeds": seeds}
    return out
