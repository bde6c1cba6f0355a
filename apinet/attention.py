"""Attention modules: LTPA attention estimator and the A^2 double-attention block.

* ``ltpa_attention`` / ``LTPAEstimator`` -- "Learn To Pay Attention", Jetley, Lord, Lee & Torr,
  ICLR 2018 (https://arxiv.org/abs/1804.02391; official code:
  github.com/SaoYan/LearnToPayAttention).
* ``DoubleAttention`` -- "A^2-Nets: Double Attention Networks", Chen, Kalantidis, Li, Yan & Feng,
  NeurIPS 2018 (https://arxiv.org/abs/1810.11579).

Standalone on purpose (torch only, no other ``apinet`` import) so it can be reused by the model, the
explainer and the tests without import cycles.

Conventions: maps are ``[B, h, w]`` (or ``[B, n, h, w]``); positions are flattened row-major
(``i = row * w + col``). The attention maths (compatibility, normalisation, weighted pooling) runs
in float32 even under autocast: softmax over ~200 positions of half-precision scores loses the small
differences that make the map worth looking at.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "A2Maps",
    "Aggregate",
    "EXPLAIN_TEMPERATURE",
    "Compatibility",
    "DoubleAttention",
    "LTPAEstimator",
    "LTPAMap",
    "LTPAOutput",
    "Normalize",
    "Similarity",
    "ltpa_attention",
]

Normalize = Literal["softmax", "sigmoid"]
Compatibility = Literal["pc", "dp"]
Aggregate = Literal["concat", "independent"]
Similarity = Literal["dot", "cosine"]

_NORMALIZE = ("softmax", "sigmoid")
_SIMILARITY = ("dot", "cosine")
_COMPATIBILITY = ("pc", "dp")
_AGGREGATE = ("concat", "independent")


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast on ``device`` (where it exists) so the enclosed maths runs in float32."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _fp32(t: Tensor) -> Tensor:
    """Upcast half / bfloat16 to float32; float32 and float64 pass through unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _normalize_and_pool(
    compatibility: Tensor, local: Tensor, normalize: Normalize
) -> tuple[Tensor, Tensor]:
    """Turn scores ``[B,h,w]`` into attention ``[B,h,w]`` and pool ``local [B,C,h,w]`` to ``[B,C]``.

    softmax: a = softmax over the h*w positions, g_a = sum_i a_i l_i (a convex combination).
    sigmoid: a = sigmoid(c) independently per position, g_a = (1/(h*w)) sum_i a_i l_i, as the
    official LTPA code does (``normalize_attn=False``: ``adaptive_avg_pool2d(a * l)``). We keep the
    1/(h*w) rather than 1/sum(a): dividing by sum(a) would turn the sigmoid weights back into a
    convex combination and discard exactly what the sigmoid variant is for -- *how much* of the
    image is attended, carried in the descriptor's magnitude -- and would differ from the released
    code.
    """
    batch, channels = local.shape[:2]
    scores = compatibility.flatten(1)  # [B, h*w]
    values = local.flatten(2)  # [B, C, h*w]
    if normalize == "softmax":
        weights = torch.softmax(scores, dim=1)
        descriptor = torch.einsum("bn,bcn->bc", weights, values)
    else:
        weights = torch.sigmoid(scores)
        descriptor = torch.einsum("bn,bcn->bc", weights, values) / scores.shape[1]
    return weights.view_as(compatibility), descriptor.view(batch, channels)


def _check_local_global(local: Tensor, global_vec: Tensor, what: str = "local") -> None:
    if local.ndim != 4:
        raise ValueError(f"{what} must be [B, C, h, w], got shape {tuple(local.shape)}")
    if global_vec.ndim != 2 or global_vec.shape != local.shape[:2]:
        raise ValueError(
            f"global_vec must be [B, C] = {tuple(local.shape[:2])} to match {what}, "
            f"got {tuple(global_vec.shape)}"
        )


# --------------------------------------------------------------------------------------------------
# LTPA (Jetley et al., ICLR 2018)
# --------------------------------------------------------------------------------------------------


