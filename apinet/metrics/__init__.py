"""How good is an explanation? Localisation, faithfulness and sanity metrics on plain arrays.

The ground floor works on NumPy arrays and models given as functions, and knows nothing of datasets
or checkpoints:

* :mod:`~apinet.metrics.localisation`: pointing game (Zhang et al., ECCV 2016; standard tolerance
  15 px at 224 px) on masks and on keypoints, scored as the expected hit over a map's tied maxima
  (:func:`pointing_score`), energy pointing game (Wang et al., CVPRW 2020).
* :mod:`~apinet.metrics.perturbation`: deletion / insertion (Petsiuk et al., BMVC 2018) of one image,
  and of one image of a pair with its partner held fixed; baselines blur, mean, zero and ROAD's
  noisy linear imputation (Rong et al., ICML 2022).
* :mod:`~apinet.metrics.randomization`: the cascading model-randomisation sanity check (Adebayo et
  al., NeurIPS 2018).
* :mod:`~apinet.metrics.statistics`: McNemar's exact test and the paired sign-flip test of fractional
  outcomes, Wilson intervals, Spearman's correlation, t-intervals, the two-way bootstrap over pairs
  and seeds.

On top, :mod:`~apinet.metrics.protocol` (:func:`evaluate_explanations`, returning an
:class:`ExplanationResults`) runs them on the contrast pairs of :mod:`apinet.data.contrast_pairs`, and
:mod:`~apinet.metrics.report` writes the table (``python -m apinet evaluate-explanations``).
"""

from __future__ import annotations

from ..resample import upsample_map
from .localisation import (STANDARD_TOLERANCE_INPUT, STANDARD_TOLERANCE_PX, TIE_RTOL, PointingOutcome,
                           energy_pointing_game, pointing_game, pointing_game_points, pointing_outcomes, pointing_score,
                           pointing_score_points, standard_tolerance, tied_maxima, within_tolerance)
from .perturbation import (BASELINES, PerturbationCurve, baseline_image, pair_path_logits, pair_perturbation_aucs,
                           pair_perturbation_curve, perturbation_curve, road_impute)
from .protocol import COMPARISONS, MAP_TYPES, ExplanationResults, evaluate_explanations
from .randomization import (RANDOMIZATION_SEEDS, RandomizationResult, cascading_randomization,
                            cascading_randomization_seeds, default_randomization_order)
from .report import results_markdown
from .sanity import SANITY_PAIRS, sanity_summary
from .statistics import hit_rate, mcnemar_exact, paired_sign_flip, spearman, t_interval, two_way_bootstrap, wilson

# The private names of the single-module apinet.metrics, for code written against it; use the public
# names (apinet.data.contrast_pairs, apinet.metrics.protocol) in new code.
from ..data.contrast_pairs import ScoredPair as _ScoredPair  # noqa: F401
from ..data.contrast_pairs import box_to_mask as _box_to_mask  # noqa: F401
from ..data.contrast_pairs import cub_pairs as _cub_pairs  # noqa: F401
from ..data.contrast_pairs import mask_to_input as _mask_to_input  # noqa: F401
from ..data.contrast_pairs import points_to_mask as _points_to_mask  # noqa: F401
from ..data.contrast_pairs import synthbirds_pairs as _synthbirds_pairs  # noqa: F401
from ..data.contrast_pairs import to_input_xy as _to_input_xy  # noqa: F401
from .protocol import chance_maps as _chance_maps  # noqa: F401
from .protocol import expected_point_rate as _expected_point_rate  # noqa: F401
from .protocol import maps_for_image as _maps_for_image  # noqa: F401

__all__ = [
    "BASELINES",
    "COMPARISONS",
    "MAP_TYPES",
    "RANDOMIZATION_SEEDS",
    "SANITY_PAIRS",
    "STANDARD_TOLERANCE_INPUT",
    "STANDARD_TOLERANCE_PX",
    "TIE_RTOL",
    "ExplanationResults",
    "PerturbationCurve",
    "PointingOutcome",
    "RandomizationResult",
    "baseline_image",
    "cascading_randomization",
    "cascading_randomization_seeds",
    "default_randomization_order",
    "energy_pointing_game",
    "evaluate_explanations",
    "hit_rate",
    "mcnemar_exact",
    "paired_sign_flip",
    "pair_path_logits",
    "pair_perturbation_aucs",
    "pair_perturbation_curve",
    "perturbation_curve",
    "pointing_game",
    "pointing_game_points",
    "pointing_outcomes",
    "pointing_score",
    "pointing_score_points",
    "results_markdown",
    "road_impute",
    "sanity_summary",
    "spearman",
    "standard_tolerance",
    "t_interval",
    "tied_maxima",
    "two_way_bootstrap",
    "upsample_map",
    "wilson",
    "within_tolerance",
]
