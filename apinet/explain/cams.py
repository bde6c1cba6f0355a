"""Class activation maps through the ``pytorch_grad_cam`` package, for both images of a pair.

Keys :class:`~apinet.explain.keys.CamKey` ``"<model>/<path>/<method>"``; path ``test`` is the
test-path logits fc(x_i), path ``pair`` (API-Net only) the pair-path self logits fc(x_i^self). The
gates couple the two images of a pair, and grad-cam sums the targets of a batch in one backward pass,
so here every pair-path target is backpropagated on its own: image 1's map only ever holds gradients
of image 1's score, whatever image 2's target is. Test-path scores of the two images are independent
(eval-mode BatchNorm), so one backward pass serves both. Maps keep their raw values
(ReLU(sum_c w_c A_c), before grad-cam's per-map min-max), so shared scales are honest.

By default CAMs are taken at the last feature maps F, where no hooks are needed: the trunk runs
once, F is made a leaf, and only the head (pooling, interaction, classifier) is differentiated;
grad-cam's method classes turn (activations, gradients) into maps. An earlier ``cam_layer`` goes
through grad-cam's ``ActivationsAndGradients`` hooks on a wrapped model; those hooks are removed
before returning (the caller holds the model's lock).

:func:`finer_cams` is grad-cam's Finer-CAM ("why A and not B"): the target is grad-cam's own
``FinerWeightedTarget(A, [B], alpha)`` (with one comparison class: s_A - alpha s_B) and the maps are
Grad-CAM's, as ``pytorch_grad_cam.FinerCAM`` computes them with explicit targets.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._util import to_numpy
from .keys import CamKey, CamPath, ContrastMethod
from .maps import CamMaps, ContrastMaps
from .models import ForwardPass

__all__ = ["CAM_LABELS", "CAM_METHODS", "CAM_NOTE", "PairSelfLogits", "compute_cams", "finer_cams"]

#: Method name -> pytorch_grad_cam class name.
CAM_METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "hirescam": "HiResCAM",
    "xgradcam": "XGradCAM",
}
GRADIENT_FREE = {"eigencam"}

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

_CAM_OBJECTS: dict[str, Any] = {}
_CAM_GUARD = threading.Lock()


def eigen_projection(activations: np.ndarray) -> np.ndarray:
    """EigenCAM's map: each image's activations ``[C, h, w]``, centred over positions, projected on
    their first principal direction; ``[B, h, w]`` float32.

    The same computation as grad-cam's ``get_2d_projection`` (tested to 1e-4), with the reduced SVD:
    grad-cam asks for all C right singular vectors (``full_matrices=True``, a C x C matrix) and uses
    the first; the reduced SVD gives that vector about 4x faster at C = 1280, h = w = 14.
    """
    out = []
    for a in np.nan_to_num(np.asarray(activations, dtype=np.float32), nan=0.0):
        flat = a.reshape(a.shape[0], -1).T
        flat = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat, full_matrices=False)
        out.append((flat @ vt[0]).reshape(a.shape[1:]))
    return np.asarray(out, dtype=np.float32)


def _eigencam_class():
    from pytorch_grad_cam import EigenCAM

    class ReducedEigenCAM(EigenCAM):
        def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads, eigen_smooth):
            return eigen_projection(activations)

    return ReducedEigenCAM


def cam_method(method: str):
    """A grad-cam method object used only for its (activations, gradients) -> map maths.

    It is built around a dummy module with no target layers: it registers no hooks and never puts
    a real model in eval mode. ``get_cam_image`` is stateless, so one object serves every thread.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose from {', '.join(CAM_METHODS)}")
    with _CAM_GUARD:
        if method not in _CAM_OBJECTS:
            import pytorch_grad_cam

            cls = _eigencam_class() if method == "eigencam" else getattr(pytorch_grad_cam, CAM_METHODS[method])
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
def _cam_activations(model: nn.Module, x: Tensor, run: ForwardPass, pair: bool, layer: str | None):
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


