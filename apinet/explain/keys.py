"""Typed keys of a :class:`~apinet.explain.PairExplanation`'s dictionaries.

Every key is a ``str`` (a ``str`` enum member or a ``str`` subclass), equal to and hashing like the
plain string the documentation uses, so ``expl.channels["apinet_gate1"]`` and
``expl.channels[ChannelSet.APINET_GATE1]`` find the same entry, JSON and ``.npz`` files keep the plain
strings, and a typo in code that uses the constants fails at import time instead of as a ``KeyError``.

* :class:`ChannelSet`: ``expl.channels`` (``"apinet_gate1"``, ``"apinet_gate2"``, ``"baseline_top"``,
  ``"baseline_at_apinet"``);
* :class:`CamKey` ``"<model>/<path>/<method>"``: ``expl.cams`` and ``expl.contrast_cams``, with
  :class:`ModelName`, :class:`CamPath` and (contrast maps) :class:`ContrastMethod`;
* :class:`LtpaKey` ``"<model>/<kind>/<stage>"``: ``expl.ltpa``, with :class:`LtpaKind`;
* :class:`ExactKey` ``"<image>_<kind>"``: ``expl.exact_cams``, with :class:`ExactKind`.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "CamKey",
    "CamPath",
    "ChannelSet",
    "ContrastMethod",
    "ExactKey",
    "ExactKind",
    "LtpaKey",
    "LtpaKind",
    "ModelName",
]


class _StrEnum(str, Enum):
    """A ``str`` enum whose members print, format and serialise as their value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class ModelName(_StrEnum):
    APINET = "apinet"
    BASELINE = "baseline"


class ChannelSet(_StrEnum):
    """Keys of ``PairExplanation.channels``."""

    APINET_GATE1 = "apinet_gate1"  # API-Net's top-k channels of image 1's ranking (gate, g*x or contribution)
    APINET_GATE2 = "apinet_gate2"
    BASELINE_TOP = "baseline_top"  # the baseline's own top-k channels of each image (pooled activation)
    BASELINE_AT_APINET = "baseline_at_apinet"  # the baseline's maps at API-Net's image-1 channels

    @classmethod
    def gate(cls, image: int) -> ChannelSet:
        """The API-Net channel set of image ``image`` (1 or 2)."""
        return {1: cls.APINET_GATE1, 2: cls.APINET_GATE2}[int(image)]


class CamPath(_StrEnum):
    TEST = "test"  # fc(x_i): the test-time logits
    PAIR = "pair"  # fc(x_i^self): API-Net's pair-path self logits


class LtpaKind(_StrEnum):
    POOLED = "pooled"  # parameter-free, g = global average of the same stage
    GATED = "gated"  # parameter-free, g = x_i^self
    TRAINED = "trained"  # the model's trainable LTPA estimator


class ContrastMethod(_StrEnum):
    """Methods of ``PairExplanation.contrast_cams`` ("why A and not B")."""

    CLASS_CONTRAST = "class_contrast"  # sum_k (W[A,k] - W[B,k]) F[k]: exact, signed
    FINERCAM = "finercam"  # grad-cam's Finer-CAM (target s_A - s_B, Grad-CAM weights), ReLU'd


class ExactKind(_StrEnum):
    SELF = "self"
    OTHER = "other"
    CONTRAST = "contrast"


class ExactKey(_StrEnum):
    """Keys of ``PairExplanation.exact_cams``: ``"<image>_<kind>"``."""

    SELF1 = "1_self"
    OTHER1 = "1_other"
    CONTRAST1 = "1_contrast"
    SELF2 = "2_self"
    OTHER2 = "2_other"
    CONTRAST2 = "2_contrast"

    @classmethod
    def of(cls, image: int, kind: str) -> ExactKey:
        return cls(f"{int(image)}_{ExactKind(kind).value}")

    @property
    def image(self) -> int:
        return int(self.value[0])

    @property
    def kind(self) -> ExactKind:
        return ExactKind(self.value[2:])


class _PathKey(str):
    """A ``"a/b/c"`` key with named parts (a ``str``: equal to, and hashing like, the plain string)."""

    __slots__ = ()
    _parts: tuple[str, str, str] = ("", "", "")

    def __new__(cls, key: str, *parts: str) -> _PathKey:
        text = "/".join(str(p) for p in (key, *parts)) if parts else str(key)
        pieces = text.split("/")
        if len(pieces) != 3 or not all(pieces):
            raise ValueError(f"{cls.__name__} must look like '{'/'.join(cls._parts)}', got {text!r}")
        return super().__new__(cls, text)

    def _part(self, i: int) -> str:
        return self.split("/")[i]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str.__repr__(self)})"


class CamKey(_PathKey):
    """``"<model>/<path>/<method>"``, e.g. ``CamKey("apinet", "pair", "gradcam") == "apinet/pair/gradcam"``."""

    __slots__ = ()
    _parts = ("model", "path", "method")

    @property
    def model(self) -> str:
        return self._part(0)

    @property
    def path(self) -> str:
        return self._part(1)

    @property
    def method(self) -> str:
        return self._part(2)


class LtpaKey(_PathKey):
    """``"<model>/<kind>/<stage>"``, e.g. ``LtpaKey("apinet", "gated", "layer4") == "apinet/gated/layer4"``."""

    __slots__ = ()
    _parts = ("model", "kind", "stage")

    @property
    def model(self) -> str:
        return self._part(0)

    @property
    def kind(self) -> str:
        return self._part(1)

    @property
    def stage(self) -> str:
        return self._part(2)


def typed(group: str, key: str) -> str:
    """``key`` of dictionary ``group`` as its typed key (a plain string when it has no type)."""
    try:
        if group == "channels":
            return ChannelSet(key)
        if group in ("cams", "contrast_cams"):
            return CamKey(key)
        if group == "ltpa":
            return LtpaKey(key)
        if group == "exact_cams":
            return ExactKey(key)
    except ValueError:
        pass
    return key
