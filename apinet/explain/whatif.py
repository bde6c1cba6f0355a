"""What if? Typed interventions on an explained pair, recomputed by the model's own layers.

A student changes one thing and sees what the model does with it:

* :class:`HalfGates` -- every gate of both images set to 0.5, the "no attention" control: then
  x^self = x^other = 1.5 x, so each image's self and other logits are equal;
* :class:`SwapGates` -- g1 and g2 exchanged: each image's self and other vectors trade places;
* :class:`SetGate` -- one channel's gate of image 1 or 2 set to a value (0 = channel off, 1 = fully on);
* :class:`Occlude` -- cells of image 1 or 2 on the feature-map grid (14 x 14 on the demo) filled with
  the normalisation mean (0 after normalisation: grey for mean 0.5), then ONE trunk pass for that image.

Order: occlusions act on the input, so they come first (the last :class:`Occlude` of an image says
which of its cells are hidden, so a list of them is an undo history); the model then computes the
gates, and the gate interventions edit them in the order given. Every number (gates, the four logit vectors, the
test-path logits, scores, ranking-loss terms) comes from the model: :meth:`APINet.interact` with its
``gates=`` override and, for an occlusion, the model's trunk. :class:`WhatIfPair` keeps the untouched
pair and the occluded images' pooled features (a small cache), so a gate change never runs the trunk.

Interventions have a compact text form (:func:`format_interventions`, :func:`parse_interventions`)
for links: ``half``, ``swap``, ``g1:123=0``, ``o2:14x14:<hex bit mask of the cells>``, joined by ``;``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch
from torch import Tensor

from ._util import softmax, to_numpy
from .models import locked_eval
from .result import RANK_MARGIN

__all__ = ["OCCLUSION_BASELINE", "HalfGates", "Intervention", "Occlude", "PairState", "SetGate", "SwapGates",
           "WhatIfPair", "WhatIfResult", "cell_bounds", "effective_interventions", "format_interventions", "grid_of",
           "occlude_cells", "parse_interventions"]

#: What an occluded cell's pixels become (stated in the app and in figures).
OCCLUSION_BASELINE = "the normalisation mean (0 after normalisation)"
_LOGIT_KEYS = ("1_self", "1_other", "2_self", "2_other", "1_test", "2_test")


def _check_image(image: int) -> int:
    if image not in (1, 2):
        raise ValueError(f"image must be 1 (A) or 2 (B), got {image!r}")
    return int(image)


@dataclass(frozen=True)
class HalfGates:
    """Every gate of both images = 0.5: no attention (self and other vectors coincide)."""

    def token(self) -> str:
        return "half"


@dataclass(frozen=True)
class SwapGates:
    """Image 1 gets g2 and image 2 gets g1: self and other exchange places."""

    def token(self) -> str:
        return "swap"


@dataclass(frozen=True)
class SetGate:
    """Channel ``channel`` of image ``image``'s gate set to ``value`` (in [0, 1])."""

    image: int
    channel: int
    value: float

    def __post_init__(self) -> None:
        _check_image(self.image)
        if not 0.0 <= float(self.value) <= 1.0:
            raise ValueError(f"a gate value lies in [0, 1], got {self.value}")
        if int(self.channel) < 0:
            raise ValueError(f"channel must be >= 0, got {self.channel}")

    def token(self) -> str:
        return f"g{self.image}:{int(self.channel)}={float(self.value):g}"


@dataclass(frozen=True)
class Occlude:
    """Cells ``(row, col)`` of image ``image`` on a ``grid`` (rows, cols) filled with the baseline."""

    image: int
    cells: frozenset[tuple[int, int]]
    grid: tuple[int, int]

    def __post_init__(self) -> None:
        _check_image(self.image)
        rows, cols = self.grid
        if rows < 1 or cols < 1:
            raise ValueError(f"a grid needs at least one cell, got {self.grid}")
        object.__setattr__(self, "cells", frozenset((int(r), int(c)) for r, c in self.cells))
        bad = [cell for cell in self.cells if not (0 <= cell[0] < rows and 0 <= cell[1] < cols)]
        if bad:
            raise ValueError(f"cells {sorted(bad)[:3]} outside the {rows} x {cols} grid")

    def mask(self) -> np.ndarray:
        """``[rows, cols]`` bool, True where occluded."""
        out = np.zeros(self.grid, dtype=bool)
        for r, c in self.cells:
            out[r, c] = True
        return out

    def token(self) -> str:
        rows, cols = self.grid
        bits = self.mask().reshape(-1)
        value = int("".join("1" if b else "0" for b in bits), 2) if bits.size else 0
        return f"o{self.image}:{rows}x{cols}:{value:x}"


