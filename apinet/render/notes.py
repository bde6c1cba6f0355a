"""Short notes that go with a view when the model behind it needs one.

EfficientNet-Lite trunks end every block (and the last stage's ``conv_head``) with ReLU6, so their
channel maps clip at 6.0: a strong channel's map is often a flat plateau of pixels at exactly 6,
and its "peak" is then a region, not a point (PROTOCOL.md amendment 6 scores such ties). Figures and
the app's channel view say so, only for such trunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..explain import PairExplanation

__all__ = ["RELU6_FIGURE_NOTE", "channel_set_clips", "clips_at_six", "relu6_caption"]

#: Appended to a channel-map heading in figures.
RELU6_FIGURE_NOTE = "maps clip at 6 (ReLU6)"


def clips_at_six(config: Mapping[str, Any] | None) -> bool:
    """True when a model card's / ``describe_model`` config names an EfficientNet-Lite trunk (ReLU6)."""
    return bool(config) and str(config.get("backbone", "")).lower().startswith("efficientnet_lite")


def _model_of(channel_set: str) -> str:
    return "baseline" if channel_set.startswith("baseline") else "apinet"


def channel_set_clips(expl: "PairExplanation", channel_set: str) -> bool:
    """True when the model whose channels ``channel_set`` shows has an EfficientNet-Lite trunk."""
    return clips_at_six((expl.settings or {}).get(_model_of(channel_set)))


def relu6_caption(expl: "PairExplanation", channel_sets: Iterable[str]) -> str | None:
    """One caption line for channel maps of ``channel_sets`` when any of their models clips at 6
    (EfficientNet-Lite, ReLU6); ``None`` otherwise."""
    models = list(dict.fromkeys(_model_of(s) for s in channel_sets if channel_set_clips(expl, s)))
    if not models:
        return None
    who = " and ".join({"apinet": "API-Net's", "baseline": "the baseline's"}[m] for m in models)
    return (f"{who[0].upper() + who[1:]} trunk is an EfficientNet-Lite: its activations pass through ReLU6, so these "
            f"channel maps clip at 6. A strong channel's peak is then a flat plateau at 6, not one point.")
