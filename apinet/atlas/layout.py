"""The 2-D map of an atlas: t-SNE (openTSNE) of the pooled features, PCA for tiny sets.

openTSNE (Poličar et al., J. Stat. Softw. 2024) rather than umap-learn: its FFT-accelerated gradient
(FIt-SNE, Linderman et al. 2019) scales to millions of points, it ships compiled wheels and needs
no JIT (umap-learn compiles through numba on every fresh process, tens of seconds on this machine's
two cores), and a fixed ``random_state`` gives the same map on every build. Below
:data:`MIN_TSNE_POINTS` images the perplexity has no neighbourhood to work with, so the map is the
first two principal components instead; the manifest records which method made it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MIN_TSNE_POINTS", "Layout", "layout_2d"]

#: Fewest images for t-SNE (perplexity 30 wants > 90 neighbours; 5 is the least that means anything).
MIN_TSNE_POINTS = 50


@dataclass(frozen=True)
class Layout:
    xy: np.ndarray  # [N, 2] float32, centred, scaled so the larger axis spans [-1, 1]
    method: str  # "opentsne X.Y.Z (perplexity P)" or "pca"


def layout_2d(features: np.ndarray, *, seed: int = 0, threads: int = 1, method: str = "auto") -> Layout:
    """A 2-D layout of ``features [N, D]`` (any float dtype). ``method``: auto | tsne | pca."""
    x = np.asarray(features, dtype=np.float32)
    n = x.shape[0]
    if n == 0:
        return Layout(np.zeros((0, 2), np.float32), "empty")
    if method not in ("auto", "tsne", "pca"):
        raise ValueError(f"layout method must be auto, tsne or pca, got {method!r}")
    if method == "pca" or (method == "auto" and n < MIN_TSNE_POINTS):
        return Layout(_scale(_pca(x)), "pca")
    import openTSNE

    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    embedding = openTSNE.TSNE(perplexity=perplexity, n_jobs=max(1, int(threads)), random_state=seed,
                              initialization="pca", verbose=False).fit(x)
    return Layout(_scale(np.asarray(embedding)), f"opentsne {openTSNE.__version__} (perplexity {perplexity:g})")


def _pca(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(0, keepdims=True)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2), np.float32)
    _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    out = centred @ vt[:2].T
    if out.shape[1] < 2:
        out = np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    return out


def _scale(xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64)
    xy = xy - xy.mean(0, keepdims=True)
    span = np.abs(xy).max()
    return (xy / span if span > 0 else xy).astype(np.float32)