def compute_cams(model: nn.Module, name: str, x: Tensor, run: ForwardPass, targets: tuple[int, int],
                 methods: Sequence[str], pair: bool, layer: str | None, size: tuple[int, int]
                 ) -> dict[CamKey, CamMaps]:
    """The CAMs ``methods`` of model ``name`` for both images (``pair``: also API-Net's pair path)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    t1, t2 = targets
    cam_targets = [ClassifierOutputTarget(t1), ClassifierOutputTarget(t2)]
    need_grad = any(m not in GRADIENT_FREE for m in methods)
    results: dict[CamKey, CamMaps] = {}
    with _cam_activations(model, x, run, pair, layer) as (acts, rows):
        grads: dict[str, np.ndarray] = {}
        if need_grad:
            # Test path: the two images' scores are independent, one backward serves both.
            g = torch.autograd.grad(rows[0, t1] + rows[1, t2], acts, retain_graph=pair)[0]
            grads["test"] = to_numpy(g)
            if pair:
                g1 = torch.autograd.grad(rows[2, t1], acts, retain_graph=True)[0]
                g2 = torch.autograd.grad(rows[3, t2], acts)[0]
                grads["pair"] = np.stack([to_numpy(g1[0]), to_numpy(g2[1])])
        activations = to_numpy(acts)
    layer_name = layer or run.last
    paths = (CamPath.TEST, CamPath.PAIR) if pair else (CamPath.TEST,)
    class_agnostic: dict[str, np.ndarray] = {}  # the same activations on every path: computed once
    for path in paths:
        for method in methods:
            if method in GRADIENT_FREE and method in class_agnostic:
                raw = class_agnostic[method]
            else:
                obj = cam_method(method)
                raw = obj.get_cam_image(x, None, cam_targets, activations, grads.get(path.value), False)
                raw = np.maximum(raw, 0).astype(np.float32)  # grad-cam's ReLU, without its min-max
                if method in GRADIENT_FREE:
                    class_agnostic[method] = raw
            if method in GRADIENT_FREE:
                what = "class-agnostic: first principal component of the activations, no target"
            else:
                what = "pair-path self logit" if path == CamPath.PAIR else "test-path logit"
            results[CamKey(name, path, method)] = CamMaps(
                target1=int(t1), target2=int(t2), method=method,
                label=f"{name} {method} ({what}, {layer_name})", raw1=raw[0], raw2=raw[1],
                layer=layer_name, size=size)
    return results


def finer_cams(model: nn.Module, name: str, x: Tensor, run: ForwardPass, targets: tuple[int, int],
               references: tuple[int, int], layer: str | None, size: tuple[int, int], alpha: float = 1.0
               ) -> dict[CamKey, ContrastMaps]:
    """Finer-CAM on the test path: image i's Grad-CAM of grad-cam's ``FinerWeightedTarget(A_i, [B_i], alpha)``
    (A_i = ``targets[i]``, B_i = ``references[i]``), ReLU'd, raw units (before grad-cam's min-max)."""
    from pytorch_grad_cam.utils.model_targets import FinerWeightedTarget

    finer = [FinerWeightedTarget(int(a), [int(b)], float(alpha)) for a, b in zip(targets, references)]
    with _cam_activations(model, x, run, False, layer) as (acts, rows):
        g = torch.autograd.grad(finer[0](rows[0]) + finer[1](rows[1]), acts)[0]  # independent rows
        grads, activations = to_numpy(g), to_numpy(acts)
    raw = cam_method("gradcam").get_cam_image(x, None, finer, activations, grads, False)
    raw = np.maximum(raw, 0).astype(np.float32)
    layer_name = layer or run.last
    names = (f"{targets[0]} not {references[0]}", f"{targets[1]} not {references[1]}")
    return {CamKey(name, CamPath.TEST, ContrastMethod.FINERCAM): ContrastMaps(
        target1=int(targets[0]), target2=int(targets[1]), method=ContrastMethod.FINERCAM.value,
        label=f"{name} Finer-CAM (test-path logit, class {names[0]} / {names[1]}, alpha {alpha:g}, {layer_name})",
        raw1=raw[0], raw2=raw[1], layer=layer_name, size=size, reference1=int(references[0]),
        reference2=int(references[1]), signed=False)}
