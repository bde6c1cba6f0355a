"""Questions asked of an atlas: filters, the paper's nearest partners, confusion, disagreements,
pairs ranked by mechanism strength. Every answer is indices into the atlas rows (or small arrays);
nothing here runs a trunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..mechanism import PAIR_STRENGTH_MEASURES, PairStrength, rank_pairs
from ..pairs import PartnerChoice
from .store import MODELS, Atlas

__all__ = ["Confusion", "PAIR_KINDS", "cell_pair", "confusion", "confusions", "disagreements", "filter_rows",
           "mine_partners", "mining_labels", "nearest_partners", "ranked_pairs"]

PAIR_KINDS = ("intra", "inter")
_BLOCK = 4096  # rows of features per distance block: bounded memory at any atlas size


def _block_distances(query: torch.Tensor, bank: np.ndarray, start: int, stop: int) -> torch.Tensor:
    """Squared Euclidean distances ``[Q, stop - start]`` of ``query [Q, D]`` (float32) to ``bank[start:stop]``."""
    rows = torch.from_numpy(np.ascontiguousarray(bank[start:stop], dtype=np.float32))
    dist = (query * query).sum(1)[:, None] + (rows * rows).sum(1)[None, :] - 2.0 * (query @ rows.T)
    return dist.clamp_min_(0.0)


def mine_partners(features: np.ndarray, labels: np.ndarray, candidates: np.ndarray | None = None,
                  *, rows: np.ndarray | None = None, block: int = _BLOCK) -> tuple[np.ndarray, ...]:
    """The paper's pairs (:func:`apinet.pairs.mine_pairs`) over a whole atlas, in blocks.

    For each of ``rows`` (default: all), the nearest *other* candidate with the same label (intra)
    and the nearest candidate with another label (inter), by squared Euclidean distance of
    ``features [N, D]``; ties go to the lowest index. ``candidates [N]`` (bool, default all) marks the
    rows that may be partners (e.g. the labelled ones). Returns ``(intra, inter, intra_distance,
    inter_distance)``, -1 / NaN where there is no such partner.
    """
    n = features.shape[0]
    labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    cand = torch.ones(n, dtype=torch.bool) if candidates is None else torch.as_tensor(np.asarray(candidates, bool))
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    out = [np.full(len(rows), -1, np.int64), np.full(len(rows), -1, np.int64),
           np.full(len(rows), np.nan, np.float32), np.full(len(rows), np.nan, np.float32)]
    inf = torch.tensor(float("inf"))
    for q0 in range(0, len(rows), block):
        q_rows = torch.as_tensor(rows[q0:q0 + block])
        query = torch.from_numpy(np.ascontiguousarray(features[rows[q0:q0 + block]], dtype=np.float32))
        q_labels = labels[q_rows]
        best = [torch.full((len(q_rows),), float("inf")), torch.full((len(q_rows),), -1, dtype=torch.long),
                torch.full((len(q_rows),), float("inf")), torch.full((len(q_rows),), -1, dtype=torch.long)]
        for b0 in range(0, n, block):
            b1 = min(n, b0 + block)
            dist = _block_distances(query, features, b0, b1)
            index = torch.arange(b0, b1)
            same = q_labels[:, None] == labels[b0:b1][None, :]
            ok = cand[b0:b1][None, :]
            not_self = q_rows[:, None] != index[None, :]
            for slot, mask in ((0, same & ok & not_self), (2, ~same & ok)):
                masked = torch.where(mask, dist, inf)
                value, arg = masked.min(dim=1)
                better = value < best[slot]  # strict: an earlier block keeps a tie (lowest index)
                best[slot] = torch.where(better, value, best[slot])
                best[slot + 1] = torch.where(better, arg + b0, best[slot + 1])
        for slot, (dist_slot, idx_slot) in enumerate(((0, 1), (2, 3))):
            found = torch.isfinite(best[dist_slot])
            out[slot][q0:q0 + len(q_rows)] = torch.where(found, best[idx_slot], -1).numpy()
            out[slot + 2][q0:q0 + len(q_rows)] = torch.where(found, best[dist_slot], float("nan")).numpy()
    return tuple(out)


def mining_labels(atlas: Atlas) -> np.ndarray:
    """The class each row is mined as: its label, or API-Net's prediction for an unlabelled row."""
    labels = atlas.labels.copy()
    unlabelled = labels < 0
    labels[unlabelled] = atlas.predictions("apinet")[unlabelled]
    return labels


def nearest_partners(atlas: Atlas, row: int, model: str = "apinet") -> PartnerChoice:
    """Row ``row``'s intra and inter partners among the labelled rows, computed now (the same answer
    as the stored ``intra`` / ``inter`` columns, :func:`mine_partners`): one matrix-vector product
    against the atlas's in-memory bank, so it stays well under a second at 100,000 images."""
    x, sq = atlas.bank(model)
    labels = atlas.memo.get("mining_labels")
    if labels is None:
        labels = atlas.memo["mining_labels"] = mining_labels(atlas)
    q = x[row]
    dist = np.maximum(sq + float(q @ q) - 2.0 * (x @ q), 0.0)
    dist[~atlas.labelled] = np.inf
    same = labels == labels[row]
    intra_d, inter_d = np.where(same, dist, np.inf), np.where(same, np.inf, dist)
    intra_d[row] = np.inf
    i, j = int(np.argmin(intra_d)), int(np.argmin(inter_d))  # argmin: lowest index on ties
    ok_i, ok_j = np.isfinite(intra_d[i]), np.isfinite(inter_d[j])
    return PartnerChoice(intra=i if ok_i else None, inter=j if ok_j else None,
                         intra_distance=float(intra_d[i]) if ok_i else float("nan"),
                         inter_distance=float(inter_d[j]) if ok_j else float("nan"))


