"""Exact maps of API-Net's logits: the head is a spatial mean followed by a linear classifier.

With the pair's gates g_i, g_j fixed (eval mode: dropout is the identity), for image i with feature
maps F_i ``[D, h, w]`` and class c:

* ``self``:     logit_i^self(c)  = b_c + mean over positions of sum_k W[c,k] (1 + g_i[k]) F_i[k]
* ``other``:    logit_i^other(c) = b_c + mean over positions of sum_k W[c,k] (1 + g_j[k]) F_i[k]
* ``contrast``: logit_i^self(c) - logit_i^other(c) = mean over positions of sum_k W[c,k] (g_i[k] - g_j[k]) F_i[k]

The first is the class activation map of the pair path, signed and without a ReLU; the last shows
where image i's own gate, rather than its partner's, raises its class score: the score-ranking loss
made visible. :func:`class_contrast_maps` gives "why A and not B" the same way: sum_k (W[A,k] -
W[B,k]) F_i[k] (times (1 + g_i[k]) on the pair path), whose mean plus b_A - b_B is the logit difference.

Every map is kept at the feature-map resolution with the offset and the model's own number it
decomposes (:class:`~apinet.explain.maps.ExactMap`); :func:`exact_cams` checks the identity on the
numbers the model computed and leaves the maps out (saying why) for a head it does not hold for.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from .keys import CamKey, CamPath, ContrastMethod, ExactKey, ExactKind
from .maps import ContrastMaps, ExactMap

__all__ = ["class_contrast_maps", "exact_cams", "linear_head"]

#: Largest |mean + offset - value| accepted, relative to the scale of the summed terms (float32 sums).
_TOLERANCE = 1e-4


def linear_head(model: nn.Module) -> tuple[np.ndarray, np.ndarray] | None:
    """``(W [C, D], b [C])`` in float64 of a model whose head is ``fc(dropout(mean-pooled features))``,
    else ``None``."""
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        return None
    w = fc.weight.detach().cpu().double().numpy()
    b = (np.zeros(w.shape[0]) if fc.bias is None else fc.bias.detach().cpu().double().numpy())
    return w, b


def _weighted(vectors: np.ndarray, features: np.ndarray) -> np.ndarray:
    """sum_k v[n, k] F[k, y, x] for each row n of ``vectors [n, D]``; ``features [D, h, w]`` -> ``[n, h, w]``."""
    d, h, w = features.shape
    out = vectors @ features.reshape(d, h * w).astype(np.float64)
    return out.reshape(-1, h, w)


def _holds(raw: np.ndarray, terms_scale: float, offset: float, value: float) -> bool:
    return abs(float(raw.mean()) + offset - value) <= _TOLERANCE * max(1.0, terms_scale)


def exact_cams(model: nn.Module, features: np.ndarray, gates: tuple[np.ndarray, np.ndarray],
               targets: tuple[int, int], logits: dict[str, np.ndarray], size: tuple[int, int]
               ) -> tuple[dict[ExactKey, ExactMap], str]:
    """The six exact maps (:class:`~apinet.explain.keys.ExactKey`) of API-Net ``model``, and a note
    ("" when they hold; the reason when they were left out)."""
    head = linear_head(model)
    if head is None:
        return {}, "left out: the model's classifier is not one nn.Linear"
    w, b = head
    out: dict[ExactKey, ExactMap] = {}
    for i in (1, 2):
        g_own, g_oth = (np.asarray(g, np.float64) for g in (gates[i - 1], gates[2 - i]))
        c = int(targets[i - 1])
        vectors = np.stack([w[c] * (1.0 + g_own), w[c] * (1.0 + g_oth), w[c] * (g_own - g_oth)])
        maps = _weighted(vectors, features[i - 1])
        scale = np.abs(vectors) @ np.abs(features[i - 1]).reshape(features.shape[1], -1).mean(1)
        self_logit, other_logit = float(logits[f"{i}_self"][c]), float(logits[f"{i}_other"][c])
        specs = ((ExactKind.SELF, float(b[c]), self_logit, "pair-path self logit"),
                 (ExactKind.OTHER, float(b[c]), other_logit, "pair-path other logit (partner's gate)"),
                 (ExactKind.CONTRAST, 0.0, self_logit - other_logit, "self - other: own gate vs partner's"))
        for n, (kind, offset, value, what) in enumerate(specs):
            raw = maps[n]
            # the contrast is checked against the difference of two float32 logits: both logits' error
            terms = float(scale[0] + scale[1]) if kind == ExactKind.CONTRAST else float(scale[n])
            if not _holds(raw, terms, offset, value):
                return {}, (f"left out: mean + bias of the {kind.value} map of image {i} is {raw.mean() + offset:.6g}, "
                            f"the model's number {value:.6g} (a head that is not mean pooling + linear)")
            out[ExactKey.of(i, kind)] = ExactMap(
                raw=raw.astype(np.float32), image=i, kind=kind.value, target=c, offset=offset, value=value,
                label=f"exact map, image {i}, class {c}: {what}", size=size)
    return out, ""


def default_references(targets: tuple[int, int], test_logits: tuple[np.ndarray, np.ndarray]) -> tuple[int, int]:
    """Class B of "why A and not B" for each image: the partner's class, or, for a same-class pair,
    the image's most probable other class on the test path."""
    refs = []
    for i in (0, 1):
        b = int(targets[1 - i])
        if b == int(targets[i]):
            order = np.argsort(-np.asarray(test_logits[i], np.float64), kind="stable")
            b = int(next(c for c in order if c != targets[i]))
        refs.append(b)
    return refs[0], refs[1]


def class_contrast_maps(model: nn.Module, name: str, features: np.ndarray, targets: tuple[int, int],
                        references: tuple[int, int], logits: dict[str, np.ndarray], size: tuple[int, int],
                        gates: tuple[np.ndarray, np.ndarray] | None = None, layer: str = ""
                        ) -> dict[CamKey, ContrastMaps]:
    """Signed "why A and not B" maps of model ``name`` for both images: test path (``logits`` has
    ``1_test``, ``2_test``) and, given API-Net's ``gates``, the pair path (``1_self``, ``2_self``)."""
    head = linear_head(model)
    if head is None:
        return {}
    w, b = head
    paths = [(CamPath.TEST, "test", None)]
    if gates is not None:
        paths.append((CamPath.PAIR, "self", gates))
    out: dict[CamKey, ContrastMaps] = {}
    for path, suffix, g in paths:
        raws, offsets, values = [], [], []
        for i in (0, 1):
            a, r = int(targets[i]), int(references[i])
            v = w[a] - w[r]
            if g is not None:
                v = v * (1.0 + np.asarray(g[i], np.float64))
            raws.append(_weighted(v[None], features[i])[0].astype(np.float32))
            offsets.append(float(b[a] - b[r]))
            row = logits[f"{i + 1}_{suffix}"]
            values.append(float(row[a] - row[r]))
        what = "pair-path self logits, gates fixed" if g is not None else "test-path logits"
        out[CamKey(name, path, ContrastMethod.CLASS_CONTRAST)] = ContrastMaps(
            target1=int(targets[0]), target2=int(targets[1]), method=ContrastMethod.CLASS_CONTRAST.value,
            label=f"{name} class contrast W[A] - W[B] ({what}; mean + b_A - b_B = logit A - logit B)",
            raw1=raws[0], raw2=raws[1], layer=layer, size=size, reference1=int(references[0]),
            reference2=int(references[1]), signed=True, offset1=offsets[0], offset2=offsets[1],
            value1=values[0], value2=values[1])
    return out
