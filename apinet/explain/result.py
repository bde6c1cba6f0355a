"""The result of an explanation: :class:`PairExplanation` (plain numpy, no model), its ``.npz`` / JSON form."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write, to_jsonable
from ._util import softmax
from .channels import ranking_order
from .keys import typed
from .maps import A2StageMaps, AttentionMap, CamMaps, ChannelMaps, ContrastMaps, ExactMap

__all__ = ["RANK_MARGIN", "PairExplanation"]

#: Margin of API-Net's score-ranking loss (paper: 0.05).
RANK_MARGIN = 0.05

#: Dictionaries of map records, in the order they are stored, and the record type of each.
_GROUPS: dict[str, type] = {"channels": ChannelMaps, "ltpa": AttentionMap, "cams": CamMaps, "a2": A2StageMaps,
                            "exact_cams": ExactMap, "contrast_cams": ContrastMaps}


@dataclass
class PairExplanation:
    """Everything an explanation of one pair shows, as numpy arrays (see :mod:`apinet.explain`).

    Maps are kept at the resolution they were computed at; display forms at the input size
    (``CamMaps.map1``, ``ExactMap.display``) are made on access, so a cached explanation stays
    small (:meth:`nbytes`).
    """

    image1: np.ndarray  # [H, W, 3] uint8, the model input as displayed (denormalised)
    image2: np.ndarray
    class_names: list[str]
    features1: np.ndarray  # [D] float32 pooled feature x1
    features2: np.ndarray
    mutual: np.ndarray  # [D] x_m
    gate1: np.ndarray  # [D] g1 = sigmoid(x_m * x1)
    gate2: np.ndarray
    logits: dict[str, np.ndarray]  # "1_self", "1_other", "2_self", "2_other", "1_test", "2_test" -> [C]
    targets: tuple[int, int]
    p_self1: float
    p_other1: float
    p_self2: float
    p_other2: float
    rank_term1: float
    rank_term2: float
    channels: dict[str, ChannelMaps] = field(default_factory=dict)  # keys: keys.ChannelSet
    ltpa: dict[str, AttentionMap] = field(default_factory=dict)  # keys: keys.LtpaKey
    cams: dict[str, CamMaps] = field(default_factory=dict)  # keys: keys.CamKey
    a2: dict[str, A2StageMaps] = field(default_factory=dict)
    baseline_logits: dict[str, np.ndarray] = field(default_factory=dict)  # "1_test", "2_test" -> [C]
    baseline_features1: np.ndarray | None = None  # [D_b] baseline pooled features
    baseline_features2: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # k, rank_by, methods, models, timings, ...
    # "self1", "other1", "self2", "other2" -> [D]: x_i + x_i * g_i and x_i + x_i * g_j, as the model computed them
    interaction: dict[str, np.ndarray] = field(default_factory=dict)
    # [D] int64: every channel in the order of the ranking this explanation used (settings["rank_by"]),
    # best first; channels["apinet_gate{i}"].indices is its first k. The app shows these, never re-sorts.
    gate_order1: np.ndarray | None = None
    gate_order2: np.ndarray | None = None
    # softmax of every logit vector (same keys as ``logits``; baseline: "1_test", "2_test"), float32
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    baseline_probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    rank_margin: float = RANK_MARGIN  # the score-ranking margin of rank_term1/2
    # one line per image that is unlike the model's training data (apinet.ood), None for a familiar one
    unusual: tuple[str | None, str | None] = (None, None)
    # keys.ExactKey "1_self", "1_other", "1_contrast", "2_self", ... -> ExactMap (apinet.explain.exact)
    exact_cams: dict[str, ExactMap] = field(default_factory=dict)
    # keys.CamKey "<model>/<path>/class_contrast" and "<model>/test/finercam": why A and not B
    contrast_cams: dict[str, ContrastMaps] = field(default_factory=dict)
    # [D] float32: W[c_i,k] (1 + g_i[k]) x_i[k], each channel's share of image i's self logit for its
    # reference class c_i (sum + bias = logits["i_self"][c_i]); None for explanations made before
    contribution1: np.ndarray | None = None
    contribution2: np.ndarray | None = None
    # [h, w, D] float16: API-Net's last feature maps as unit vectors, for correspondence_map
    unit_features1: np.ndarray | None = None
    unit_features2: np.ndarray | None = None

    def __post_init__(self) -> None:
        for group in _GROUPS:
            setattr(self, group, {typed(group, k): v for k, v in getattr(self, group).items()})
        # explanations stored before these fields existed: derive them once, here, with the same code
        if self.gate_order1 is None or self.gate_order2 is None:
            rank_by = (self.settings or {}).get("rank_by", "gate")
            self.gate_order1, self.gate_order2 = (
                ranking_order(rank_by, g, x, self.mutual, c)
                for g, x, c in ((self.gate1, self.features1, self.contribution1),
                                (self.gate2, self.features2, self.contribution2)))
        if not self.probabilities:
            self.probabilities = {key: softmax(v).astype(np.float32) for key, v in self.logits.items()}
        if not self.baseline_probabilities:
            self.baseline_probabilities = {key: softmax(v).astype(np.float32)
                                           for key, v in self.baseline_logits.items()}

    # --- convenience -------------------------------------------------------------------------------

    def predicted(self, image: int, path: str = "test") -> int:
        return int(np.argmax(self.logits[f"{image}_{path}"]))

    def gate_order(self, image: int) -> np.ndarray:
        """Every channel of image ``image``'s gate (1 or 2), best first by the explanation's ranking."""
        return self.gate_order1 if image == 1 else self.gate_order2  # type: ignore[return-value]

    def contribution(self, image: int) -> np.ndarray | None:
        """W[c,k] (1 + g[k]) x[k] of image ``image`` (1 or 2): its channels' shares of its self logit."""
        return self.contribution1 if image == 1 else self.contribution2

    def contribution_order(self, image: int) -> np.ndarray | None:
        """Every channel of image ``image``, largest contribution to its self logit first (ties: lower index)."""
        c = self.contribution(image)
        return None if c is None else ranking_order("contribution", c, c, c, c)

    def top_classes(self, key: str, n: int = 5, model: str = "apinet") -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` most probable classes of logit vector ``key`` (e.g. ``"1_test"``) and their
        probabilities, best first (ties: lower class index first)."""
        probs = (self.probabilities if model == "apinet" else self.baseline_probabilities)[key]
        order = np.argsort(-probs.astype(np.float64), kind="stable")[:n]
        return order.astype(np.int64), probs[order]

    def nbytes(self) -> int:
        """Bytes of every array this explanation holds (what a cache of it keeps in memory)."""
        return int(sum(a.nbytes for a in self._arrays().values()))

    # --- serialisation -----------------------------------------------------------------------------

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {
            "image1": self.image1, "image2": self.image2, "features1": self.features1,
            "features2": self.features2, "mutual": self.mutual, "gate1": self.gate1, "gate2": self.gate2,
        }
        for prefix, group in (("logits", self.logits), ("baseline_logits", self.baseline_logits),
                              ("interaction", self.interaction)):
            for key, value in group.items():
                arrays[f"{prefix}/{key}"] = value
        arrays["gate_order1"], arrays["gate_order2"] = self.gate_order1, self.gate_order2
        for prefix, group in (("probabilities", self.probabilities),
                              ("baseline_probabilities", self.baseline_probabilities)):
            for key, value in group.items():
                arrays[f"{prefix}/{key}"] = value
        for name in ("baseline_features1", "baseline_features2", "contribution1", "contribution2",
                     "unit_features1", "unit_features2"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        for group_name in _GROUPS:
            for key, item in getattr(self, group_name).items():
                for name, value in vars(item).items():
                    if isinstance(value, np.ndarray):
                        arrays[f"{group_name}/{key}/{name}"] = value
        return arrays

    def _meta(self) -> dict[str, Any]:
        def scalars(item: Any) -> dict[str, Any]:
            return {k: v for k, v in vars(item).items() if not isinstance(v, np.ndarray) and v is not None}

        meta = {
            "format": "apinet-explanation/1",
            "class_names": list(self.class_names),
            "targets": [int(t) for t in self.targets],
            "target_names": [self.class_names[t] for t in self.targets],
            "predicted_test": [self.predicted(1), self.predicted(2)],
            "p_self1": self.p_self1, "p_other1": self.p_other1,
            "p_self2": self.p_self2, "p_other2": self.p_other2,
            "rank_term1": self.rank_term1, "rank_term2": self.rank_term2, "rank_margin": self.rank_margin,
            "unusual": list(self.unusual),
            "channels": {k: {**scalars(c), "indices": c.indices.tolist(), "scores": c.scores.tolist(),
                             "indices2": np.asarray(c.indices2).tolist(),
                             "scores2": None if c.scores2 is None else c.scores2.tolist()}
                         for k, c in self.channels.items()},
        }
        for group in ("ltpa", "cams", "a2", "exact_cams", "contrast_cams"):
            meta[group] = {k: scalars(a) for k, a in getattr(self, group).items()}
        meta["settings"] = self.settings
        meta["shapes"] = {k: list(v.shape) for k, v in self._arrays().items()}
        return meta

    def to_json(self, indent: int | None = 2) -> str:
        """Scalars, channel indices, settings and array shapes (the arrays go in :meth:`to_npz`)."""
        return json.dumps(to_jsonable(self._meta()), indent=indent)

    def to_npz(self, path: Any) -> Any:
        """Write every array plus the JSON metadata (key ``__meta__``) to a compressed ``.npz``
        (a path, or a binary file object)."""
        arrays = self._arrays()
        arrays["__meta__"] = np.array(self.to_json(indent=None))
        if not isinstance(path, (str, Path)):  # a binary file object
            np.savez_compressed(path, **arrays)
            return path
        path = Path(path)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

        atomic_write(path, write)
        return path

    @classmethod
    def from_npz(cls, path: Any) -> PairExplanation:
        """Read back what :meth:`to_npz` wrote (render again without running a model)."""
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("__meta__")))

        def group(prefix: str) -> dict[str, dict[str, np.ndarray]]:
            out: dict[str, dict[str, np.ndarray]] = {}
            for key, value in arrays.items():
                if key.startswith(prefix + "/"):
                    rest = key[len(prefix) + 1:]
                    item, _, name = rest.rpartition("/")
                    out.setdefault(item, {})[name] = value
            return out

        def flat(prefix: str) -> dict[str, np.ndarray]:
            return {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(prefix + "/")}

        channels = {}
        for key, arrs in group("channels").items():
            m = meta["channels"][key]
            channels[key] = ChannelMaps(
                indices=np.asarray(m["indices"], dtype=np.int64), scores=np.asarray(m["scores"], np.float32),
                maps1=arrs["maps1"], maps2=arrs["maps2"], label=m["label"], ranking=m["ranking"],
                indices2=np.asarray(m["indices2"], dtype=np.int64),
                scores2=None if m.get("scores2") is None else np.asarray(m["scores2"], np.float32),
            )
        records = {name: {k: kind(**{**meta.get(name, {}).get(k, {}), **arrs}) for k, arrs in group(name).items()}
                   for name, kind in _GROUPS.items() if name != "channels"}
        return cls(
            image1=arrays["image1"], image2=arrays["image2"], class_names=meta["class_names"],
            features1=arrays["features1"], features2=arrays["features2"], mutual=arrays["mutual"],
            gate1=arrays["gate1"], gate2=arrays["gate2"], logits=flat("logits"),
            targets=tuple(meta["targets"]),  # type: ignore[arg-type]
            p_self1=meta["p_self1"], p_other1=meta["p_other1"], p_self2=meta["p_self2"],
            p_other2=meta["p_other2"], rank_term1=meta["rank_term1"], rank_term2=meta["rank_term2"],
            channels=channels, **records, baseline_logits=flat("baseline_logits"),
            baseline_features1=arrays.get("baseline_features1"),
            baseline_features2=arrays.get("baseline_features2"),
            settings=meta["settings"], interaction=flat("interaction"),
            gate_order1=arrays.get("gate_order1"), gate_order2=arrays.get("gate_order2"),
            probabilities=flat("probabilities"), baseline_probabilities=flat("baseline_probabilities"),
            rank_margin=float(meta.get("rank_margin", meta["settings"].get("rank_margin", RANK_MARGIN))),
            unusual=tuple(meta.get("unusual", (None, None))),  # type: ignore[arg-type]
            contribution1=arrays.get("contribution1"), contribution2=arrays.get("contribution2"),
            unit_features1=arrays.get("unit_features1"), unit_features2=arrays.get("unit_features2"),
        )