#: Temperature of the parameter-free LTPA maps the explanations show: ``"std"`` = the standard
#: deviation of the compatibility over the image's positions (see :func:`ltpa_attention`).
EXPLAIN_TEMPERATURE = "std"


@dataclass
class LTPAMap:
    """Parameter-free LTPA attention for one stage."""

    compatibility: Tensor  # [B, h, w] float32, the raw c_i = <l_i, g> (whatever ``similarity`` was used)
    attention: Tensor  # [B, h, w] float32, a_i (softmax: sums to 1 per image; sigmoid: in (0,1))
    descriptor: Tensor  # [B, C] float32, attended descriptor g_a
    scores: Tensor | None = None  # [B, h, w] float32, what the softmax / sigmoid saw: s_i / T
    similarity: str = "dot"
    temperature: Tensor | None = None  # [B] float32, the temperature T used for each image


def ltpa_attention(local: Tensor, global_vec: Tensor, normalize: Normalize = "softmax",
                   similarity: Similarity = "dot", temperature: float | str = 1.0) -> LTPAMap:
    """Parameter-free LTPA attention, Jetley et al., ICLR 2018, eq. 2-3.

    Scores s_i = <l_i, g> (``similarity="dot"``, the paper) or cos(l_i, g) (``"cosine"``), divided by
    the temperature T; a = softmax of s / T over the h*w positions (or elementwise sigmoid);
    g_a = sum_i a_i l_i (sigmoid: divided by h*w as in the official code, see _normalize_and_pool).
    The raw dot product c_i = <l_i, g> is always returned as ``compatibility``; ``scores`` is s / T.

    ``temperature``: a positive number, or ``"std"``: T = the standard deviation of s over the
    image's positions (per image; a constant s gives T = 1).

    Why the explanations use the dot product at T = std (:data:`EXPLAIN_TEMPERATURE`): at T = 1 (the
    paper) c spans ~200-1,700 logits across positions on post-ReLU features of a trained network
    (demo checkpoint, median range: 1,616 at layer 4, 471 at layer 3), so the softmax is one-hot, an
    argmax, not a map (measured effective support exp(entropy): 1.0 of 64 cells). 1/sqrt(C), the
    transformer scaling, assumes unit-variance entries, which ReLU features are not: ~70 logits
    remain (support 1.02). No fixed T serves every stage and model, as c's scale differs by
    several times between them. T = std keeps the paper's compatibility and therefore its ranking of
    positions (argmax, Spearman) and makes the scores unit-free: a position one standard deviation
    above another weighs e = 2.7 times more (median support on the demo checkpoint: 25 of 64 cells
    at layer 4, 9 at layer 3). The cost: the spread is normalised per image, so only the shape of
    two maps' spreads, not their overall sharpness, is comparable. The cosine (``"cosine"``, kept as
    an option) was considered and measured on the validation split: it drops |l_i|, which in ReLU
    features is how strongly a pattern is present, and with g the global average, dominated by
    background, it ranks positions by how much they look like background (its argmax hit the
    differing part in 0.166 of 760 validation scorings, below a random point on the bird, 0.310;
    c's argmax 0.424).

    Args:
        local: feature map ``[B, C, h, w]`` (e.g. the backbone's maps before global pooling).
        global_vec: global feature ``[B, C]`` of the same width (e.g. the pooled feature).
        normalize: ``"softmax"`` (paper) or ``"sigmoid"`` (official ``normalize_attn=False``).
        similarity: ``"dot"`` (paper) or ``"cosine"``.
        temperature: T > 0, or ``"std"``.

    Softmax maps are ~1/(h*w) per position; rescale them for display and say how.
    """
    _check_choice("normalize", normalize, _NORMALIZE)
    _check_choice("similarity", similarity, _SIMILARITY)
    if temperature != "std" and not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
                                     and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number or 'std', got {temperature!r}")
    _check_local_global(local, global_vec)
    with _full_precision(local.device):
        local32 = _fp32(local)
        global32 = global_vec.to(local32.dtype)
        compatibility = torch.einsum("bchw,bc->bhw", local32, global32)
        if similarity == "cosine":
            norms = torch.linalg.vector_norm(local32, dim=1) * torch.linalg.vector_norm(global32, dim=1)[:, None, None]
            scores = compatibility / norms.clamp_min(1e-12)
        else:
            scores = compatibility
        if temperature == "std":
            flat = scores.flatten(1)
            spread = flat.std(dim=1) if flat.shape[1] > 1 else torch.zeros(flat.shape[0], dtype=flat.dtype,
                                                                               device=flat.device)
            temp = torch.where(spread > 0, spread, torch.ones_like(spread))
        else:
            temp = torch.full((scores.shape[0],), float(temperature), dtype=scores.dtype, device=scores.device)
        scores = scores / temp[:, None, None]
        attention, descriptor = _normalize_and_pool(scores, local32, normalize)
    return LTPAMap(compatibility=compatibility, attention=attention, descriptor=descriptor, scores=scores,
                   similarity=similarity, temperature=temp)