Intervention = Union[HalfGates, SwapGates, SetGate, Occlude]


def format_interventions(interventions) -> str:
    """The text form of a sequence of interventions (``""`` for none)."""
    return ";".join(i.token() for i in interventions)


def parse_interventions(text: str) -> tuple[Intervention, ...]:
    """Read back :func:`format_interventions`; ``ValueError`` names the first token it cannot read."""
    out: list[Intervention] = []
    for token in filter(None, (t.strip() for t in str(text).split(";"))):
        try:
            if token == "half":
                out.append(HalfGates())
            elif token == "swap":
                out.append(SwapGates())
            elif token[:1] == "g" and ":" in token and "=" in token:
                head, rest = token.split(":", 1)
                channel, value = rest.split("=", 1)
                out.append(SetGate(int(head[1:]), int(channel), float(value)))
            elif token[:1] == "o" and token.count(":") == 2:
                head, shape, hexmask = token.split(":")
                rows, cols = (int(v) for v in shape.split("x"))
                if not (0 < rows <= 256 and 0 < cols <= 256):
                    raise ValueError(shape)
                value = int(hexmask, 16)
                if value >> (rows * cols):
                    raise ValueError(hexmask)
                bits = format(value, f"0{rows * cols}b")
                cells = frozenset(divmod(i, cols) for i, b in enumerate(bits) if b == "1")
                out.append(Occlude(int(head[1:]), cells, (rows, cols)))
            else:
                raise ValueError(token)
        except ValueError:
            raise ValueError(f"unreadable what-if intervention {token[:40]!r}") from None
    return tuple(out)


def effective_interventions(interventions) -> tuple[Intervention, ...]:
    """What a sequence of interventions amounts to, in the order :meth:`WhatIfPair.run` applies them:
    each image's last occlusion step (when it hides any cell), then the gate edits in order."""
    items = tuple(interventions)
    last = {i.image: i for i in items if isinstance(i, Occlude)}
    occl = tuple(last[k] for k in sorted(last) if last[k].cells)
    return occl + tuple(i for i in items if not isinstance(i, Occlude))


def cell_bounds(n_pixels: int, n_cells: int, index: int) -> tuple[int, int]:
    """Pixel rows (or columns) ``[start, stop)`` of cell ``index`` when ``n_pixels`` are cut into ``n_cells``."""
    return round(index * n_pixels / n_cells), round((index + 1) * n_pixels / n_cells)


def occlude_cells(image: Tensor, cells, grid: tuple[int, int], fill: Tensor | float = 0.0) -> Tensor:
    """A copy of ``image [3, H, W]`` (normalised) with the pixels of each cell set to ``fill``."""
    out = image.clone()
    h, w = image.shape[-2:]
    fill_t = torch.as_tensor(fill, dtype=image.dtype).reshape(-1, 1, 1)
    for r, c in cells:
        r0, r1 = cell_bounds(h, grid[0], r)
        c0, c1 = cell_bounds(w, grid[1], c)
        out[:, r0:r1, c0:c1] = fill_t
    return out


def grid_of(expl) -> tuple[int, int] | None:
    """The feature-map grid (rows, cols) of an explanation, or None when it keeps no maps."""
    if getattr(expl, "unit_features1", None) is not None:
        return tuple(int(v) for v in expl.unit_features1.shape[:2])  # type: ignore[return-value]
    for record in getattr(expl, "exact_cams", {}).values():
        return tuple(int(v) for v in np.asarray(record.raw).shape[-2:])  # type: ignore[return-value]
    return None


