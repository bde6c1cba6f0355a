"""Channel rankings and the top-k channel sets of an explanation.

Three rankings of API-Net's channels for image i (``rank_by``):

* ``"gate"``: g_i[k], ordered by its pre-sigmoid value z = x_m[k] x_i[k] (float32 rounds many
  trained gates to exactly 1.0);
* ``"gate_x_activation"``: g_i[k] x_i[k], the channel's contribution to the gated residual x_i g_i;
* ``"contribution"``: W[c,k] (1 + g_i[k]) x_i[k], the channel's exact share of image i's pair-path
  self logit for its reference class c (the shares plus the bias b_c sum to the logit).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from torch import Tensor

from ._util import to_numpy
from .keys import ChannelSet
from .maps import ChannelMaps

__all__ = ["RANKINGS", "RankBy", "contributions", "gate_topk_channels", "ranking_order"]

RankBy = Literal["gate", "gate_x_activation", "contribution"]
RANKINGS: tuple[str, ...] = ("gate", "gate_x_activation", "contribution")

_WHAT = {
    "gate": "gate value g (ordered by z = x_m * x, which separates gates that round to 1)",
    "gate_x_activation": "g * x (gate times pooled activation)",
    "contribution": "contribution W[c,k] (1 + g) x to the self logit of its reference class c",
}


def check_rank_by(rank_by: str) -> None:
    if rank_by not in RANKINGS:
        raise ValueError(f"rank_by must be one of {', '.join(repr(r) for r in RANKINGS)}, got {rank_by!r}")


def gate_topk_channels(gate: Tensor | np.ndarray, k: int, activation: Tensor | np.ndarray | None = None,
                       *, gate_logit: Tensor | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the k largest ``gate`` (or ``gate * activation``) entries, best first.

    ``gate_logit`` is the pre-sigmoid value z = x_m * x of the same gate. In float32 the sigmoid
    rounds to exactly 1.0 for z above ~17, which trained models reach on many channels, so ranking
    the stored gates would order those channels by index. Given z, the ranking uses sigmoid(z) in
    float64 for ``gate * activation`` and z itself for the gate alone (the same order, since the
    sigmoid is monotone, without the rounding ties). Remaining ties go to the lower channel index
    (stable sort). Scores are always the gate (times activation) values.
    """
    gate = np.asarray(gate, dtype=np.float32)
    if gate_logit is not None:
        z = np.asarray(gate_logit, dtype=np.float64)
        key = z if activation is None else (1.0 / (1.0 + np.exp(-z))) * np.asarray(activation, dtype=np.float64)
    else:
        key = gate.astype(np.float64)
        if activation is not None:
            key = key * np.asarray(activation, dtype=np.float64)
    score = gate if activation is None else gate * np.asarray(activation, dtype=np.float32)
    k = max(1, min(int(k), key.shape[0]))
    order = np.argsort(-key, kind="stable")[:k]
    return order.astype(np.int64), score[order].astype(np.float32)


def contributions(weight_row: np.ndarray, gate: np.ndarray, x: np.ndarray) -> np.ndarray:
    """W[c,k] (1 + g[k]) x[k] for every channel k, in float64 (their sum + b_c is the self logit)."""
    return (np.asarray(weight_row, np.float64) * (1.0 + np.asarray(gate, np.float64))
            * np.asarray(x, np.float64))


def ranking_order(rank_by: str, gate: np.ndarray, x: np.ndarray, xm: np.ndarray,
                  contribution: np.ndarray | None = None) -> np.ndarray:
    """All channels, best first, by ``rank_by`` (the order the top-k channel sets take their first k of)."""
    check_rank_by(rank_by)
    if rank_by == "contribution":
        if contribution is None:
            raise ValueError("rank_by='contribution' needs the contributions W[c,k] (1 + g[k]) x[k]")
        return np.argsort(-np.asarray(contribution, np.float64), kind="stable").astype(np.int64)
    by_act = rank_by == "gate_x_activation"
    order, _ = gate_topk_channels(gate, len(gate), x if by_act else None,
                                  gate_logit=np.asarray(xm) * np.asarray(x))
    return order


def _top(rank_by: str, k: int, g, x, xm, contribution) -> tuple[np.ndarray, np.ndarray]:
    if rank_by == "contribution":
        idx = ranking_order(rank_by, g, x, xm, contribution)[:max(1, min(int(k), len(g)))]
        return idx, np.asarray(contribution)[idx].astype(np.float32)
    return gate_topk_channels(g, k, x if rank_by == "gate_x_activation" else None, gate_logit=xm * x)


def channel_sets(k: int, rank_by: str, x1, x2, g1, g2, xm, maps: np.ndarray,
                 contribution: tuple[np.ndarray, np.ndarray], baseline=None) -> dict[str, ChannelMaps]:
    """The top-k channel sets: API-Net's of each image by ``rank_by`` and, given the baseline's forward
    pass (``.stages``, ``.last``, ``.pooled``), the baseline's own top-k and its maps at API-Net's channels."""
    what = _WHAT[rank_by]
    sets: dict[str, ChannelMaps] = {}
    pairs = ((g1, x1, contribution[0], g2, x2, contribution[1]), (g2, x2, contribution[1], g1, x1, contribution[0]))
    for i, (g_own, x_own, c_own, g_oth, x_oth, c_oth) in enumerate(pairs, start=1):
        idx, score = _top(rank_by, k, g_own, x_own, xm, c_own)
        if rank_by == "contribution":
            other = np.asarray(c_oth)[idx]  # image j's share of its own self logit at these channels
        else:
            other = g_oth[idx] * (x_oth[idx] if rank_by == "gate_x_activation" else 1.0)
        sets[ChannelSet.gate(i)] = ChannelMaps(
            indices=idx, scores=score, maps1=maps[0, idx], maps2=maps[1, idx],
            label=f"API-Net top-{len(idx)} channels of g{i}", ranking=f"top-k of image {i}'s {what}",
            scores2=np.asarray(other).astype(np.float32))
    if baseline is not None:
        bmaps = to_numpy(baseline.stages[baseline.last])
        b1, b2 = to_numpy(baseline.pooled[0]), to_numpy(baseline.pooled[1])
        i1, s1 = gate_topk_channels(b1, k)
        i2, s2 = gate_topk_channels(b2, k)
        sets[ChannelSet.BASELINE_TOP] = ChannelMaps(
            indices=i1, scores=s1, maps1=bmaps[0, i1], maps2=bmaps[1, i2],
            label=f"baseline top-{len(i1)} channels (per image)",
            ranking="top-k of each image's own pooled activation x (A's channels and B's channels ranked separately)",
            indices2=i2, scores2=s2)
        idx = sets[ChannelSet.APINET_GATE1].indices
        if bmaps.shape[1] > int(idx.max()):
            sets[ChannelSet.BASELINE_AT_APINET] = ChannelMaps(
                indices=idx, scores=b1[idx], maps1=bmaps[0, idx], maps2=bmaps[1, idx],
                label="baseline at API-Net's g1 channels",
                ranking="API-Net's top-k of g1; scores are the baseline's pooled activations "
                        "(channel indices only correspond when both trunks share an initialisation)",
                scores2=b2[idx])
    return sets
