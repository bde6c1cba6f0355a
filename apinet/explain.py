"""Explanations of one image pair as plain numpy arrays: everything the app and the figures show.

``explain_pair(model, image1, image2, baseline)`` runs API-Net (and optionally the baseline) on a
pair and returns a :class:`PairExplanation`:

* pooled features x1, x2, mutual vector x_m, gates g1, g2 (``[D]``), the six logit vectors
  ("1_self", "1_other", "2_self", "2_other", "1_test", "2_test"), the reference class of each image,
  its softmax score under the self / other features and the score-ranking hinge term
  ``max(0, p_other - p_self + 0.05)``;
* ``channels``: top-k channels (by gate, or by gate x pooled activation) and their feature maps
  before global pooling, for both images, and the baseline's maps (its own top-k channels by pooled
  activation, and its maps at API-Net's channel indices);
* ``ltpa``: "Learn To Pay Attention" maps (Jetley et al., ICLR 2018). Keys ``"<model>/<kind>/<stage>"``:

  - ``pooled``: parameter-free, c_i = <l_i, g> with g = the global average of the same stage's maps
    (for the last stage that is the classifier's pooled feature x_i);
  - ``gated``: parameter-free with g = x_i^self = x_i + x_i * g_i, API-Net's gated self feature
    (width D). There is no learned projection in the parameter-free form, so at a stage whose width
    is not D the local features are projected with the trained LTPA estimator's 1x1 projection when
    the model has one for that stage, and the ``gated`` map is omitted otherwise;
  - ``trained``: the model's trainable :class:`~apinet.attention.LTPAEstimator`, when present.

  Parameter-free maps are the softmax over the h*w positions of c_i / T, with T the standard
  deviation of c over the image's positions (each sums to 1; at T = 1, the paper's, c spans ~1,000
  logits on trained ReLU features and the maps are one-hot, see
  :func:`~apinet.attention.ltpa_attention`); the raw c_i is kept in ``compatibility1/2``, the
  softmax's input in ``scores1/2``, T in ``temperature1/2``. ``apinet.render`` shows the maps as
  ``a * h * w`` ("multiples of uniform attention") and says so on the colour bar.
* ``cams``: class activation maps through the ``pytorch_grad_cam`` package (Grad-CAM, Grad-CAM++,
  LayerCAM, EigenCAM, HiResCAM, XGrad-CAM). Keys ``"<model>/<path>/<method>"``; path ``test`` is the
  test-path logits fc(x_i), path ``pair`` (API-Net only) the pair-path self logits fc(x_i^self).
  The gates couple the two images of a pair, and grad-cam sums the targets of a batch in one
  backward pass, so here every pair-path target is backpropagated on its own: image 1's map only
  ever holds gradients of image 1's score, whatever image 2's target is. Test-path scores of the two
  images are independent (eval-mode BatchNorm), so one backward pass serves both. Maps keep their
  raw values (ReLU(sum_c w_c A_c), before grad-cam's per-map min-max), so shared scales are honest.
* ``a2``: gather / distribute maps of every A^2 block in the trunks (empty without A^2 blocks).

Everything runs under ``torch.no_grad`` except the CAM backward passes. By default CAMs are taken at
the last feature maps F, where no hooks are needed: the trunk runs once, F is made a leaf, and only
the head (pooling, interaction, classifier) is differentiated; grad-cam's method classes turn
(activations, gradients) into maps. ``cam_layer="layer3"`` (any trunk stage) goes through
grad-cam's ``ActivationsAndGradients`` hooks on a wrapped model instead; those hooks are removed
before returning and the call holds a per-model lock, as models are shared between app sessions.

``explain_pair_from_checkpoint`` loads the models with their model cards (class names,
preprocessing); ``PairExplanation.to_npz`` / ``from_npz`` / ``to_json`` store it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ._io import atomic_write, to_jsonable
from .attention import EXPLAIN_TEMPERATURE, DoubleAttention, ltpa_attention

__all__ = [
    "A2StageMaps",
    "AttentionMap",
    "CAM_LABELS",
    "CAM_METHODS",
    "CAM_NOTE",
    "CamMaps",
    "ChannelMaps",
    "DEFAULT_APINET_CHECKPOINT",
    "DEFAULT_BASELINE_CHECKPOINT",
    "PairExplanation",
    "PairSelfLogits",
    "RANK_MARGIN",
    "explain_pair",
    "explain_pair_from_checkpoint",
    "gate_topk_channels",
    "load_pair_models",
    "model_lock",
    "preprocess_from_card",
    "warm_up",
]

RankBy = Literal["gate", "gate_x_activation"]
ImageInput = Any  # path, PIL image, bytes, or a preprocessed tensor [3, H, W]

#: Margin of API-Net's score-ranking loss (paper: 0.05).
RANK_MARGIN = 0.05
DEFAULT_APINET_CHECKPOINT = Path("assets/checkpoints/apinet_synthbirds.safetensors")
DEFAULT_BASELINE_CHECKPOINT = Path("assets/checkpoints/baseline_synthbirds.safetensors")

#: Method name -> pytorch_grad_cam class name.
CAM_METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "hirescam": "HiResCAM",
    "xgradcam": "XGradCAM",
}
_GRADIENT_FREE = {"eigencam"}

#: Menu labels. At the last feature maps every model here has global average pooling and a linear
#: head, so dScore/dA_c(i, j) = w_c / (h w) at every position: Grad-CAM's channel weights (mean
#: gradient), HiResCAM's element-wise gradient x activation and XGrad-CAM's activation-weighted
#: gradients all reduce to ReLU(sum_c w_c A_c / (h w)), the same map (tested). They differ only at
#: an earlier ``cam_layer``. EigenCAM is the first principal component of the activations: it
#: ignores the target class and the logit path.
CAM_LABELS: dict[str, str] = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM (class-agnostic)",
    "hirescam": "HiResCAM (= Grad-CAM at the last layer)",
    "xgradcam": "XGrad-CAM (= Grad-CAM at the last layer)",
}
CAM_NOTE = ("At the last feature maps (global average pooling, linear classifier) Grad-CAM, HiResCAM and "
            "XGrad-CAM are the same map: the gradient is w_c / (h·w) at every position. EigenCAM is the first "
            "principal component of the activations: it ignores the target class.")


# --------------------------------------------------------------------------------------------------
# Result dataclasses
# --------------------------------------------------------------------------------------------------


@dataclass
class ChannelMaps:
    """Feature maps before global pooling at k selected channels, for both images."""

    indices: np.ndarray  # [k] int64, channels shown for image 1 (ranked, best first)
    scores: np.ndarray  # [k] float32, ranking score of image 1 at those channels
    maps1: np.ndarray  # [k, h, w] float32, image 1's activations (raw units)
    maps2: np.ndarray  # [k, h, w] float32, image 2's activations at indices2
    label: str
    ranking: str  # how indices were chosen, in words
    indices2: np.ndarray | None = None  # [k] channels of maps2 (== indices unless ranked per image)
    scores2: np.ndarray | None = None  # [k] the same score for image 2 at indices2

    def __post_init__(self) -> None:
        if self.indices2 is None:
            self.indices2 = self.indices.copy()


@dataclass
class AttentionMap:
    """LTPA attention of both images at one stage."""

    map1: np.ndarray  # [h, w] float32, softmax over positions: sums to 1
    map2: np.ndarray  # [h, w] float32
    label: str
    normalisation: str
    compatibility1: np.ndarray | None = None  # [h, w] raw compatibility c_i = <l_i, g> (trained: its c_i)
    compatibility2: np.ndarray | None = None
    scores1: np.ndarray | None = None  # [h, w] what the softmax saw: c_i / T (parameter-free maps)
    scores2: np.ndarray | None = None
    similarity: str = "dot"  # "dot" for the parameter-free maps, "dot" / "pc" for the trained estimator
    temperature1: float = 1.0  # T of image 1's parameter-free map (the std of its c over positions)
    temperature2: float = 1.0

    def effective_support(self) -> tuple[float, float]:
        """exp(entropy) of each softmax map: the number of cells it spreads over (1 = one-hot)."""
        out = []
        for m in (self.map1, self.map2):
            p = np.asarray(m, dtype=np.float64).ravel()
            p = p[p > 0] / p.sum()
            out.append(float(np.exp(-(p * np.log(p)).sum())))
        return out[0], out[1]


@dataclass
class CamMaps:
    """A class activation map of each image, in raw CAM units."""

    map1: np.ndarray  # [H, W] float32, ReLU'd raw CAM bilinearly upsampled to the input size
    map2: np.ndarray  # [H, W] float32
    target1: int
    target2: int
    method: str
    label: str
    raw1: np.ndarray | None = None  # [h, w] at the CAM layer's resolution (what was computed)
    raw2: np.ndarray | None = None
    raw_min1: float = 0.0
    raw_max1: float = 0.0
    raw_min2: float = 0.0
    raw_max2: float = 0.0
    layer: str = ""

    def normalised(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-map min-max scaled maps, as grad-cam returns them (for comparison only)."""
        return tuple(_minmax(m) for m in (self.map1, self.map2))  # type: ignore[return-value]