@dataclass
class LTPAOutput:
    """Output of :class:`LTPAEstimator`; dict keys are the stage names, in construction order."""

    logits: Tensor  # [B, num_classes] (independent aggregation: log of the averaged probabilities)
    attention: dict[str, Tensor]  # stage -> [B, h_s, w_s] float32
    compatibility: dict[str, Tensor]  # stage -> [B, h_s, w_s] float32
    descriptors: dict[str, Tensor]  # stage -> [B, global_dim] float32, g_a^s


class LTPAEstimator(nn.Module):
    """Trainable LTPA attention estimator with classifier, Jetley et al., ICLR 2018, sec. 3.

    Per stage s: l_hat = 1x1-conv projection of the local maps to the global width; scores
    c_i = <u_s, l_hat_i + g> ("pc") or <l_hat_i, g> ("dp"); a = softmax over positions;
    g_a^s = sum_i a_i l_hat_i.
    The class scores use only the g_a^s: one linear layer on their concatenation ("concat") or one
    linear layer per stage with the softmax probabilities averaged ("independent").

    Args:
        stage_channels: ordered ``{stage: channels}``, e.g. ``{"layer3": 1024, "layer4": 2048}``.
        global_dim: width D of the global vector g.
        num_classes: number of classes T.
        compatibility: ``"pc"`` (parametrised, the paper's best) or ``"dp"`` (dot product).
        normalize: ``"softmax"`` (paper) or ``"sigmoid"`` (official code; descriptor / (h*w)).
        aggregate: ``"concat"`` or ``"independent"``. For ``"independent"`` the returned logits are
            ``log(mean_s softmax(W_s g_a^s))``: ``softmax(logits)`` is the averaged probability and
            ``F.cross_entropy(logits, y)`` is the NLL of that average, so the usual loss just works.

    As in the paper and the official code: no projection when the stage already has ``global_dim``
    channels, the projection is a bias-free 1x1 conv, and u is a bias-free 1x1 conv with one output.
    """

    def __init__(
        self,
        stage_channels: Mapping[str, int],
        global_dim: int,
        num_classes: int,
        compatibility: Compatibility = "pc",
        normalize: Normalize = "softmax",
        aggregate: Aggregate = "concat",
    ) -> None:
        super().__init__()
        if not stage_channels:
            raise ValueError("stage_channels must name at least one stage")
        if global_dim < 1 or num_classes < 1:
            raise ValueError("global_dim and num_classes must be positive")
        _check_choice("compatibility", compatibility, _COMPATIBILITY)
        _check_choice("normalize", normalize, _NORMALIZE)
        _check_choice("aggregate", aggregate, _AGGREGATE)
        self.stage_channels = {str(k): int(v) for k, v in stage_channels.items()}
        self.global_dim = int(global_dim)
        self.num_classes = int(num_classes)
        self.compatibility = compatibility
        self.normalize = normalize
        self.aggregate = aggregate

        # ModuleList (not ModuleDict) so stage names such as "features.denseblock3" are allowed.
        self.projections = nn.ModuleList(
            nn.Identity() if c == global_dim else nn.Conv2d(c, global_dim, 1, bias=False)
            for c in self.stage_channels.values()
        )
        self.scorers = nn.ModuleList(
            nn.Conv2d(global_dim, 1, 1, bias=False) if compatibility == "pc" else nn.Identity()
            for _ in self.stage_channels
        )
        n_stages = len(self.stage_channels)
        if aggregate == "concat":
            self.classifiers = nn.ModuleList([nn.Linear(n_stages * global_dim, num_classes)])
        else:
            self.classifiers = nn.ModuleList(
                nn.Linear(global_dim, num_classes) for _ in range(n_stages)
            )

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(self.stage_channels)

    def config(self) -> dict:
        """JSON-serialisable constructor arguments: ``LTPAEstimator(**cfg)`` rebuilds the module."""
        return {
            "stage_channels": dict(self.stage_channels),
            "global_dim": self.global_dim,
            "num_classes": self.num_classes,
            "compatibility": self.compatibility,
            "normalize": self.normalize,
            "aggregate": self.aggregate,
        }

    def _stage_scores(self, index: int, projected: Tensor, global32: Tensor) -> Tensor:
        """Compatibility scores ``[B, h, w]`` of one stage, in float32."""
        if self.compatibility == "dp":
            return torch.einsum("bchw,bc->bhw", projected, global32)
        scorer = self.scorers[index]
        # <u, l_i + g>: the 1x1 conv is u applied at every position.
        weight = scorer.weight.to(projected.dtype)
        return F.conv2d(projected + global32[:, :, None, None], weight).squeeze(1)

    def forward(self, stage_maps: Mapping[str, Tensor], global_vec: Tensor) -> LTPAOutput:
        """Attend every configured stage with ``global_vec [B, D]`` and classify from the g_a^s."""
        missing = [s for s in self.stages if s not in stage_maps]
        if missing:
            raise KeyError(f"stage_maps lacks stages {missing}; has {sorted(stage_maps)}")
        if global_vec.ndim != 2 or global_vec.shape[1] != self.global_dim:
            raise ValueError(
                f"global_vec must be [B, {self.global_dim}], got {tuple(global_vec.shape)}"
            )

        attention, compatibility, descriptors = {}, {}, {}
        for index, stage in enumerate(self.stages):
            local = stage_maps[stage]
            if local.ndim != 4 or local.shape[1] != self.stage_channels[stage]:
                raise ValueError(
                    f"stage {stage!r} must be [B, {self.stage_channels[stage]}, h, w], "
                    f"got {tuple(local.shape)}"
                )
            projected = self.projections[index](local)  # may run in reduced precision
            with _full_precision(local.device):
                projected32 = _fp32(projected)
                global32 = global_vec.to(projected32.dtype)
                scores = self._stage_scores(index, projected32, global32)
                weights, descriptor = _normalize_and_pool(scores, projected32, self.normalize)
            compatibility[stage], attention[stage], descriptors[stage] = scores, weights, descriptor

        logits = self._classify(list(descriptors.values()))
        return LTPAOutput(
            logits=logits, attention=attention, compatibility=compatibility, descriptors=descriptors
        )

    def _classify(self, descriptors: list[Tensor]) -> Tensor:
        if self.aggregate == "concat":
            return self.classifiers[0](torch.cat(descriptors, dim=1))
        # log(mean_s p_s) computed stably as logsumexp_s(log p_s) - log S.
        log_probs = torch.stack(
            [F.log_softmax(_fp32(head(g)), dim=1) for head, g in zip(self.classifiers, descriptors)]
        )
        return torch.logsumexp(log_probs, dim=0) - math.log(len(descriptors))


