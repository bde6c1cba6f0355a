"""Facts about one explained pair that decide what a teacher can point at (issue #22).

:func:`pair_facts` reads a :class:`~apinet.explain.PairExplanation` and says, with this pair's numbers,
where the interaction's effect shows (the target-class logit gap, since probabilities near 1 hide it),
whether the ranking margin is met, and which conditions hold: scores saturated, gates tied at exactly
1.0, gates at exactly 0.5. The app shows a caption about a condition only when it holds.

It also gives the first-order relation behind intra pairs: both gates share one mutual vector x_m,
g_i = sigma(x_m * x_i), so g1 - g2 ~= sigma'(z) * x_m * (x1 - x2) with z = x_m * (x1 + x2) / 2.
Two near-identical images (small |x1 - x2|) get near-identical gates, and an image's own gate can
hardly rank it above its partner's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SATURATED_SCORE", "FirstOrder", "ImageFacts", "PairFacts", "first_order", "pair_facts"]

#: A score this close to 1 leaves nothing to rank (the same bound as :mod:`apinet.mechanism`).
SATURATED_SCORE = 0.999


@dataclass(frozen=True)
class ImageFacts:
    """One image of the pair (i = 1 or 2) at its reference class c_i."""

    logit_self: float  # logit_i^self(c_i): image i with its own gate
    logit_other: float  # logit_i^other(c_i): image i with its partner's gate
    p_self: float
    p_other: float
    rank_term: float  # max(0, p_other - p_self + margin)
    margin: float
    half_gates: int  # channels whose gate is exactly 0.5 (z = 0, or |z| below float32's resolution)
    half_gates_zero_x: int  # of them, channels with pooled activation x = 0 on this image
    gates_at_one: int  # channels whose gate rounds to exactly 1.0 in float32 (z above ~17)
    top_tied: int  # channels sharing the top gate value (1 = no tie)

    @property
    def logit_gap(self) -> float:
        """logit_self(c) - logit_other(c): where the gates' effect is visible."""
        return self.logit_self - self.logit_other

    @property
    def score_gap(self) -> float:
        """p_self(c) - p_other(c), what the ranking loss compares."""
        return self.p_self - self.p_other

    @property
    def margin_met(self) -> bool:
        """The ranking loss is satisfied: p_self - p_other >= margin (its term is 0)."""
        return self.rank_term <= 0.0

    @property
    def scores_saturated(self) -> bool:
        """Both scores above :data:`SATURATED_SCORE`: probabilities cannot show a difference here."""
        return self.p_self > SATURATED_SCORE and self.p_other > SATURATED_SCORE


@dataclass(frozen=True)
class FirstOrder:
    """Why the two gates of a pair differ (or do not), to first order in x1 - x2."""

    mean_abs_feature_diff: float  # mean over channels of |x1 - x2|
    relative_feature_diff: float  # ||x1 - x2|| / mean(||x1||, ||x2||)
    mean_abs_gate_diff: float  # mean over channels of |g1 - g2| (the model's gates)
    mean_abs_first_order: float  # mean over channels of |sigma'(z) x_m (x1 - x2)|, z = x_m (x1 + x2) / 2
    mean_slope: float  # mean sigma'(z) (at most 0.25, at z = 0)
    mean_abs_mutual: float  # mean |x_m|


@dataclass(frozen=True)
class PairFacts:
    image1: ImageFacts
    image2: ImageFacts
    first_order: FirstOrder
    intra: bool  # both images have the same reference class

    def image(self, i: int) -> ImageFacts:
        return self.image1 if i == 1 else self.image2

    @property
    def any_saturated(self) -> bool:
        return self.image1.scores_saturated or self.image2.scores_saturated

    @property
    def any_tied(self) -> bool:
        """Some image has several channels tied at its top gate (ranking then falls back to z)."""
        return self.image1.top_tied > 1 or self.image2.top_tied > 1

    @property
    def any_half(self) -> bool:
        return self.image1.half_gates > 0 or self.image2.half_gates > 0


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free


def first_order(x1: np.ndarray, x2: np.ndarray, mutual: np.ndarray, g1: np.ndarray, g2: np.ndarray) -> FirstOrder:
    """:class:`FirstOrder` from a pair's pooled features, mutual vector and gates (all ``[D]``)."""
    x1, x2, xm, g1, g2 = (np.asarray(a, dtype=np.float64) for a in (x1, x2, mutual, g1, g2))
    diff = x1 - x2
    s = _sigmoid(xm * (x1 + x2) / 2.0)
    slope = s * (1.0 - s)
    scale = (np.linalg.norm(x1) + np.linalg.norm(x2)) / 2.0
    return FirstOrder(
        mean_abs_feature_diff=float(np.abs(diff).mean()),
        relative_feature_diff=float(np.linalg.norm(diff) / scale) if scale > 0 else 0.0,
        mean_abs_gate_diff=float(np.abs(g1 - g2).mean()),
        mean_abs_first_order=float(np.abs(slope * xm * diff).mean()),
        mean_slope=float(slope.mean()),
        mean_abs_mutual=float(np.abs(xm).mean()),
    )


def _image_facts(expl, i: int) -> ImageFacts:
    c = int(expl.targets[i - 1])
    gate = np.asarray(expl.gate1 if i == 1 else expl.gate2)
    x = np.asarray(expl.features1 if i == 1 else expl.features2)
    half = gate == 0.5
    return ImageFacts(
        logit_self=float(expl.logits[f"{i}_self"][c]), logit_other=float(expl.logits[f"{i}_other"][c]),
        p_self=float(expl.p_self1 if i == 1 else expl.p_self2),
        p_other=float(expl.p_other1 if i == 1 else expl.p_other2),
        rank_term=float(expl.rank_term1 if i == 1 else expl.rank_term2), margin=float(expl.rank_margin),
        half_gates=int(half.sum()), half_gates_zero_x=int((half & (x == 0)).sum()),
        gates_at_one=int((gate == 1.0).sum()), top_tied=int((gate == gate.max()).sum()) if gate.size else 0,
    )


def pair_facts(expl) -> PairFacts:
    """The :class:`PairFacts` of an explanation (plain arithmetic on its arrays; no model runs)."""
    return PairFacts(
        image1=_image_facts(expl, 1), image2=_image_facts(expl, 2),
        first_order=first_order(expl.features1, expl.features2, expl.mutual, expl.gate1, expl.gate2),
        intra=int(expl.targets[0]) == int(expl.targets[1]),
    )
