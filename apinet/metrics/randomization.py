"""Model-randomisation sanity check (Adebayo et al., NeurIPS 2018): randomise the layers of a copy of
the model cumulatively from the top and measure the Spearman rank correlation between the original
and the randomised maps; maps that stay the same do not depend on what the model learnt.

One re-initialisation is one random draw: the same cascade with another seed can give a very different
correlation (on the pretrained demo, 0.06 to 0.34 for the top gated channel after ``tail`` over seeds
0-3). :func:`cascading_randomization_seeds` runs the cascade once per seed on the same original maps,
and :func:`apinet.metrics.sanity.sanity_summary` puts the seed variance into the interval."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .statistics import spearman

__all__ = ["RANDOMIZATION_SEEDS", "RandomizationResult", "cascading_randomization", "cascading_randomization_seeds",
           "default_randomization_order", "layer_seed"]

#: Seeds of the protocol's randomisation check (PROTOCOL.md amendment 6): five independent
#: re-initialisations of every layer.
RANDOMIZATION_SEEDS = (0, 1, 2, 3, 4)


def default_randomization_order(model) -> list[str]:
    """Module names from the top of the network down: head, interaction, LTPA, stages, stem."""
    names = []
    for name in ("fc", "mutual", "ltpa"):
        if getattr(model, name, None) is not None:
            names.append(name)
    trunk = model.trunk
    for stage in reversed(list(trunk.stages.keys())):
        if stage in trunk.inserts:
            names.append(f"trunk.inserts.{stage}")
        if stage == next(reversed(trunk.stages.keys())) and len(list(trunk.tail.parameters())):
            names.append("trunk.tail")
        names.append(f"trunk.stages.{stage}")
    names.append("trunk.stem")
    return names


def layer_seed(seed: int, index: int) -> int:
    """The torch seed that re-initialises the ``index``-th layer of the cascade of ``seed``: seed 0 keeps
    the seeds it always used (0, 1, 2, ...); other seeds' layers never share one (``seed + index``,
    the old rule, made seed 1's first layer seed 0's second)."""
    return index if seed == 0 else seed * 1_000_003 + index


def _reinitialise(module, seed: int) -> None:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in module.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset) and any(True for _ in sub.parameters(recurse=False)):
                reset()
            if hasattr(sub, "reset_running_stats"):
                sub.reset_running_stats()


@dataclass
class RandomizationResult:
    """Spearman correlation of each map type after randomising the model down to each layer."""

    layers: list[str]  # cumulative: entry i = layers[0..i] randomised
    spearman: dict[str, list[float]]  # map type -> [len(layers)] correlation with the original map
    spearman_abs: dict[str, list[float]]  # the same on absolute values


def cascading_randomization(model, compute_maps: Callable[[Any], Mapping[str, np.ndarray]],
                            layers: Sequence[str] | None = None, seed: int = 0,
                            original: Mapping[str, np.ndarray] | None = None) -> RandomizationResult:
    """Cascading randomisation (Adebayo et al., 2018) of a deep copy of ``model``.

    ``compute_maps(m)`` returns the maps to test (``{map type: [h, w]}``) computed with model ``m``;
    it is called once with ``model`` (unless its ``original`` maps are given) and once per entry of
    ``layers`` with a copy whose layers ``layers[0..i]`` have been re-initialised (default
    :func:`default_randomization_order`; layer i with torch seed :func:`layer_seed` (seed, i)).
    """
    if original is None:
        original = compute_maps(model)
    original = {k: np.asarray(v) for k, v in original.items()}
    layers = list(layers) if layers is not None else default_randomization_order(model)
    work = copy.deepcopy(model).eval()
    result = RandomizationResult(layers, {k: [] for k in original}, {k: [] for k in original})
    for i, name in enumerate(layers):
        _reinitialise(work.get_submodule(name), layer_seed(seed, i))
        maps = compute_maps(work)
        for key, ref in original.items():
            result.spearman[key].append(spearman(ref, maps[key]))
            result.spearman_abs[key].append(spearman(np.abs(ref), np.abs(maps[key])))
    return result


def cascading_randomization_seeds(model, compute_maps: Callable[[Any], Mapping[str, np.ndarray]],
                                  seeds: Sequence[int] = RANDOMIZATION_SEEDS,
                                  layers: Sequence[str] | None = None) -> list[RandomizationResult]:
    """:func:`cascading_randomization` once per seed, all against the same original maps (computed
    once): one :class:`RandomizationResult` per seed, in the order of ``seeds``."""
    if len(seeds) == 0:
        raise ValueError("need at least one seed")
    original = {k: np.asarray(v) for k, v in compute_maps(model).items()}
    return [cascading_randomization(model, compute_maps, layers, seed=s, original=original) for s in seeds]