@dataclass(frozen=True)
class PairState:
    """The model's numbers for a pair (untouched, or after interventions)."""

    features1: np.ndarray  # [D] pooled x1
    features2: np.ndarray
    gate1: np.ndarray  # [D]
    gate2: np.ndarray
    logits: dict[str, np.ndarray]  # "1_self", "1_other", "2_self", "2_other", "1_test", "2_test" -> [C]
    targets: tuple[int, int]
    margin: float = RANK_MARGIN
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.probabilities:
            object.__setattr__(self, "probabilities",
                               {k: softmax(v).astype(np.float64) for k, v in self.logits.items()})

    def logit(self, image: int, path: str) -> float:
        """Logit of image ``image``'s target class on ``path`` ("self", "other", "test")."""
        return float(self.logits[f"{image}_{path}"][self.targets[image - 1]])

    def score(self, image: int, path: str) -> float:
        return float(self.probabilities[f"{image}_{path}"][self.targets[image - 1]])

    def logit_gap(self, image: int) -> float:
        return self.logit(image, "self") - self.logit(image, "other")

    def score_gap(self, image: int) -> float:
        return self.score(image, "self") - self.score(image, "other")

    def rank_term(self, image: int) -> float:
        return max(0.0, self.score(image, "other") - self.score(image, "self") + self.margin)

    def margin_met(self, image: int) -> bool:
        return self.rank_term(image) <= 0.0

    def predicted(self, image: int, path: str = "test") -> int:
        return int(np.argmax(self.logits[f"{image}_{path}"]))

    @property
    def gate_gap(self) -> float:
        """Mean over channels of |g1 - g2|."""
        return float(np.abs(np.asarray(self.gate1, np.float64) - np.asarray(self.gate2, np.float64)).mean())


@dataclass(frozen=True)
class WhatIfResult:
    before: PairState
    after: PairState
    interventions: tuple[Intervention, ...]
    trunk_passes: int  # trunk passes this change ran (0 for gate edits or a cached occlusion)
    seconds: float
    occluded: tuple[np.ndarray | None, np.ndarray | None] = (None, None)  # [rows, cols] masks per image

    def delta_logit(self, image: int, path: str) -> float:
        return self.after.logit(image, path) - self.before.logit(image, path)

    def delta_score(self, image: int, path: str) -> float:
        return self.after.score(image, path) - self.before.score(image, path)


