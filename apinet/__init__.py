"""API-Net Explorer: train, evaluate, load and explain API-Net and a baseline fine-grained classifier."""

from .backbones import BACKBONES, PretrainedWeightsNotFound, build_trunk
from .checkpoint import CheckpointError, load_card, load_model, save_checkpoint
from .losses import LossTerms, apinet_loss, score_ranking_loss
from .model import APINet, Baseline, PairOutput, TrainOutput, build_model
from .pairs import BalancedBatchSampler, check_minable, mine_pairs

__version__ = "0.1.0"

__all__ = [
    "APINet",
    "BACKBONES",
    "BalancedBatchSampler",
    "Baseline",
    "CheckpointError",
    "LossTerms",
    "PairOutput",
    "PretrainedWeightsNotFound",
    "TrainOutput",
    "apinet_loss",
    "build_model",
    "build_trunk",
    "check_minable",
    "load_card",
    "load_model",
    "mine_pairs",
    "save_checkpoint",
    "score_ranking_loss",
]
