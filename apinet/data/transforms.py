"""Image preprocessing: the paper's train / test pipelines and their inverse for display.

API-Net's official code (Zhuang et al., AAAI 2020, github.com/PeiqinZhuang/API-Net, train.py) trains
on ``Resize((512, 512)) + RandomCrop(448) + flip`` and tests on ``Resize((512, 512)) + CenterCrop(448)``
with ImageNet normalisation: the image is squashed to a 512 x 512 square first (``resize_mode="square"``,
the ``paper`` preset), so a 500 x 375 CUB image keeps 448 / 512 = 87.5 % of its width in the test
crop. ``resize_mode="shorter"`` resizes the shorter side instead (aspect kept; the same image keeps
448 / 683 = 65.6 % of its width). :class:`Preprocess` records the test-time pipeline, resize mode
included, in a model card so a checkpoint is always fed the way it was trained; cards written before
the mode existed load as ``"shorter"``, which is what they were trained with.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from PIL import Image
from torchvision import transforms as T

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PAPER_INPUT_SIZE",
    "PAPER_RESIZE",
    "Preprocess",
    "build_transforms",
    "denormalize",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
PAPER_INPUT_SIZE = 448
PAPER_RESIZE = 512
#: Preprocess.from_card's fallback for a card that records none (torchvision's ImageNet convention).
CARDLESS_INPUT_SIZE = 224
CARDLESS_RESIZE = 256
#: ``"square"``: resize to resize x resize (the official API-Net code); ``"shorter"``: shorter side to resize.
RESIZE_MODES = ("square", "shorter")
#: Largest network input side and resize a Preprocess accepts (a model card may come from anywhere:
#: resize 100000 would ask for a 10-gigapixel image before the crop). The paper uses 448 / 512.
MAX_INPUT_SIZE = 1024
MAX_RESIZE = 2048
#: Largest intermediate image (after the shorter-side resize, before the centre crop). An image
#: within the decoder's pixel cap but of extreme aspect ratio (8 x 400000) would otherwise be resized
#: to billions of pixels; ``Preprocess`` refuses it with a message instead.
MAX_RESIZED_PIXELS = 32_000_000


def build_transforms(
    input_size: int,
    resize: int | None = None,
    train: bool = False,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize_mode: str = "shorter",
) -> T.Compose:
    """PIL RGB image -> normalised float tensor ``(3, input_size, input_size)``.

    Args:
        input_size: side of the square network input (paper: 448).
        resize: size before cropping (paper: 512); ``None`` means ``input_size``.
        train: random crop + horizontal flip; otherwise a centre crop.
        resize_mode: ``"square"`` resizes to ``resize x resize`` (the official code), ``"shorter"``
            resizes the shorter side to ``resize`` and keeps the aspect ratio.
    """
    resize = _resolve_resize(input_size, resize)
    _check_mode(resize_mode)
    crop = T.RandomCrop(input_size) if train else T.CenterCrop(input_size)
    size = (resize, resize) if resize_mode == "square" else resize
    steps: list[Any] = [T.Resize(size, interpolation=T.InterpolationMode.BILINEAR, antialias=True), crop]
    if train:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(list(mean), list(std))]
    return T.Compose(steps)


def denormalize(
    tensor: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Undo ``Normalize``: ``(3, H, W)`` or ``(B, 3, H, W)`` -> values in [0, 1] (clamped).

    Returns a new tensor on the input's device; the input is not modified.
    """
    if tensor.dim() not in (3, 4) or tensor.shape[-3] != 3:
        raise ValueError(f"denormalize expects (3, H, W) or (B, 3, H, W), got {tuple(tensor.shape)}")
    shape = (3, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(shape)
    std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(shape)
    return (tensor * std_t + mean_t).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Preprocess:
    """Test-time preprocessing of a model, serialisable into its JSON model card.

    ``Preprocess(input_size, resize)(pil_image)`` gives the ``(3, H, W)`` tensor the model expects.
    ``resize_mode``: ``"shorter"`` (default: shorter side to ``resize``) or ``"square"`` (squash to
    ``resize x resize``, the official API-Net code; :meth:`paper` uses it).
    """

    input_size: int
    resize: int | None = None  # None: same as input_size
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)
    resize_mode: str = "shorter"

    def __post_init__(self) -> None:
        object.__setattr__(self, "resize", _resolve_resize(self.input_size, self.resize))
        _check_mode(self.resize_mode)
        object.__setattr__(self, "mean", _triple(self.mean, "mean"))
        object.__setattr__(self, "std", _triple(self.std, "std"))
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    @classmethod
    def paper(cls) -> "Preprocess":
        """The official code's setting: resize to 512 x 512, crop 448, ImageNet statistics."""
        return cls(PAPER_INPUT_SIZE, PAPER_RESIZE, resize_mode="square")

    def transform(self, train: bool = False) -> T.Compose:
        return build_transforms(self.input_size, self.resize, train, mean=self.mean, std=self.std,
                                resize_mode=self.resize_mode)

    def geometry(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(resized_width, resized_height, left, top)`` of the test pipeline on a ``width x height``
        image, exactly as torchvision computes them: a point (x, y) of the original image lands at
        ``(x * resized_width / width - left, y * resized_height / height - top)`` in the input."""
        if self.resize_mode == "square":
            nw = nh = self.resize
        elif width <= height:
            nw, nh = self.resize, int(self.resize * height / width)
        else:
            nw, nh = int(self.resize * width / height), self.resize
        left = int(round((nw - self.input_size) / 2.0))
        top = int(round((nh - self.input_size) / 2.0))
        return nw, nh, left, top

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            raise ValueError(
                f"Preprocess expects an RGB image (use apinet.data.load_image), got mode {image.mode}"
            )
        self.check_size(*image.size)
        return self.transform(train=False)(image)

    def check_size(self, width: int, height: int) -> None:
        """Refuse (``ValueError``, one line) an image whose resize before the crop would exceed
        :data:`MAX_RESIZED_PIXELS`, i.e. one of extreme aspect ratio."""
        short, long = min(width, height), max(width, height)
        if short < 1:
            raise ValueError(f"image {width}x{height} has no pixels")
        if self.resize_mode == "square":
            return  # squashed to resize x resize, whatever its aspect ratio
        long_resized = self.resize * long // short
        if self.resize * long_resized > MAX_RESIZED_PIXELS:
            raise ValueError(
                f"image {width}x{height} (aspect ratio {long / short:.0f}:1) would be resized to "
                f"{self.resize}x{long_resized} = {self.resize * long_resized / 1e6:.0f} MP before the "
                f"{self.input_size} px centre crop (limit {MAX_RESIZED_PIXELS / 1e6:g} MP); crop it closer to the subject"
            )

    def denormalize(self, tensor: torch.Tensor) -> torch.Tensor:
        return denormalize(tensor, self.mean, self.std)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "resize": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize_mode": self.resize_mode,
        }

    @classmethod
    def from_card(cls, card: Mapping[str, Any] | None) -> "Preprocess":
        """The preprocessing a model card records (``train`` always writes it).

        A card without one (a checkpoint saved by hand) gets the torchvision ImageNet convention,
        resize 256 / crop 224, with a warning that says so: the one fallback of the CLI, the app and
        the explanation code.
        """
        if card and card.get("preprocess"):
            if not isinstance(card["preprocess"], Mapping):
                raise ValueError(f"invalid preprocess spec {str(card['preprocess'])[:80]!r}: not an object")
            return cls.from_dict(card["preprocess"])
        warnings.warn(
            "the model card records no preprocessing; using resize 256, centre crop 224, ImageNet mean/std "
            "(save checkpoints with preprocess=Preprocess(...).to_dict() to fix this)",
            UserWarning, stacklevel=2)
        return cls(CARDLESS_INPUT_SIZE, CARDLESS_RESIZE)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Preprocess":
        unknown = set(data) - {"input_size", "resize", "mean", "std", "resize_mode"}
        if unknown or "input_size" not in data:
            raise ValueError(
                f"invalid preprocess spec {dict(data)!r}: needs 'input_size' and optionally "
                f"'resize', 'mean', 'std', 'resize_mode'" + (f"; unknown keys {sorted(unknown)}" if unknown else "")
            )
        try:
            return cls(
                input_size=int(data["input_size"]),
                resize=None if data.get("resize") is None else int(data["resize"]),
                mean=tuple(data.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
                std=tuple(data.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
                # cards written before the field existed were trained with the shorter-side resize
                resize_mode=str(data.get("resize_mode", "shorter")),
            )
        except (TypeError, OverflowError) as error:  # a card's numbers of the wrong type: one line too
            raise ValueError(f"invalid preprocess spec {dict(data)!r}: {error}") from None


def _resolve_resize(input_size: int, resize: int | None) -> int:
    if input_size < 1:
        raise ValueError(f"input_size must be positive, got {input_size}")
    if input_size > MAX_INPUT_SIZE:
        raise ValueError(f"input_size {input_size} exceeds the limit of {MAX_INPUT_SIZE} px")
    resize = input_size if resize is None else int(resize)
    if resize > MAX_RESIZE:
        raise ValueError(f"resize {resize} exceeds the limit of {MAX_RESIZE} px")
    if resize < input_size:
        raise ValueError(f"resize ({resize}) must be >= input_size ({input_size}): the crop would not fit")
    return resize


def _check_mode(mode: str) -> None:
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {mode!r}")


def _triple(values: Sequence[float], what: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what} values must be finite numbers, got {values}")
    if len(values) != 3:
        raise ValueError(f"{what} needs 3 values (RGB), got {values}")
    return values  # type: ignore[return-value]