class WhatIfPair:
    """An explained pair a student can intervene on (:meth:`run`).

    ``inputs`` are the two preprocessed images ``[2, 3, H, W]`` (needed for occlusion only);
    ``features`` the untouched pooled features ``[2, D]`` (default: one trunk pass on ``inputs``),
    e.g. an explanation's ``features1`` / ``features2`` so the untouched numbers are the explanation's.
    ``grid`` is the occlusion grid (default: the trunk's feature-map size); ``fill`` the normalised
    value occluded pixels get (default 0: the normalisation mean).
    """

    def __init__(self, model, targets: tuple[int, int], *, inputs: Tensor | None = None,
                 features: Tensor | np.ndarray | None = None, grid: tuple[int, int] | None = None,
                 fill: Tensor | float = 0.0, cache_size: int = 16):
        if not hasattr(model, "interact"):
            raise TypeError("what-if interventions need an API-Net model (with interact); got " + type(model).__name__)
        if inputs is None and features is None:
            raise ValueError("give the pair's inputs, its pooled features, or both")
        self.model = model
        self.inputs = None if inputs is None else inputs.detach().float().cpu()
        self.fill = fill
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple, Tensor] = OrderedDict()
        self._cache_size = cache_size
        self.trunk_passes = 0
        if features is None or (grid is None and self.inputs is not None):
            maps = self._trunk(self.inputs)
            if features is None:
                features = self.model.pool_features(maps)
            grid = grid or (int(maps.shape[-2]), int(maps.shape[-1]))
        self.features = torch.as_tensor(np.asarray(features, dtype=np.float32) if isinstance(features, np.ndarray)
                                        else features).float().reshape(2, -1)
        self.grid = grid
        num_classes = int(getattr(model, "num_classes", 0) or 0)
        targets = (int(targets[0]), int(targets[1]))
        if num_classes and not all(0 <= t < num_classes for t in targets):
            raise ValueError(f"targets {targets} out of range for {num_classes} classes")
        self.targets = targets
        self.before = self._state(self.features[0:1], self.features[1:2], None)

    @classmethod
    def from_explanation(cls, model, expl, inputs: Tensor | None = None, **kwargs) -> "WhatIfPair":
        """The pair of a :class:`PairExplanation`: its pooled features, targets and map grid."""
        feats = np.stack([np.asarray(expl.features1), np.asarray(expl.features2)])
        kwargs.setdefault("grid", grid_of(expl))
        return cls(model, tuple(expl.targets), inputs=inputs, features=feats, **kwargs)

    # --- model calls ------------------------------------------------------------------------------

    def _trunk(self, images: Tensor) -> Tensor:
        with locked_eval([self.model]), torch.no_grad():
            self.trunk_passes += images.shape[0]
            return self.model.forward_features(images.to(next(self.model.parameters()).device))

    def _occluded_features(self, image: int, cells: frozenset) -> tuple[Tensor, int]:
        """Pooled features of image ``image`` with ``cells`` hidden, and the trunk passes it took (0 or 1)."""
        key = (image, cells)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key], 0
        if self.inputs is None:
            raise ValueError("occlusion needs the pair's input images")
        changed = occlude_cells(self.inputs[image - 1], cells, self.grid, self.fill)
        pooled = self.model.pool_features(self._trunk(changed[None])).float().cpu()
        with self._lock:
            self._cache[key] = pooled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return pooled, 1

    def _state(self, x1: Tensor, x2: Tensor, gates: tuple[Tensor, Tensor] | None) -> PairState:
        device = next(self.model.parameters()).device
        x1, x2 = x1.to(device), x2.to(device)
        with locked_eval([self.model]), torch.no_grad():
            out = self.model.interact(x1, x2, gates=None if gates is None else tuple(g.to(device) for g in gates))
            test = self.model.forward_head(torch.cat([x1, x2]))
        logits = {"1_self": out.logits1_self[0], "1_other": out.logits1_other[0], "2_self": out.logits2_self[0],
                  "2_other": out.logits2_other[0], "1_test": test[0], "2_test": test[1]}
        return PairState(features1=to_numpy(x1[0]), features2=to_numpy(x2[0]), gate1=to_numpy(out.gate1[0]),
                         gate2=to_numpy(out.gate2[0]), logits={k: to_numpy(v) for k, v in logits.items()},
                         targets=self.targets)

    # --- interventions ----------------------------------------------------------------------------

    def run(self, interventions) -> WhatIfResult:
        """The pair after ``interventions`` (see the module docstring for their order)."""
        tic = time.perf_counter()
        passes = 0  # counted here, not from self.trunk_passes: sessions may share this pair
        interventions = tuple(interventions)
        cells: dict[int, set] = {1: set(), 2: set()}
        for item in interventions:
            if isinstance(item, Occlude):
                if self.grid is not None and tuple(item.grid) != tuple(self.grid):
                    raise ValueError(f"occlusion grid {item.grid} does not match this pair's {self.grid}")
                cells[item.image] = set(item.cells)  # the last occlusion of an image sets its hidden cells
        x = [self.features[0:1], self.features[1:2]]
        for image in (1, 2):
            if cells[image]:
                x[image - 1], ran = self._occluded_features(image, frozenset(cells[image]))
                passes += ran
        edits = [i for i in interventions if not isinstance(i, Occlude)]
        gates = None
        if edits:
            with locked_eval([self.model]), torch.no_grad():
                out = self.model.interact(x[0], x[1])
            g1, g2 = out.gate1.detach().clone().cpu(), out.gate2.detach().clone().cpu()
            dim = g1.shape[1]
            for item in edits:
                if isinstance(item, HalfGates):
                    g1.fill_(0.5)
                    g2.fill_(0.5)
                elif isinstance(item, SwapGates):
                    g1, g2 = g2, g1
                elif isinstance(item, SetGate):
                    if not 0 <= item.channel < dim:
                        raise ValueError(f"channel {item.channel} outside the {dim} channels")
                    (g1 if item.image == 1 else g2)[0, item.channel] = float(item.value)
            gates = (g1, g2)
        after = self._state(x[0], x[1], gates)
        masks = tuple(Occlude(i, frozenset(cells[i]), self.grid).mask() if cells[i] else None for i in (1, 2))
        return WhatIfResult(before=self.before, after=after, interventions=interventions,
                            trunk_passes=passes, seconds=time.perf_counter() - tic,
                            occluded=masks)  # type: ignore[arg-type]
