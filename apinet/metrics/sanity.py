"""The cascading randomisation check of the explanation protocol: which maps of a pair are tested
(:func:`pair_sanity`) and the summary over many pairs (:func:`sanity_summary`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from .randomization import cascading_randomization
from .statistics import t_interval

__all__ = ["SANITY_PAIRS", "pair_sanity", "sanity_summary"]

#: Default number of pairs of the randomisation sanity check: 38 = every SynthBirds sibling pair twice,
#: enough for a t-interval of the mean Spearman correlation per randomised layer.
SANITY_PAIRS = 38


def sanity_summary(sanity: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per model, map type and randomised layer: the mean Spearman correlation over the sanity pairs
    with a 95 % t-interval (``ci95``; NaN with fewer than 2 pairs), its min and max, and ``n``."""
    out: dict[str, Any] = {}
    for model_name in (sanity[0] if sanity else {}):
        layers = sanity[0][model_name]["layers"]
        rows: dict[str, Any] = {}
        for key in sanity[0][model_name]["spearman"]:
            values = np.asarray([s[model_name]["spearman"][key] for s in sanity], dtype=np.float64)  # [n, L]
            mean, half = t_interval(values)
            rows[key] = {"mean": mean.tolist(), "ci95": list(zip((mean - half).tolist(), (mean + half).tolist())),
                         "min": values.min(axis=0).tolist(), "max": values.max(axis=0).tolist(),
                         "n": values.shape[0]}
        out[model_name] = {"layers": layers, "spearman": rows}
    return out


def pair_sanity(model, bmodel, image1, image2, pre, targets) -> dict[str, Any]:
    """Cascading randomisation of API-Net (and the baseline ``bmodel``, unless ``None``) on one pair:
    ``{"apinet": RandomizationResult as a dict, "baseline": ...}`` for image 1's maps."""
    from ..explain import explain_pair

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
