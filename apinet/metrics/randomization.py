"""Model-randomisation sanity check (Adebayo et al., NeurIPS 2018): randomise the layers of a copy of
the model cumulatively from the top and measure the Spearman rank correlation between the original
and the randomised maps; maps that stay the same do not depend on what the model learnt."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .statistics import spearman

__all__ = ["RandomizationResult", "cascading_randomization", "default_randomization_order"]


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
                            layers: Sequence[str] | None = None, seed: int = 0) -> RandomizationResult:
    """Cascading randomisation (Adebayo et al., 2018) of a deep copy of ``model``.

    ``compute_maps(m)`` returns the maps to test (``{map type: [h, w]}``) computed with model ``m``;
    it is called once with ``model`` and once per entry of ``layers`` with a copy whose layers
    ``layers[0..i]`` have been re-initialised (default :func:`default_randomization_order`).
    """
    original = {k: np.asarray(v) for k, v in compute_maps(model).items()}
    layers = list(layers) if layers is not None else default_randomization_order(model)
    work = copy.deepcopy(model).eval()
    result = RandomizationResult(layers, {k: [] for k in original}, {k: [] for k in original})
    for i, name in enumerate(layers):
        _reinitialise(work.get_submodule(name), seed + i)
        maps = compute_maps(work)
        for key, ref in original.items():
            result.spearman[key].append(spearman(ref, maps[key]))
            result.spearman_abs[key].append(spearman(np.abs(ref), np.abs(maps[key])))
    return result
