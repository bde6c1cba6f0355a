"""Pair construction for API-Net: nearest intra-class / inter-class mining and balanced batches.

The paper builds two pairs per image of a batch: with its most similar image of the same class
(intra pair) and with its most similar image of another class (inter pair), similarity being the
Euclidean distance between globally pooled features.  Mining runs entirely on the tensors' device:
no host copy, no Python loop, no synchronisation in a training step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

__all__ = ["BalancedBatchSampler", "PartnerChoice", "check_minable", "mine_pairs", "squared_distances",
           "suggest_partners"]


def squared_distances(embeddings: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances ``[B, B]`` in float32 (also under autocast)."""
    x = embeddings.float()
    sq = (x * x).sum(dim=1)
    dist = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    # The expansion can go slightly negative through rounding; distances cannot.
    return dist.clamp_min_(0.0)


def check_minable(labels: Tensor | Sequence[int]) -> None:
    """Raise ``ValueError`` if some sample has no same-class partner or no other-class sample.

    Call it on CPU labels (as a data loader yields them) to validate a batch without a device sync.
    """
    labels = torch.as_tensor(labels).reshape(-1).cpu()
    if labels.numel() < 2:
        raise ValueError(f"pair mining needs at least 2 samples, got {labels.numel()}")
    values, counts = torch.unique(labels, return_counts=True)
    lonely = values[counts < 2].tolist()
    if lonely:
        raise ValueError(
            f"no intra-class partner for label(s) {lonely}: each class in a batch needs at least 2 "
            "images (use BalancedBatchSampler with n_samples >= 2)"
        )
    if values.numel() < 2:
        raise ValueError(
            f"no inter-class partner: every sample has label {values[0].item()}; a batch needs at "
            "least 2 classes"
        )


def mine_pairs(embeddings: Tensor, labels: Tensor, *, check: bool = True) -> tuple[Tensor, Tensor]:
    """For each sample i, the nearest j != i of the same label and the nearest j of another label.

    Distances are squared Euclidean on ``embeddings`` (detached); ties go to the lowest index.
    Returns ``(intra_index, inter_index)``, both ``LongTensor[B]`` on the embeddings' device.
    ``check=True`` raises ``ValueError`` naming the label of a sample that has no partner (the
    official code silently pairs it with index 0); on CUDA that check costs one synchronisation,
    so training validates the CPU labels with :func:`check_minable` instead and passes ``check=False``.
    """
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be [B, D], got shape {tuple(embeddings.shape)}")
    labels = labels.reshape(-1).to(embeddings.device)
    if labels.numel() != embeddings.shape[0]:
        raise ValueError(f"{labels.numel()} labels for {embeddings.shape[0]} embeddings")
    if check:
        check_minable(labels)
    dist = squared_distances(embeddings.detach())
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.numel(), dtype=torch.bool, device=labels.device)
    inf = torch.tensor(float("inf"), device=dist.device)
    intra = torch.where(same & ~eye, dist, inf).argmin(dim=1)
    inter = torch.where(~same, dist, inf).argmin(dim=1)
    return intra, inter


@dataclass(frozen=True)
class PartnerChoice:
    """The paper's two partners of one sample among a bank (indices into the bank, or ``None``)."""

    intra: int | None  # nearest other sample of the same label
    inter: int | None  # nearest sample of another label
    intra_distance: float  # squared Euclidean distance of the pooled features (nan if no partner)
    inter_distance: float


def suggest_partners(features: Tensor | np.ndarray, labels: Sequence[int] | Tensor | np.ndarray, index: int,
                     *, query: Tensor | np.ndarray | None = None, query_label: int | None = None) -> PartnerChoice:
    """API-Net's pair construction for one sample against a bank of pooled features ``[N, D]``.

    The sample is ``features[index]`` (with ``labels[index]``), or, when ``query`` (``[D]``) is given,
    an extra sample outside the bank with ``query_label`` (``index`` is then ignored). Its intra
    partner is the nearest *other* bank sample of the same label, its inter partner the nearest bank
    sample of another label (squared Euclidean distance, ties to the lowest index, as
    :func:`mine_pairs`). A label with no such sample gives ``None`` for that partner.
    """
    emb = torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32) if isinstance(features, np.ndarray)
                          else features).float()
    if emb.dim() != 2:
        raise ValueError(f"features must be [N, D], got shape {tuple(emb.shape)}")
    lab = torch.as_tensor(labels).reshape(-1).long()
    if lab.numel() != emb.shape[0]:
        raise ValueError(f"{lab.numel()} labels for {emb.shape[0]} feature rows")
    n = emb.shape[0]
    if query is not None:
        if query_label is None:
            raise ValueError("a query needs its query_label")
        q = torch.as_tensor(np.asarray(query, dtype=np.float32) if isinstance(query, np.ndarray) else query)
        emb = torch.cat([emb, q.float().reshape(1, -1)])
        lab = torch.cat([lab, torch.tensor([int(query_label)])])
        index = n
    elif not 0 <= index < n:
        raise IndexError(f"index {index} outside a bank of {n}")
    intra, inter = mine_pairs(emb, lab, check=False)
    i, j = int(intra[index]), int(inter[index])
    dist = ((emb - emb[index]) ** 2).sum(1)
    label = int(lab[index])
    intra_ok = i != index and i < n and int(lab[i]) == label
    inter_ok = j < n and int(lab[j]) != label
    return PartnerChoice(
        intra=i if intra_ok else None,
        inter=j if inter_ok else None,
        intra_distance=float(dist[i]) if intra_ok else float("nan"),
        inter_distance=float(dist[j]) if inter_ok else float("nan"),
    )


