"""Model plumbing for explanations: checkpoints, preprocessing, per-model locks and the no-grad forward pass."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..attention import DoubleAttention
from ._util import to_numpy
from .maps import A2StageMaps

__all__ = [
    "DEFAULT_APINET_CHECKPOINT",
    "DEFAULT_BASELINE_CHECKPOINT",
    "ImageInput",
    "default_preprocess",
    "load_pair_models",
    "model_lock",
    "preprocess_from_card",
    "warm_up",
]

ImageInput = Any  # path, PIL image, bytes, or a preprocessed tensor [3, H, W]

DEFAULT_APINET_CHECKPOINT = Path("assets/checkpoints/apinet_synthbirds.safetensors")
DEFAULT_BASELINE_CHECKPOINT = Path("assets/checkpoints/baseline_synthbirds.safetensors")


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
def locked_eval(models: Sequence[nn.Module]) -> Iterator[None]:
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
    from ..data.transforms import Preprocess

    return Preprocess.from_card(card)


def default_preprocess():
    """Preprocessing of a model passed without a card: the one fallback of :mod:`apinet.data.transforms`
    (``CARDLESS_INPUT_SIZE`` / ``CARDLESS_RESIZE``: a 224 px centre crop of a 256 px resize, ImageNet
    statistics), what :meth:`Preprocess.from_card <apinet.data.transforms.Preprocess.from_card>` gives a
    card without one (here without its warning: no card was passed, none is missing)."""
    from ..data.transforms import CARDLESS_INPUT_SIZE, CARDLESS_RESIZE, Preprocess

    return Preprocess(CARDLESS_INPUT_SIZE, CARDLESS_RESIZE)


def to_tensor(image: ImageInput, preprocess, name: str) -> Tensor:
    if isinstance(image, Tensor):
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"{name}: a tensor image must be [3, H, W] (preprocessed), got {tuple(image.shape)}")
        return image.float()
    from ..data.images import load_image

    return preprocess(load_image(image))


def display_image(tensor: Tensor, preprocess) -> np.ndarray:
    rgb = preprocess.denormalize(tensor.detach().cpu().float())
    return (rgb.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def describe_model(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    return dict(config) if isinstance(config, dict) else {"class": type(model).__name__}


# --------------------------------------------------------------------------------------------------
# Forward passes (no_grad)
# --------------------------------------------------------------------------------------------------


@dataclass
class ForwardPass:
    stages: dict[str, Tensor]  # stage -> [2, C_s, h, w]
    last: str
    pooled: Tensor  # [2, D]
    a2: dict[str, A2StageMaps]
    trained_ltpa: Any  # LTPAOutput or None

    @property
    def features(self) -> Tensor:
        """The last feature maps F ``[2, D, h, w]`` (what the classifier pools)."""
        return self.stages[self.last]


def _a2_blocks(model: nn.Module) -> dict[str, DoubleAttention]:
    inserts = getattr(getattr(model, "trunk", None), "inserts", {})
    return {s: b for s, b in inserts.items() if isinstance(b, DoubleAttention)}


def forward(model: nn.Module, x: Tensor, name: str) -> ForwardPass:
    """Every stage of ``model`` on the two images ``x [2, 3, H, W]``, its pooled features, A^2 maps and
    trained LTPA output, leaving shared A^2 modules as they were found."""
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
                gather1=to_numpy(maps.gather[0]), gather2=to_numpy(maps.gather[1]),
                distribute1=to_numpy(maps.distribute[0]), distribute2=to_numpy(maps.distribute[1]),
                label=f"{name} A^2 after {stage}",
            )
    last = next(reversed(stages))
    pooled = model.pool_features(stages[last])
    trained = None
    if getattr(model, "ltpa", None) is not None:
        trained = model.ltpa({s: stages[s] for s in model.ltpa.stages}, pooled)
    return ForwardPass(stages=stages, last=last, pooled=pooled, a2=a2, trained_ltpa=trained)


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def warm_up(model: nn.Module, baseline: nn.Module | None = None, input_size: int | None = None,
            cam_methods: Sequence[str] = ("gradcam",)) -> float:
    """Run one throw-away explanation so the first real one does not pay one-off start-up costs
    (grad-cam import, oneDNN kernel selection, allocator growth). Returns the seconds it took.
    ``input_size`` defaults to :func:`default_preprocess`'s."""
    from .pair import explain_pair

    tic = time.perf_counter()
    size = int(input_size or default_preprocess().input_size)
    dummy = torch.zeros(3, size, size)
    explain_pair(model, dummy, dummy, baseline, k=1, cam_methods=cam_methods)
    return time.perf_counter() - tic


def load_pair_models(checkpoint: str | Path = DEFAULT_APINET_CHECKPOINT,
                     baseline: str | Path | None = DEFAULT_BASELINE_CHECKPOINT,
                     map_location: str = "cpu"):
    """Load ``(apinet, apinet_card, baseline_or_None, baseline_card_or_None)`` in eval mode.

    A baseline that cannot be set beside this API-Net (other classes, input or map size:
    :func:`apinet.compat.baseline_mismatch`, the app's rule) is refused with a one-line
    :class:`~apinet.checkpoint.CheckpointError` before a pair is explained."""
    from ..checkpoint import CheckpointError, load_model
    from ..compat import ModelInterface, baseline_mismatch

    for path in (checkpoint, baseline):
        _require_demo_checkpoint(path)
    model, card = load_model(checkpoint, map_location=map_location)
    bmodel, bcard = (None, None)
    if baseline is not None:
        bmodel, bcard = load_model(baseline, map_location=map_location)
        try:
            reason = baseline_mismatch(ModelInterface.from_card(card), ModelInterface.from_card(bcard))
        except ValueError as exc:  # a card that does not say what the model expects
            reason = str(exc)
        if reason:
            raise CheckpointError(f"{baseline}: this baseline cannot be compared with {Path(checkpoint).name}: "
                                  f"{reason} (pass --baseline none, or a baseline trained for the same classes and input)")
    return model, card, bmodel, bcard


def _require_demo_checkpoint(path: str | Path | None) -> None:
    """A missing *default* checkpoint gets an error that says where the demo checkpoints live.

    They are part of the git repository (``assets/checkpoints/``), not of the pip package: an
    installed ``apinet`` run outside a clone has none.
    """
    from ..checkpoint import CheckpointError

    if path is None or Path(path).exists():
        return
    if Path(path) in (DEFAULT_APINET_CHECKPOINT, DEFAULT_BASELINE_CHECKPOINT):
        raise CheckpointError(
            f"{path}: demo checkpoint not found. The demo checkpoints ship with the git repository "
            "(assets/checkpoints/), not with the pip package: run from the root of a clone, or pass "
            "--checkpoint / --baseline with your own (made by `apinet train`, `apinet import-official` or "
            "`apinet import-classifier`; --baseline none skips the baseline)"
        )
