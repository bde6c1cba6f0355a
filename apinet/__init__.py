"""API-Net Explorer: train, evaluate, load and explain API-Net and a baseline fine-grained classifier."""

from .backbones import BACKBONES, PretrainedWeightsNotFound, build_trunk
from .checkpoint import CheckpointError, load_card, load_model, save_checkpoint
from .losses import LossTerms, apinet_loss, score_ranking_loss
from .model import APINet, Baseline, PairOutput, TrainOutput, build_model
from .pairs import BalancedBatchSampler, check_minable, mine_pairs

__version__ = "0.1.0"

#: Names served on first use (``apinet.explain`` imports grad-cam's stack lazily, but keeps ``import apinet`` light).
_LAZY = {"explain_pair": "apinet.explain", "PairExplanation": "apinet.explain"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'apinet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "APINet",
    "BACKBONES",
    "BalancedBatchSampler",
    "Baseline",
    "CheckpointError",
    "LossTerms",
    "PairExplanation",
    "PairOutput",
    "PretrainedWeightsNotFound",
    "TrainOutput",
    "apinet_loss",
    "build_model",
    "build_trunk",
    "check_minable",
    "explain_pair",
    "load_card",
    "load_model",
    "mine_pairs",
    "save_checkpoint",
    "score_ranking_loss",
]