class BalancedBatchSampler(Sampler[list[int]]):
    """Batches of ``n_classes`` distinct classes x ``n_samples`` images each (paper: 30 x 4).

    Each class keeps a shuffled pool of its indices and walks through it; a pool that cannot give
    ``n_samples`` more images is reshuffled.  An epoch has ``len(labels) // batch_size`` batches.
    The random state is explicit (``seed``) and :meth:`state_dict` / :meth:`load_state_dict`
    restore it exactly, including a resume in the middle of an epoch (``skip`` batches).
    """

    def __init__(self, labels: Sequence[int] | Tensor | np.ndarray, n_classes: int, n_samples: int, seed: int = 0):
        labels = np.asarray(torch.as_tensor(labels).reshape(-1).cpu().numpy(), dtype=np.int64)
        if n_classes < 2 or n_samples < 2:
            raise ValueError(
                f"API-Net pairs need n_classes >= 2 and n_samples >= 2, got {n_classes} x {n_samples}"
            )
        self.labels = labels
        self.classes = sorted(set(labels.tolist()))
        if n_classes > len(self.classes):
            raise ValueError(f"n_classes={n_classes} but the dataset has only {len(self.classes)} classes")
        small = [c for c in self.classes if int((labels == c).sum()) < n_samples]
        if small:
            raise ValueError(
                f"{len(small)} class(es) have fewer than n_samples={n_samples} images: {small[:10]}"
            )
        self.n_classes = n_classes
        self.n_samples = n_samples
        self.batch_size = n_classes * n_samples
        self.rng = np.random.default_rng(seed)
        self.pools = {c: self.rng.permutation(np.flatnonzero(labels == c)) for c in self.classes}
        self.cursor = {c: 0 for c in self.classes}
        self._skip = 0

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    @property
    def batches_to_skip(self) -> int:
        """Batches of the current epoch already consumed before a mid-epoch resume
        (:meth:`load_state_dict`); the next iteration leaves them out."""
        return self._skip

    def _next_batch(self) -> list[int]:
        chosen = self.rng.choice(len(self.classes), self.n_classes, replace=False)
        batch: list[int] = []
        for ci in chosen:
            c = self.classes[ci]
            start = self.cursor[c]
            batch.extend(int(i) for i in self.pools[c][start : start + self.n_samples])
            self.cursor[c] = start + self.n_samples
            if self.cursor[c] + self.n_samples > len(self.pools[c]):
                self.pools[c] = self.rng.permutation(self.pools[c])
                self.cursor[c] = 0
        return batch

    def __iter__(self) -> Iterator[list[int]]:
        # The state is advanced eagerly, so that a data loader prefetching ahead cannot make the
        # saved state depend on how far it had read; the trainer records how many it consumed.
        self._epoch_start = self._state()
        batches = [self._next_batch() for _ in range(len(self))]
        skip, self._skip = self._skip, 0
        yield from batches[skip:]

    def _state(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "pools": {int(c): p.tolist() for c, p in self.pools.items()},
            "cursor": {int(c): int(v) for c, v in self.cursor.items()},
        }

    def state_dict(self, batches_consumed: int | None = None) -> dict:
        """State to resume from.  Inside an epoch pass how many batches were consumed: the
        returned state is the one at the start of that epoch plus that many batches to skip."""
        if batches_consumed is None:
            return {**self._state(), "skip": 0}
        return {**self._epoch_start, "skip": int(batches_consumed)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.pools = {int(c): np.asarray(p, dtype=np.int64) for c, p in state["pools"].items()}
        self.cursor = {int(c): int(v) for c, v in state["cursor"].items()}
        self._skip = int(state.get("skip", 0))
