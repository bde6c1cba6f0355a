"""LTPA maps ("Learn To Pay Attention", Jetley et al., ICLR 2018) of both images of a pair.

Keys :class:`~apinet.explain.keys.LtpaKey` ``"<model>/<kind>/<stage>"``:

- ``pooled``: parameter-free, c_i = <l_i, g> with g = the global average of the same stage's maps
  (for the last stage that is the classifier's pooled feature x_i);
- ``gated``: parameter-free with g = x_i^self = x_i + x_i * g_i, API-Net's gated self feature (width
  D). There is no learned projection in the parameter-free form, so at a stage whose width is not D
  the local features are projected with the trained LTPA estimator's 1x1 projection when the model
  has one for that stage, and the ``gated`` map is omitted otherwise;
- ``trained``: the model's trainable :class:`~apinet.attention.LTPAEstimator`, when present.

Parameter-free maps are the softmax over the h*w positions of c_i / T, with T the standard deviation
of c over the image's positions (each sums to 1; at T = 1, the paper's, c spans ~1,000 logits on
trained ReLU features and the maps are one-hot, see :func:`~apinet.attention.ltpa_attention`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..attention import EXPLAIN_TEMPERATURE, ltpa_attention
from ._util import to_numpy
from .keys import LtpaKey, LtpaKind
from .maps import AttentionMap
from .models import ForwardPass

__all__ = ["ltpa_maps"]

_SOFTMAX_NOTE = "softmax over the h*w positions (each map sums to 1)"
_LTPA_NOTE = ("softmax over the h*w positions of c_i / T, c_i = <l_i, g>, T = the standard deviation of c over "
              "the image's positions (each map sums to 1; c in compatibility1/2, T in temperature1/2)")


def ltpa_maps(model: nn.Module, name: str, run: ForwardPass, stages: Sequence[str],
              gated: Tensor | None) -> dict[LtpaKey, AttentionMap]:
    """LTPA maps of model ``name`` at ``stages`` (``gated``: ``[2, D]`` x^self of both images, API-Net only)."""
    out: dict[LtpaKey, AttentionMap] = {}
    estimator = getattr(model, "ltpa", None)
    for stage in stages:
        if stage not in run.stages:
            raise ValueError(f"LTPA stage {stage!r} is not one of {list(run.stages)}")
        local = run.stages[stage]
        own = model.pool_features(local)
        m = _scaled_ltpa(local, own)
        g_text = "x (the pooled feature)" if stage == run.last else f"GAP of {stage}"
        out[LtpaKey(name, LtpaKind.POOLED, stage)] = _attention_map(m, f"{name} LTPA {stage}, g = {g_text}")
        if gated is None:
            continue
        projected = None
        if local.shape[1] == gated.shape[1]:
            projected, how = local, ""
        elif estimator is not None and stage in estimator.stages:
            projected = estimator.projections[estimator.stages.index(stage)](local)
            how = ", local features projected by the trained estimator"
        if projected is not None:
            m = _scaled_ltpa(projected, gated)
            out[LtpaKey(name, LtpaKind.GATED, stage)] = _attention_map(m, f"{name} LTPA {stage}, g = x^self{how}")
    if run.trained_ltpa is not None:
        for stage, att in run.trained_ltpa.attention.items():
            comp = run.trained_ltpa.compatibility[stage]
            norm = _SOFTMAX_NOTE if estimator.normalize == "softmax" else "sigmoid per position, in (0, 1)"
            out[LtpaKey(name, LtpaKind.TRAINED, stage)] = AttentionMap(
                to_numpy(att[0]), to_numpy(att[1]), label=f"{name} trained LTPA {stage} ({estimator.compatibility})",
                normalisation=norm, compatibility1=to_numpy(comp[0]), compatibility2=to_numpy(comp[1]),
                scores1=to_numpy(comp[0]), scores2=to_numpy(comp[1]), similarity=estimator.compatibility)
    return out


def _scaled_ltpa(local: Tensor, global_vec: Tensor):
    """Parameter-free LTPA as the explanations show it: the paper's c_i = <l_i, g> at temperature
    T = its standard deviation over positions (why: :func:`~apinet.attention.ltpa_attention`)."""
    return ltpa_attention(local, global_vec, similarity="dot", temperature=EXPLAIN_TEMPERATURE)


def _attention_map(m, label: str) -> AttentionMap:
    return AttentionMap(
        to_numpy(m.attention[0]), to_numpy(m.attention[1]), label=label, normalisation=_LTPA_NOTE,
        compatibility1=to_numpy(m.compatibility[0]), compatibility2=to_numpy(m.compatibility[1]),
        scores1=to_numpy(m.scores[0]), scores2=to_numpy(m.scores[1]), similarity=m.similarity,
        temperature1=float(m.temperature[0]), temperature2=float(m.temperature[1]))
