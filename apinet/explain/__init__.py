"""Explanations of one image pair as plain numpy arrays: everything the app and the figures show.

``explain_pair(model, image1, image2, baseline)`` runs API-Net (and optionally the baseline) on a
pair and returns a :class:`PairExplanation`:

* pooled features x1, x2, mutual vector x_m, gates g1, g2 (``[D]``), the six logit vectors
  ("1_self", "1_other", "2_self", "2_other", "1_test", "2_test"), the reference class of each image,
  its softmax score under the self / other features and the score-ranking hinge term
  ``max(0, p_other - p_self + 0.05)``;
* ``channels`` (:mod:`.channels`): top-k channels (by gate, gate x pooled activation, or exact
  contribution to the self logit) and their feature maps before global pooling, for both images,
  and the baseline's maps (its own top-k channels by pooled activation, and its maps at API-Net's
  channel indices); ``contribution1/2``: every channel's share W[c,k] (1 + g[k]) x[k] of the self logit;
* ``ltpa`` (:mod:`.ltpa`): "Learn To Pay Attention" maps, parameter-free (``pooled``, ``gated``)
  and trained; ``apinet.render`` shows them as ``a * h * w`` ("multiples of uniform attention");
* ``cams`` (:mod:`.cams`): class activation maps through the ``pytorch_grad_cam`` package (Grad-CAM,
  Grad-CAM++, LayerCAM, EigenCAM, HiResCAM, XGrad-CAM) on the test path and API-Net's pair path;
* ``exact_cams`` (:mod:`.exact`): the exact, signed maps of API-Net's pair-path logits with the gates
  fixed (``1_self``, ``1_other``, ``1_contrast``, ``2_self``, ...): their spatial mean plus the bias is
  the logit the model computed;
* ``contrast_cams`` (:mod:`.exact`, :mod:`.cams`): "why A and not B": the class-contrast maps W[A] - W[B]
  of both models (exact) and grad-cam's Finer-CAM, with B the partner's class;
* ``unit_features1/2`` and :func:`correspondence_map` (:mod:`.correspondence`): where a part of one
  image matches the other (cosine similarity of feature vectors);
* ``a2``: gather / distribute maps of every A^2 block in the trunks (empty without A^2 blocks).

Maps are kept at the resolution they were computed at; display forms at the input size are made on
access (``CamMaps.map1``, ``ExactMap.display``). Dictionary keys are typed (:mod:`.keys`) and equal to
the documented strings. Everything runs under ``torch.no_grad`` except the CAM backward passes,
under a per-model lock (:func:`model_lock`), as models are shared between app sessions.

``explain_pair_from_checkpoint`` loads the models with their model cards (class names,
preprocessing); ``PairExplanation.to_npz`` / ``from_npz`` / ``to_json`` store it. The command line
lives in :mod:`apinet.cli.explain`; nothing here imports :mod:`apinet.render`.
"""

from __future__ import annotations

from .cams import CAM_LABELS, CAM_METHODS, CAM_NOTE, PairSelfLogits
from .channels import RANKINGS, contributions, gate_topk_channels, ranking_order
from .correspondence import CorrespondenceMap, correspondence_map, feature_cell, start_cell
from .exact import class_contrast_maps, exact_cams
from .keys import CamKey, CamPath, ChannelSet, ContrastMethod, ExactKey, ExactKind, LtpaKey, LtpaKind, ModelName
from .maps import A2StageMaps, AttentionMap, CamMaps, ChannelMaps, ContrastMaps, ExactMap
from .models import (DEFAULT_APINET_CHECKPOINT, DEFAULT_BASELINE_CHECKPOINT, default_preprocess, load_pair_models,
                     model_lock, preprocess_from_card, warm_up)
from .pair import explain_pair, explain_pair_from_checkpoint, unusual_lines
from .result import RANK_MARGIN, PairExplanation

__all__ = [
    "A2StageMaps",
    "AttentionMap",
    "CAM_LABELS",
    "CAM_METHODS",
    "CAM_NOTE",
    "CamKey",
    "CamMaps",
    "CamPath",
    "ChannelMaps",
    "ChannelSet",
    "ContrastMaps",
    "ContrastMethod",
    "CorrespondenceMap",
    "DEFAULT_APINET_CHECKPOINT",
    "DEFAULT_BASELINE_CHECKPOINT",
    "ExactKey",
    "ExactKind",
    "ExactMap",
    "LtpaKey",
    "LtpaKind",
    "ModelName",
    "PairExplanation",
    "PairSelfLogits",
    "RANKINGS",
    "RANK_MARGIN",
    "class_contrast_maps",
    "contributions",
    "correspondence_map",
    "start_cell",
    "default_preprocess",
    "exact_cams",
    "explain_pair",
    "explain_pair_from_checkpoint",
    "feature_cell",
    "gate_topk_channels",
    "load_pair_models",
    "model_lock",
    "preprocess_from_card",
    "ranking_order",
    "unusual_lines",
    "warm_up",
]