@dataclass
class A2StageMaps:
    """Attention maps of one A^2 block for both images."""

    gather1: np.ndarray  # [n, h, w] float32, softmax over positions (each map sums to 1)
    gather2: np.ndarray
    distribute1: np.ndarray  # [n, h, w] float32, softmax over the n maps (sums to 1 per position)
    distribute2: np.ndarray
    label: str


@dataclass
class PairExplanation:
    """Everything an explanation of one pair shows, as numpy arrays (see the module docstring)."""

    image1: np.ndarray  # [H, W, 3] uint8, the model input as displayed (denormalised)
    image2: np.ndarray
    class_names: list[str]
    features1: np.ndarray  # [D] float32 pooled feature x1
    features2: np.ndarray
    mutual: np.ndarray  # [D] x_m
    gate1: np.ndarray  # [D] g1 = sigmoid(x_m * x1)
    gate2: np.ndarray
    logits: dict[str, np.ndarray]  # "1_self", "1_other", "2_self", "2_other", "1_test", "2_test" -> [C]
    targets: tuple[int, int]
    p_self1: float
    p_other1: float
    p_self2: float
    p_other2: float
    rank_term1: float
    rank_term2: float
    channels: dict[str, ChannelMaps] = field(default_factory=dict)
    ltpa: dict[str, AttentionMap] = field(default_factory=dict)
    cams: dict[str, CamMaps] = field(default_factory=dict)
    a2: dict[str, A2StageMaps] = field(default_factory=dict)
    baseline_logits: dict[str, np.ndarray] = field(default_factory=dict)  # "1_test", "2_test" -> [C]
    baseline_features1: np.ndarray | None = None  # [D_b] baseline pooled features
    baseline_features2: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # k, rank_by, methods, models, timings, ...
    # "self1", "other1", "self2", "other2" -> [D]: x_i + x_i * g_i and x_i + x_i * g_j, as the model computed them
    interaction: dict[str, np.ndarray] = field(default_factory=dict)
    # [D] int64: every channel in the order of the ranking this explanation used (settings["rank_by"]),
    # best first; channels["apinet_gate{i}"].indices is its first k. The app shows these, never re-sorts.
    gate_order1: np.ndarray | None = None
    gate_order2: np.ndarray | None = None
    # softmax of every logit vector (same keys as ``logits``; baseline: "1_test", "2_test"), float32
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    baseline_probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    rank_margin: float = RANK_MARGIN  # the score-ranking margin of rank_term1/2
    # one line per image that is unlike the model's training data (apinet.ood), None for a familiar one
    unusual: tuple[str | None, str | None] = (None, None)

    def __post_init__(self) -> None:
        # explanations stored before these fields existed: derive them once, here, with the same code
        if self.gate_order1 is None or self.gate_order2 is None:
            rank_by = (self.settings or {}).get("rank_by", "gate")
            self.gate_order1, self.gate_order2 = (
                _gate_order(g, x, self.mutual, rank_by)
                for g, x in ((self.gate1, self.features1), (self.gate2, self.features2)))
        if not self.probabilities:
            self.probabilities = {key: _softmax(v).astype(np.float32) for key, v in self.logits.items()}
        if not self.baseline_probabilities:
            self.baseline_probabilities = {key: _softmax(v).astype(np.float32)
                                           for key, v in self.baseline_logits.items()}

    # --- convenience -------------------------------------------------------------------------------

    def predicted(self, image: int, path: str = "test") -> int:
        return int(np.argmax(self.logits[f"{image}_{path}"]))

    def gate_order(self, image: int) -> np.ndarray:
        """Every channel of image ``image``'s gate (1 or 2), best first by the explanation's ranking."""
        return self.gate_order1 if image == 1 else self.gate_order2  # type: ignore[return-value]

    def top_classes(self, key: str, n: int = 5, model: str = "apinet") -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` most probable classes of logit vector ``key`` (e.g. ``"1_test"``) and their
        probabilities, best first (ties: lower class index first)."""
        probs = (self.probabilities if model == "apinet" else self.baseline_probabilities)[key]
        order = np.argsort(-probs.astype(np.float64), kind="stable")[:n]
        return order.astype(np.int64), probs[order]

    # --- serialisation -----------------------------------------------------------------------------

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {
            "image1": self.image1, "image2": self.image2, "features1": self.features1,
            "features2": self.features2, "mutual": self.mutual, "gate1": self.gate1, "gate2": self.gate2,
        }
        for key, value in self.logits.items():
            arrays[f"logits/{key}"] = value
        for key, value in self.baseline_logits.items():
            arrays[f"baseline_logits/{key}"] = value
        for key, value in self.interaction.items():
            arrays[f"interaction/{key}"] = value
        arrays["gate_order1"], arrays["gate_order2"] = self.gate_order1, self.gate_order2
        for key, value in self.probabilities.items():
            arrays[f"probabilities/{key}"] = value
        for key, value in self.baseline_probabilities.items():
            arrays[f"baseline_probabilities/{key}"] = value
        if self.baseline_features1 is not None:
            arrays["baseline_features1"] = self.baseline_features1
            arrays["baseline_features2"] = self.baseline_features2
        for group_name, group in (("channels", self.channels), ("ltpa", self.ltpa), ("cams", self.cams),
                                  ("a2", self.a2)):
            for key, item in group.items():
                for name, value in vars(item).items():
                    if isinstance(value, np.ndarray):
                        arrays[f"{group_name}/{key}/{name}"] = value
        return arrays

    def _meta(self) -> dict[str, Any]:
        def scalars(item: Any) -> dict[str, Any]:
            return {k: v for k, v in vars(item).items() if not isinstance(v, np.ndarray) and v is not None}

        return {
            "format": "apinet-explanation/1",
            "class_names": list(self.class_names),
            "targets": [int(t) for t in self.targets],
            "target_names": [self.class_names[t] for t in self.targets],
            "predicted_test": [self.predicted(1), self.predicted(2)],
            "p_self1": self.p_self1, "p_other1": self.p_other1,
            "p_self2": self.p_self2, "p_other2": self.p_other2,
            "rank_term1": self.rank_term1, "rank_term2": self.rank_term2, "rank_margin": self.rank_margin,
            "unusual": list(self.unusual),
            "channels": {k: {**scalars(c), "indices": c.indices.tolist(), "scores": c.scores.tolist(),
                             "indices2": np.asarray(c.indices2).tolist(),
                             "scores2": None if c.scores2 is None else c.scores2.tolist()}
                         for k, c in self.channels.items()},
            "ltpa": {k: scalars(a) for k, a in self.ltpa.items()},
            "cams": {k: scalars(c) for k, c in self.cams.items()},
            "a2": {k: scalars(a) for k, a in self.a2.items()},
            "settings": self.settings,
            "shapes": {k: list(v.shape) for k, v in self._arrays().items()},
        }

    def to_json(self, indent: int | None = 2) -> str:
        """Scalars, channel indices, settings and array shapes (the arrays go in :meth:`to_npz`)."""
        return json.dumps(to_jsonable(self._meta()), indent=indent)

    def to_npz(self, path: Any) -> Any:
        """Write every array plus the JSON metadata (key ``__meta__``) to a compressed ``.npz``
        (a path, or a binary file object)."""
        arrays = self._arrays()
        arrays["__meta__"] = np.array(self.to_json(indent=None))
        if not isinstance(path, (str, Path)):  # a binary file object
            np.savez_compressed(path, **arrays)
            return path
        path = Path(path)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

        atomic_write(path, write)
        return path

    @classmethod
    def from_npz(cls, path: Any) -> PairExplanation:
        """Read back what :meth:`to_npz` wrote (render again without running a model)."""
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("__meta__")))

        def group(prefix: str) -> dict[str, dict[str, np.ndarray]]:
            out: dict[str, dict[str, np.ndarray]] = {}
            for key, value in arrays.items():
                if key.startswith(prefix + "/"):
                    rest = key[len(prefix) + 1:]
                    item, _, name = rest.rpartition("/")
                    out.setdefault(item, {})[name] = value
            return out

        channels = {}
        for key, arrs in group("channels").items():
            m = meta["channels"][key]
            channels[key] = ChannelMaps(
                indices=np.asarray(m["indices"], dtype=np.int64), scores=np.asarray(m["scores"], np.float32),
                maps1=arrs["maps1"], maps2=arrs["maps2"], label=m["label"], ranking=m["ranking"],
                indices2=np.asarray(m["indices2"], dtype=np.int64),
                scores2=None if m.get("scores2") is None else np.asarray(m["scores2"], np.float32),
            )
        ltpa = {k: AttentionMap(**{**meta["ltpa"][k], **arrs}) for k, arrs in group("ltpa").items()}
        cams = {k: CamMaps(**{**meta["cams"][k], **arrs}) for k, arrs in group("cams").items()}
        a2 = {k: A2StageMaps(**{**meta["a2"][k], **arrs}) for k, arrs in group("a2").items()}
        return cls(
            image1=arrays["image1"], image2=arrays["image2"], class_names=meta["class_names"],
            features1=arrays["features1"], features2=arrays["features2"], mutual=arrays["mutual"],
            gate1=arrays["gate1"], gate2=arrays["gate2"],
            logits={k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("logits/")},
            targets=tuple(meta["targets"]),  # type: ignore[arg-type]
            p_self1=meta["p_self1"], p_other1=meta["p_other1"], p_self2=meta["p_self2"],
            p_other2=meta["p_other2"], rank_term1=meta["rank_term1"], rank_term2=meta["rank_term2"],
            channels=channels, ltpa=ltpa, cams=cams, a2=a2,
            baseline_logits={k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("baseline_logits/")},
            baseline_features1=arrays.get("baseline_features1"),
            baseline_features2=arrays.get("baseline_features2"),
            settings=meta["settings"],
            interaction={k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("interaction/")},
            gate_order1=arrays.get("gate_order1"), gate_order2=arrays.get("gate_order2"),
            probabilities={k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("probabilities/")},
            baseline_probabilities={k.split("/", 1)[1]: v for k, v in arrays.items()
                                    if k.startswith("baseline_probabilities/")},
            rank_margin=float(meta.get("rank_margin", meta["settings"].get("rank_margin", RANK_MARGIN))),
        )


def _minmax(a: np.ndarray) -> np.ndarray:
    a = a - a.min()
    return a / (a.max() + 1e-7)


# --------------------------------------------------------------------------------------------------
# Locks: hooks and A^2 capture flags mutate shared models
# --------------------------------------------------------------------------------------------------

_LOCKS: dict[int, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock that guards ``model`` while an explanation mutates it (hooks, capture flags)."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(id(model), threading.RLock())


@contextlib.contextmanager
def _locked_eval(models: Sequence[nn.Module]) -> Iterator[None]:
    """Hold every model's lock (in a fixed order) with the models in eval mode; restore after."""
    unique = sorted({id(m): m for m in models}.values(), key=id)
    with contextlib.ExitStack() as stack:
        for m in unique:
            stack.enter_context(model_lock(m))
        modes = [(m, m.training) for m in unique]
        for m in unique:
            if m.training:
                m.eval()
        try:
            yield
        finally:
            for m, mode in modes:
                m.train(mode)


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def preprocess_from_card(card: dict[str, Any] | None):
    """The :class:`~apinet.data.transforms.Preprocess` a model card records
    (:meth:`Preprocess.from_card <apinet.data.transforms.Preprocess.from_card>`)."""
    from .data.transforms import Preprocess

    return Preprocess.from_card(card)


def _to_tensor(image: ImageInput, preprocess, name: str) -> Tensor:
    if isinstance(image, Tensor):
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"{name}: a tensor image must be [3, H, W] (preprocessed), got {tuple(image.shape)}")
        return image.float()
    from .data.images import load_image

    return preprocess(load_image(image))


def _display_image(tensor: Tensor, preprocess) -> np.ndarray:
    rgb = preprocess.denormalize(tensor.detach().cpu().float())
    return (rgb.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Channels
# --------------------------------------------------------------------------------------------------


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


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy()


# --------------------------------------------------------------------------------------------------
# Forward passes (no_grad)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Pass:
    stages: dict[str, Tensor]  # stage -> [2, C_s, h, w]
    last: str
    pooled: Tensor  # [2, D]
    a2: dict[str, A2StageMaps]
    trained_ltpa: Any  # LTPAOutput or None


def _a2_blocks(model: nn.Module) -> dict[str, DoubleAttention]:
    inserts = getattr(getattr(model, "trunk", None), "inserts", {})
    return {s: b for s, b in inserts.items() if isinstance(b, DoubleAttention)}


def _forward(model: nn.Module, x: Tensor, name: str) -> _Pass:
    blocks = _a2_blocks(model)
    previous = {s: b.last_maps for s, b in blocks.items()}
    with contextlib.ExitStack() as stack:
        for block in blocks.values():
            stack.enter_context(block.capturing_maps())
        stages = dict(model.forward_stages(x))
    a2 = {}
    for stage, block in blocks.items():
        maps = block.last_maps
        block.last_maps = previous[stage]  # leave the shared module as we found it
        if maps is not None:
            a2[f"{name}/{stage}"] = A2StageMaps(
                gather1=_np(maps.gather[0]), gather2=_np(maps.gather[1]),
                distribute1=_np(maps.distribute[0]), distribute2=_np(maps.distribute[1]),
                label=f"{name} A^2 after {stage}",
            )
    last = next(reversed(stages))
    pooled = model.pool_features(stages[last])
    trained = None
    if getattr(model, "ltpa", None) is not None:
        trained = model.ltpa({s: stages[s] for s in model.ltpa.stages}, pooled)
    return _Pass(stages=stages, last=last, pooled=pooled, a2=a2, trained_ltpa=trained)


# --------------------------------------------------------------------------------------------------
# LTPA
# --------------------------------------------------------------------------------------------------

_SOFTMAX_NOTE = "softmax over the h*w positions (each map sums to 1)"
_LTPA_NOTE = ("softmax over the h*w positions of c_i / T, c_i = <l_i, g>, T = the standard deviation of c over "
              "the image's positions (each map sums to 1; c in compatibility1/2, T in temperature1/2)")


def _ltpa_maps(model: nn.Module, name: str, run: _Pass, stages: Sequence[str],
               gated: Tensor | None) -> dict[str, AttentionMap]:
    out: dict[str, AttentionMap] = {}
    estimator = getattr(model, "ltpa", None)
    for stage in stages:
        if stage not in run.stages:
            raise ValueError(f"LTPA stage {stage!r} is not one of {list(run.stages)}")
        local = run.stages[stage]
        own = model.pool_features(local)
        m = _scaled_ltpa(local, own)
        g_text = "x (the pooled feature)" if stage == run.last else f"GAP of {stage}"
        out[f"{name}/pooled/{stage}"] = _attention_map(m, f"{name} LTPA {stage}, g = {g_text}")
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
            out[f"{name}/gated/{stage}"] = _attention_map(m, f"{name} LTPA {stage}, g = x^self{how}")
    if run.trained_ltpa is not None:
        for stage, att in run.trained_ltpa.attention.items():
            comp = run.trained_ltpa.compatibility[stage]
            norm = _SOFTMAX_NOTE if estimator.normalize == "softmax" else "sigmoid per position, in (0, 1)"
            out[f"{name}/trained/{stage}"] = AttentionMap(
                _np(att[0]), _np(att[1]), label=f"{name} trained LTPA {stage} ({estimator.compatibility})",
                normalisation=norm, compatibility1=_np(comp[0]), compatibility2=_np(comp[1]),
                scores1=_np(comp[0]), scores2=_np(comp[1]), similarity=estimator.compatibility)
    return out


def _scaled_ltpa(local: Tensor, global_vec: Tensor):
    """Parameter-free LTPA as the explanations show it: the paper's c_i = <l_i, g> at temperature
    T = its standard deviation over positions (why: :func:`~apinet.attention.ltpa_attention`)."""
    return ltpa_attention(local, global_vec, similarity="dot", temperature=EXPLAIN_TEMPERATURE)


def _attention_map(m, label: str) -> AttentionMap:
    return AttentionMap(
        _np(m.attention[0]), _np(m.attention[1]), label=label, normalisation=_LTPA_NOTE,
        compatibility1=_np(m.compatibility[0]), compatibility2=_np(m.compatibility[1]),
        scores1=_np(m.scores[0]), scores2=_np(m.scores[1]), similarity=m.similarity,
        temperature1=float(m.temperature[0]), temperature2=float(m.temperature[1]))


# --------------------------------------------------------------------------------------------------
# CAMs through pytorch_grad_cam
# --------------------------------------------------------------------------------------------------

_CAM_OBJECTS: dict[str, Any] = {}
_CAM_GUARD = threading.Lock()


def _cam_method(method: str):
    """A grad-cam method object used only for its (activations, gradients) -> map maths.

    It is built around a dummy module with no target layers: it registers no hooks and never puts
    a real model in eval mode. ``get_cam_image`` is stateless, so one object serves every thread.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose from {', '.join(CAM_METHODS)}")
    with _CAM_GUARD:
        if method not in _CAM_OBJECTS:
            import pytorch_grad_cam

            cls = getattr(pytorch_grad_cam, CAM_METHODS[method])
            _CAM_OBJECTS[method] = cls(nn.Linear(1, 1), target_layers=[])
        return _CAM_OBJECTS[method]


class PairSelfLogits(nn.Module):
    """API-Net as one tensor-returning module for CAM libraries: ``[2, 3, H, W] -> [4, C]``.

    Rows 0-1 are the test-path logits fc(x_1), fc(x_2); rows 2-3 the pair-path self logits
    fc(x_1^self), fc(x_2^self). Back-propagate one row's target at a time: rows 2 and 3 depend on
    both images through the gates.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return _head_rows(self.model, self.model.forward_features(images), pair=True)


def _head_rows(model: nn.Module, maps: Tensor, pair: bool) -> Tensor:
    pooled = model.pool_features(maps)
    test = model.forward_head(pooled)
    if not pair:
        return test
    out = model.interact(pooled[0:1], pooled[1:2])
    return torch.cat([test, out.logits1_self, out.logits2_self])


def _stage_module(model: nn.Module, stage: str) -> nn.Module:
    trunk = model.trunk
    if stage in trunk.inserts:
        return trunk.inserts[stage]
    last = next(reversed(trunk.stages.keys()))
    if stage == last and not isinstance(trunk.tail, nn.Identity):
        return trunk.tail
    if stage not in trunk.stages:
        raise ValueError(f"CAM layer {stage!r} is not one of {list(trunk.stages)}")
    return trunk.stages[stage]


@contextlib.contextmanager
def _cam_activations(model: nn.Module, x: Tensor, run: _Pass, pair: bool, layer: str | None):
    """Yield ``(activations [2,C,h,w] requiring grad, output rows)`` for the CAM backward passes."""
    if layer is None or layer == run.last:
        with torch.enable_grad():
            maps = run.stages[run.last].detach().requires_grad_(True)
            yield maps, _head_rows(model, maps, pair)
        return
    from pytorch_grad_cam import ActivationsAndGradients

    wrapper: nn.Module = PairSelfLogits(model) if pair else model
    hooks = ActivationsAndGradients(wrapper, [_stage_module(model, layer)], None, detach=False)
    try:
        with torch.enable_grad():
            rows = hooks(x)
            yield hooks.activations[0], rows
    finally:
        hooks.release()


def _compute_cams(model: nn.Module, name: str, x: Tensor, run: _Pass, targets: tuple[int, int],
                  methods: Sequence[str], pair: bool, layer: str | None, size: tuple[int, int]
                  ) -> dict[str, CamMaps]:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    t1, t2 = targets
    cam_targets = [ClassifierOutputTarget(t1), ClassifierOutputTarget(t2)]
    need_grad = any(m not in _GRADIENT_FREE for m in methods)
    results: dict[str, CamMaps] = {}
    with _cam_activations(model, x, run, pair, layer) as (acts, rows):
        grads: dict[str, np.ndarray] = {}
        if need_grad:
            # Test path: the two images' scores are independent, one backward serves both.
            g = torch.autograd.grad(rows[0, t1] + rows[1, t2], acts, retain_graph=pair)[0]
            grads["test"] = _np(g)
            if pair:
                g1 = torch.autograd.grad(rows[2, t1], acts, retain_graph=True)[0]
                g2 = torch.autograd.grad(rows[3, t2], acts)[0]
                grads["pair"] = np.stack([_np(g1[0]), _np(g2[1])])
        activations = _np(acts)
    layer_name = layer or run.last
    paths = ("test", "pair") if pair else ("test",)
    for path in paths:
        for method in methods:
            obj = _cam_method(method)
            raw = obj.get_cam_image(x, None, cam_targets, activations, grads.get(path), False)
            raw = np.maximum(raw, 0).astype(np.float32)  # grad-cam's ReLU, without its min-max
            up = [_upsample(r, size) for r in raw]
            if method in _GRADIENT_FREE:
                what = "class-agnostic: first principal component of the activations, no target"
            else:
                what = "pair-path self logit" if path == "pair" else "test-path logit"
            results[f"{name}/{path}/{method}"] = CamMaps(
                map1=up[0], map2=up[1], target1=int(t1), target2=int(t2), method=method,
                label=f"{name} {method} ({what}, {layer_name})", raw1=raw[0], raw2=raw[1],
                raw_min1=float(raw[0].min()), raw_max1=float(raw[0].max()),
                raw_min2=float(raw[1].min()), raw_max2=float(raw[1].max()), layer=layer_name)
    return results


def _upsample(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(np.ascontiguousarray(m, dtype=np.float32), (size[1], size[0]),
                      interpolation=cv2.INTER_LINEAR)


# --------------------------------------------------------------------------------------------------
# The explanation
# --------------------------------------------------------------------------------------------------


def explain_pair(
    model: nn.Module,
    image1: ImageInput,
    image2: ImageInput,
    baseline: nn.Module | None = None,
    *,
    k: int = 5,
    rank_by: RankBy = "gate",
    cam_methods: Sequence[str] = ("gradcam",),
    preprocess=None,
    class_names: Sequence[str] | None = None,
    targets: tuple[int, int] | None = None,
    ltpa_stages: Sequence[str] | None = None,
    cam_layer: str | None = None,
    cam_paths: Sequence[str] = ("test", "pair"),
) -> PairExplanation:
    """Explain how API-Net ``model`` compares ``image1`` with ``image2`` (and the ``baseline``).

    Args:
        model: an :class:`~apinet.model.APINet` (any module with ``forward_stages``,
            ``pool_features``, ``forward_head`` and ``interact``).
        image1, image2: paths, bytes, PIL images (decoded with ``apinet.data.load_image`` and
            ``preprocess``ed), or tensors ``[3, H, W]`` already preprocessed (same size).
        baseline: optional plain classifier explained on the same pair.
        k: channels per channel set.
        rank_by: ``"gate"`` (g_i) or ``"gate_x_activation"`` (g_i * x_i, the channel's contribution
            to the gated residual x_i * g_i).
        cam_methods: any of :data:`CAM_METHODS`; empty for none.
        preprocess: a :class:`~apinet.data.transforms.Preprocess`; default 128 px, ImageNet stats.
        class_names: names of the C classes (default "0", "1", ...).
        targets: reference class of each image; default its predicted test-path class.
        ltpa_stages: stages for parameter-free LTPA (default: the last stage only).
        cam_layer: CAM layer; ``None`` = the last feature maps (hook-free).
        cam_paths: which API-Net logit paths get CAMs (``"test"``, ``"pair"``).
    """
    if not all(hasattr(model, a) for a in ("interact", "forward_stages", "pool_features")):
        raise TypeError("explain_pair needs an API-Net model (with interact); got " + type(model).__name__)
    for method in cam_methods:
        _cam_method(method)
    if rank_by not in ("gate", "gate_x_activation"):
        raise ValueError(f"rank_by must be 'gate' or 'gate_x_activation', got {rank_by!r}")
    if preprocess is None:  # models passed without a card: the demo checkpoints' 128 px
        from .data.transforms import Preprocess

        preprocess = Preprocess(128)
    timings: dict[str, float] = {}
    tic = time.perf_counter()
    t1_img = _to_tensor(image1, preprocess, "image1")
    t2_img = _to_tensor(image2, preprocess, "image2")
    if t1_img.shape != t2_img.shape:
        raise ValueError(f"both images must have the same size, got {tuple(t1_img.shape)} and {tuple(t2_img.shape)}")
    device = next(model.parameters()).device
    x = torch.stack([t1_img, t2_img]).to(device)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    timings["inputs"] = time.perf_counter() - tic

    models = [model] + ([baseline] if baseline is not None else [])
    with _locked_eval(models):
        tic = time.perf_counter()
        with torch.no_grad():
            run = _forward(model, x, "apinet")
            out = model.interact(run.pooled[0:1], run.pooled[1:2])
            test = model.forward_head(run.pooled)
            brun = _forward(baseline, x, "baseline") if baseline is not None else None
            btest = baseline.forward_head(brun.pooled) if brun is not None else None
        timings["forward"] = time.perf_counter() - tic

        logits = {
            "1_self": _np(out.logits1_self[0]), "1_other": _np(out.logits1_other[0]),
            "2_self": _np(out.logits2_self[0]), "2_other": _np(out.logits2_other[0]),
            "1_test": _np(test[0]), "2_test": _np(test[1]),
        }
        num_classes = logits["1_test"].shape[0]
        if targets is None:
            targets = (int(np.argmax(logits["1_test"])), int(np.argmax(logits["2_test"])))
        targets = (int(targets[0]), int(targets[1]))
        for t in targets:
            if not 0 <= t < num_classes:
                raise ValueError(f"target {t} out of range for {num_classes} classes")
        if btest is not None and btest.shape[1] != num_classes:
            raise ValueError(f"baseline has {btest.shape[1]} classes, API-Net {num_classes}")
        names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")

        tic = time.perf_counter()
        gated = torch.cat([out.self1, out.self2])
        stages = list(ltpa_stages) if ltpa_stages is not None else [run.last]
        ltpa = _ltpa_maps(model, "apinet", run, stages, gated)
        if brun is not None:
            ltpa.update(_ltpa_maps(baseline, "baseline", brun, stages, None))
        timings["ltpa"] = time.perf_counter() - tic

        tic = time.perf_counter()
        cams: dict[str, CamMaps] = {}
        if cam_methods:
            use_pair = "pair" in cam_paths
            cams.update(_compute_cams(model, "apinet", x, run, targets, cam_methods, use_pair, cam_layer, size))
            if "test" not in cam_paths:
                cams = {key: v for key, v in cams.items() if "/test/" not in key}
            if baseline is not None:
                cams.update(_compute_cams(baseline, "baseline", x, brun, targets, cam_methods, False,
                                          cam_layer, size))
        timings["cams"] = time.perf_counter() - tic

    tic = time.perf_counter()
    x1, x2 = _np(run.pooled[0]), _np(run.pooled[1])
    g1, g2 = _np(out.gate1[0]), _np(out.gate2[0])
    maps = _np(run.stages[run.last])
    xm = _np(out.mutual[0])
    channels = _channel_sets(k, rank_by, x1, x2, g1, g2, xm, maps, brun)
    order1, order2 = _gate_order(g1, x1, xm, rank_by), _gate_order(g2, x2, xm, rank_by)
    probabilities = {key: _softmax(v).astype(np.float32) for key, v in logits.items()}
    p = {key: float(v[targets[0] if key.startswith("1") else targets[1]]) for key, v in probabilities.items()}
    timings["assemble"] = time.perf_counter() - tic

    a2 = dict(run.a2)
    if brun is not None:
        a2.update(brun.a2)
    settings = {
        "k": int(k), "rank_by": rank_by, "cam_methods": list(cam_methods), "cam_layer": cam_layer or run.last,
        "cam_paths": list(cam_paths), "ltpa_stages": stages, "preprocess": preprocess.to_dict(),
        "apinet": _describe_model(model), "baseline": _describe_model(baseline) if baseline is not None else None,
        "ltpa_similarity": "dot", "ltpa_temperature": EXPLAIN_TEMPERATURE,
        "rank_margin": RANK_MARGIN, "timings_s": timings,
    }
    return PairExplanation(
        image1=_display_image(t1_img, preprocess), image2=_display_image(t2_img, preprocess),
        class_names=names, features1=x1, features2=x2, mutual=_np(out.mutual[0]), gate1=g1, gate2=g2,
        logits=logits, targets=targets,
        p_self1=float(p["1_self"]), p_other1=float(p["1_other"]),
        p_self2=float(p["2_self"]), p_other2=float(p["2_other"]),
        rank_term1=float(max(0.0, p["1_other"] - p["1_self"] + RANK_MARGIN)),
        rank_term2=float(max(0.0, p["2_other"] - p["2_self"] + RANK_MARGIN)),
        channels=channels, ltpa=ltpa, cams=cams, a2=a2,
        baseline_logits={} if btest is None else {"1_test": _np(btest[0]), "2_test": _np(btest[1])},
        baseline_features1=None if brun is None else _np(brun.pooled[0]),
        baseline_features2=None if brun is None else _np(brun.pooled[1]),
        settings=settings,
        interaction={name: _np(getattr(out, name)[0]) for name in ("self1", "other1", "self2", "other2")},
        gate_order1=order1, gate_order2=order2, probabilities=probabilities, rank_margin=RANK_MARGIN,
    )


def _softmax(v: np.ndarray) -> np.ndarray:
    z = np.asarray(v, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def _gate_order(gate: np.ndarray, x: np.ndarray, xm: np.ndarray, rank_by: str) -> np.ndarray:
    """All channels, best first, by the same ranking as the top-k channel sets (:func:`gate_topk_channels`)."""
    by_act = rank_by == "gate_x_activation"
    order, _ = gate_topk_channels(gate, len(gate), x if by_act else None, gate_logit=np.asarray(xm) * np.asarray(x))
    return order


def _describe_model(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    return dict(config) if isinstance(config, dict) else {"class": type(model).__name__}


def _channel_sets(k: int, rank_by: str, x1, x2, g1, g2, xm, maps: np.ndarray, brun: _Pass | None
                  ) -> dict[str, ChannelMaps]:
    by_act = rank_by == "gate_x_activation"
    what = ("g * x (gate times pooled activation)" if by_act
            else "gate value g (ordered by z = x_m * x, which separates gates that round to 1)")
    sets: dict[str, ChannelMaps] = {}
    for i, (g_own, x_own, g_oth, x_oth) in enumerate(((g1, x1, g2, x2), (g2, x2, g1, x1)), start=1):
        idx, score = gate_topk_channels(g_own, k, x_own if by_act else None, gate_logit=xm * x_own)
        other = g_oth[idx] * (x_oth[idx] if by_act else 1.0)
        sets[f"apinet_gate{i}"] = ChannelMaps(
            indices=idx, scores=score, maps1=maps[0, idx], maps2=maps[1, idx],
            label=f"API-Net top-{len(idx)} channels of g{i}", ranking=f"top-k of image {i}'s {what}",
            scores2=other.astype(np.float32))
    if brun is not None:
        bmaps = _np(brun.stages[brun.last])
        b1, b2 = _np(brun.pooled[0]), _np(brun.pooled[1])
        i1, s1 = gate_topk_channels(b1, k)
        i2, s2 = gate_topk_channels(b2, k)
        sets["baseline_top"] = ChannelMaps(
            indices=i1, scores=s1, maps1=bmaps[0, i1], maps2=bmaps[1, i2],
            label=f"baseline top-{len(i1)} channels (per image)",
            ranking="top-k of each image's own pooled activation (indices for image 1, indices2 for image 2)",
            indices2=i2, scores2=s2)
        idx = sets["apinet_gate1"].indices
        if bmaps.shape[1] > int(idx.max()):
            sets["baseline_at_apinet"] = ChannelMaps(
                indices=idx, scores=b1[idx], maps1=bmaps[0, idx], maps2=bmaps[1, idx],
                label="baseline at API-Net's g1 channels",
                ranking="API-Net's top-k of g1; scores are the baseline's pooled activations "
                        "(channel indices only correspond when both trunks share an initialisation)",
                scores2=b2[idx])
    return sets


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def warm_up(model: nn.Module, baseline: nn.Module | None = None, input_size: int = 128,
            cam_methods: Sequence[str] = ("gradcam",)) -> float:
    """Run one throw-away explanation so the first real one does not pay one-off start-up costs
    (grad-cam import, oneDNN kernel selection, allocator growth). Returns the seconds it took."""
    tic = time.perf_counter()
    dummy = torch.zeros(3, input_size, input_size)
    explain_pair(model, dummy, dummy, baseline, k=1, cam_methods=cam_methods)
    return time.perf_counter() - tic


def load_pair_models(checkpoint: str | Path = DEFAULT_APINET_CHECKPOINT,
                     baseline: str | Path | None = DEFAULT_BASELINE_CHECKPOINT,
                     map_location: str = "cpu"):
    """Load ``(apinet, apinet_card, baseline_or_None, baseline_card_or_None)`` in eval mode."""
    from .checkpoint import load_model

    for path in (checkpoint, baseline):
        _require_demo_checkpoint(path)
    model, card = load_model(checkpoint, map_location=map_location)
    bmodel, bcard = (None, None)
    if baseline is not None:
        bmodel, bcard = load_model(baseline, map_location=map_location)
    return model, card, bmodel, bcard


def _require_demo_checkpoint(path: str | Path | None) -> None:
    """A missing *default* checkpoint gets an error that says where the demo checkpoints live.

    They are part of the git repository (``assets/checkpoints/``), not of the pip package: an
    installed ``apinet`` run outside a clone has none.
    """
    from .checkpoint import CheckpointError

    if path is None or Path(path).exists():
        return
    if Path(path) in (DEFAULT_APINET_CHECKPOINT, DEFAULT_BASELINE_CHECKPOINT):
        raise CheckpointError(
            f"{path}: demo checkpoint not found. The demo checkpoints ship with the git repository "
            "(assets/checkpoints/), not with the pip package: run from the root of a clone, or pass "
            "--checkpoint / --baseline with your own (made by `apinet train`, `apinet import-official` or "
            "`apinet import-classifier`; --baseline none skips the baseline)"
        )


def explain_pair_from_checkpoint(image1: ImageInput, image2: ImageInput,
                                 checkpoint: str | Path = DEFAULT_APINET_CHECKPOINT,
                                 baseline: str | Path | None = DEFAULT_BASELINE_CHECKPOINT,
                                 **kwargs: Any) -> PairExplanation:
    """Load the checkpoints (with their cards' preprocessing and class names) and explain a pair;
    images unlike the model's training data are flagged in :attr:`PairExplanation.unusual` when the
    checkpoint carries a reference (:mod:`apinet.ood`)."""
    from .ood import FeatureReference

    model, card, bmodel, _ = load_pair_models(checkpoint, baseline)
    kwargs.setdefault("preprocess", preprocess_from_card(card))
    kwargs.setdefault("class_names", card.get("class_names"))
    expl = explain_pair(model, image1, image2, bmodel, **kwargs)
    reference = FeatureReference.from_checkpoint(checkpoint, card)
    if reference is not None:
        expl.unusual = unusual_lines(reference, expl)
    return expl


def unusual_lines(reference, expl: PairExplanation) -> tuple[str | None, str | None]:
    """For each image of the pair, the reference's one-line warning when it is unlike the training data."""
    scores = reference.scores(np.stack([expl.features1, expl.features2]))
    return tuple(reference.message(float(s)) if s > reference.threshold else None for s in scores)  # type: ignore