def filter_rows(atlas: Atlas, *, classes: list[int] | None = None, text: str = "", correct: dict[str, bool] | None = None,
                disagree: bool | None = None, unusual: bool | None = None) -> np.ndarray:
    """Row indices matching every given filter: label in ``classes``; ``text`` in the id or class
    name (case-insensitive); ``correct={"apinet": False}`` (wrong rows of that model); the models'
    predictions differ (``disagree``); OOD score above the API-Net reference's threshold (``unusual``)."""
    keep = np.ones(len(atlas), dtype=bool)
    if classes is not None:
        keep &= np.isin(atlas.labels, np.asarray(list(classes), dtype=np.int64))
    if text:
        needle = text.casefold()
        ids, names = atlas.column("id"), atlas.column("class_name")
        keep &= np.fromiter((needle in f"{i} {c}".casefold() for i, c in zip(ids, names)), bool, len(atlas))
    for model, want in (correct or {}).items():
        keep &= atlas.labelled & (atlas.correct(model) == bool(want))
    if disagree is not None:
        keep &= (atlas.predictions("apinet") != atlas.predictions("baseline")) == bool(disagree)
    if unusual is not None:
        threshold = (atlas.manifest.get("ood") or {}).get("threshold")
        scores = atlas.column("ood")
        flag = scores > threshold if threshold is not None else np.zeros(len(atlas), bool)
        keep &= flag == bool(unusual)
    return np.flatnonzero(keep)


@dataclass(frozen=True)
class Confusion:
    """Confusion matrices ``[C, C]`` (rows: true class, columns: predicted) over the labelled rows."""

    apinet: np.ndarray
    baseline: np.ndarray

    @property
    def difference(self) -> np.ndarray:
        """API-Net minus baseline: negative off the diagonal where API-Net confuses less."""
        return self.apinet - self.baseline


def confusion(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    keep = labels >= 0
    return np.bincount(labels[keep] * num_classes + predictions[keep],
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def confusions(atlas: Atlas) -> Confusion:
    n = len(atlas.class_names)
    return Confusion(*(confusion(atlas.labels, atlas.predictions(m), n) for m in MODELS))


def disagreements(atlas: Atlas) -> np.ndarray:
    """Labelled rows where the models disagree or where both are wrong, most confident mistake first."""
    a, b = atlas.predictions("apinet"), atlas.predictions("baseline")
    both_wrong = ~atlas.correct("apinet") & ~atlas.correct("baseline")
    rows = np.flatnonzero(atlas.labelled & ((a != b) | both_wrong))
    confidence = np.maximum(atlas.column("apinet_prob")[rows], atlas.column("baseline_prob")[rows])
    return rows[np.argsort(-confidence, kind="stable")]


def cell_pair(atlas: Atlas, true_class: int, predicted: int, model: str = "apinet") -> tuple[int, int] | None:
    """A confusion cell as a pair: the image of ``true_class`` that ``model`` calls ``predicted`` most
    confidently, and the labelled image of ``predicted`` nearest to it. ``None`` for an empty cell
    or a class with no image."""
    rows = np.flatnonzero((atlas.labels == true_class) & (atlas.predictions(model) == predicted))
    if true_class == predicted or len(rows) == 0:
        return None
    first = int(rows[np.argmax(atlas.column(f"{model}_prob")[rows])])  # argmax: lowest row on ties
    candidates = np.flatnonzero(atlas.labels == predicted)
    if len(candidates) == 0:
        return None
    features = atlas.features(model)
    query = torch.from_numpy(np.asarray(features[[first]], dtype=np.float32))
    dist = torch.cat([_block_distances(query, features[candidates[i:i + _BLOCK]], 0, len(candidates[i:i + _BLOCK]))
                      for i in range(0, len(candidates), _BLOCK)], dim=1)
    return first, int(candidates[int(dist.argmin())])


def ranked_pairs(atlas: Atlas, kind: str = "inter", by: str = "gate_gap") -> tuple[np.ndarray, np.ndarray]:
    """The atlas's mined pairs of ``kind`` (each row with its stored partner), strongest first by
    ``by`` (:data:`apinet.mechanism.PAIR_STRENGTH_MEASURES`). Returns ``(rows, partners)``."""
    if kind not in PAIR_KINDS:
        raise ValueError(f"pair kind must be one of {PAIR_KINDS}, got {kind!r}")
    if by not in PAIR_STRENGTH_MEASURES:
        raise ValueError(f"unknown measure {by!r}; expected one of {list(PAIR_STRENGTH_MEASURES)}")
    partners = atlas.column(kind).astype(np.int64)
    rows = np.flatnonzero(partners >= 0)
    strength = PairStrength(*(np.asarray(atlas.column(f"{kind}_{m}"), np.float64)[rows] for m in PAIR_STRENGTH_MEASURES))
    order = rank_pairs(strength, by)
    return rows[order], partners[rows[order]]