# --------------------------------------------------------------------------------------------------
# A^2 double attention (Chen et al., NeurIPS 2018)
# --------------------------------------------------------------------------------------------------


@dataclass
class A2Maps:
    """Attention maps of one :class:`DoubleAttention` forward pass."""

    gather: Tensor  # [B, n, h, w] float32, softmax(B) over positions: each of the n maps sums to 1
    distribute: Tensor  # [B, n, h, w] float32, softmax(V) over n: sums to 1 at each position


class DoubleAttention(nn.Module):
    """A^2 double-attention block, Chen et al., "A^2-Nets", NeurIPS 2018, eq. 3-5 and fig. 2.

    Gather: G = A softmax_positions(B)^T, n global descriptors of width m (second-order pooling).
    Distribute: z_i = G softmax_n(v_i) at every position i; Y = X + proj(Z), proj a 1x1 conv m -> C.

    A, B, V are 1x1 convs of X with m, n, n output channels (default ``in_channels // 4``, >= 1).

    ``proj`` is zero-initialised (weight and bias), so a freshly inserted block is exactly the
    identity and a pretrained trunk's outputs are unchanged at the start of fine-tuning. Chosen over
    a zero-gamma BatchNorm after ``proj``: it adds no batch dependence (same at batch size 1 and in
    eval mode), and ``proj.weight`` itself still gets gradient dL/dW = dL/dY Z^T at step 0 (behind
    a zero-gamma BN it would not); once it is non-zero, gradient flows on to A, B and V.

    Map capture without hooks: ``forward_with_maps`` returns the maps (attached to the graph); and
    while ``capture_maps`` is True (or inside ``with block.capturing_maps():``) every ``forward``
    stores detached maps in ``last_maps``. Off by default so training keeps no extra tensors alive.
    """

    last_maps: A2Maps | None

    def __init__(self, in_channels: int, c_m: int | None = None, c_n: int | None = None) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError("in_channels must be positive")
        self.in_channels = int(in_channels)
        self.c_m = int(c_m) if c_m is not None else max(1, in_channels // 4)
        self.c_n = int(c_n) if c_n is not None else max(1, in_channels // 4)
        if self.c_m < 1 or self.c_n < 1:
            raise ValueError("c_m and c_n must be positive")
        self.conv_a = nn.Conv2d(in_channels, self.c_m, 1)
        self.conv_b = nn.Conv2d(in_channels, self.c_n, 1)
        self.conv_v = nn.Conv2d(in_channels, self.c_n, 1)
        self.proj = nn.Conv2d(self.c_m, in_channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.capture_maps = False
        self.last_maps = None

    def config(self) -> dict:
        """JSON-serialisable constructor arguments: ``DoubleAttention(**cfg)`` rebuilds it."""
        return {"in_channels": self.in_channels, "c_m": self.c_m, "c_n": self.c_n}

    @contextlib.contextmanager
    def capturing_maps(self) -> Iterator[DoubleAttention]:
        """Inside the ``with``, ``forward`` stores detached maps in ``last_maps``; flag restored."""
        previous, self.capture_maps = self.capture_maps, True
        try:
            yield self
        finally:
            self.capture_maps = previous

    def forward(self, x: Tensor) -> Tensor:
        y, maps = self.forward_with_maps(x)
        if self.capture_maps:
            self.last_maps = A2Maps(
                gather=maps.gather.detach(), distribute=maps.distribute.detach()
            )
        return y

    def forward_with_maps(self, x: Tensor) -> tuple[Tensor, A2Maps]:
        """Return ``Y [B, C, h, w]`` and the gather / distribute maps of this pass."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be [B, {self.in_channels}, h, w], got {tuple(x.shape)}")
        batch, _, height, width = x.shape
        features = self.conv_a(x).flatten(2)  # A: [B, m, hw]
        gather_logits = self.conv_b(x).flatten(2)  # B: [B, n, hw]
        distribute_logits = self.conv_v(x).flatten(2)  # V: [B, n, hw]
        with _full_precision(x.device):
            # Softmax axes are the whole point: B over positions (dim 2), V over the n maps (dim 1).
            gather = torch.softmax(_fp32(gather_logits), dim=2)
            distribute = torch.softmax(_fp32(distribute_logits), dim=1)
            features32 = features.to(gather.dtype)
            descriptors = torch.bmm(features32, gather.transpose(1, 2))  # G: [B, m, n]
            z = torch.bmm(descriptors, distribute)  # Z: [B, m, hw]
        z = z.view(batch, self.c_m, height, width).to(features.dtype)
        y = x + self.proj(z)
        maps = A2Maps(
            gather=gather.view(batch, self.c_n, height, width),
            distribute=distribute.view(batch, self.c_n, height, width),
        )
        return y, maps

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, c_m={self.c_m}, c_n={self.c_n}"
