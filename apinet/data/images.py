"""Safe image decoding shared by every entry point (CLI, app uploads, datasets).

All image bytes that enter API-Net Explorer go through :func:`load_image`, so that the rules are the
same everywhere:

* the pixel count is read from the header and checked *before* decoding (decompression bombs);
* the whole image is decoded here (``Image.load``), so truncated files fail at load time with a clear
  message instead of deep inside a DataLoader worker or a Streamlit callback;
* EXIF orientation is applied, animated images give their first frame, and every mode (palette,
  alpha, CMYK, 16-bit, float, 1-bit) becomes 8-bit RGB in a documented way;
* every failure is an :class:`ImageDecodeError` whose message is one line, ``"<name>: <reason>"``,
  suitable for showing to a person. A bad image is never replaced by a blank one.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageDecodeError",
    "ImageSource",
    "image_sha256",
    "load_image",
]

#: Largest accepted image, in pixels (64 megapixels; 1 MP = 10**6 pixels). A 64 MP RGB image already
#: needs ~200 MB decoded, far more than any fine-grained benchmark image.
DEFAULT_MAX_PIXELS = 64_000_000

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image]

# Modes whose alpha channel is composited on white (as a browser shows a transparent PNG on a page).
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Single-channel modes with more than 8 bits: scaled to 8-bit by their actual value range.
_WIDE_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_WHITE = (255, 255, 255)

# Truncated images must fail in load_image. Another library flipping this process-wide flag would
# silently turn truncated files into half-grey images, so load_image asserts it on every call.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageDecodeError(ValueError):
    """An image that cannot be used, with a one-line ``"<name>: <reason>"`` message."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = _one_line(reason)
        super().__init__(f"{_one_line(name)}: {self.reason}")


def load_image(
    source: ImageSource,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode ``source`` into a fully loaded 8-bit RGB image.

    Args:
        source: a file path, the encoded bytes, a binary file-like object (read from its current
            position), or a PIL image (validated and converted, current frame; never modified).
        name: what error messages call the image; defaults to the path as given, the file object's
            ``name``, or ``"<bytes>"`` / ``"<image>"``.
        max_pixels: largest accepted ``width * height``, checked from the header before decoding.

    Returns:
        A new RGB image, EXIF orientation applied; first frame of animated images.

    Raises:
        ImageDecodeError: empty, unreadable, unrecognised, truncated/corrupt, too large, or
            unconvertible images.
    """
    label = name if name is not None else _default_name(source)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImageDecodeError(
            label, "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; refusing to decode truncated images"
        )
    if isinstance(source, Image.Image):
        # A lazily opened image decodes from one shared file pointer on first use; two threads
        # decoding (or reading EXIF) at once interleave their seeks and reads and get corrupt data.
        # The caller's image is only touched under its own lock.
        with _lock_for(source):
            _check_pixel_count(source, label, max_pixels)
            _full_decode(source, label, max_pixels)
            rgb = _to_rgb(_apply_exif_orientation(source), label)
            # Callers may mutate the result; never hand back the caller's own object.
            return rgb.copy() if rgb is source else rgb
    image = _open_encoded(_read_bytes(source, label), label, max_pixels)
    return _to_rgb(_apply_exif_orientation(image), label)


def image_sha256(source: ImageSource) -> str:
    """Hex SHA-256 identifying an image, for caches.

    Paths, bytes and file objects hash their encoded bytes (file objects are read from the current
    position, which is then restored when possible). PIL images hash mode, size and pixel bytes:
    two encodings of the same pixels differ as files but match once decoded.
    """
    digest = hashlib.sha256()
    if isinstance(source, Image.Image):
        with _lock_for(source):  # tobytes() decodes a lazily opened image: same race as load_image
            digest.update(f"{source.mode}:{source.width}x{source.height}:".encode())
            digest.update(source.tobytes())
    elif isinstance(source, (bytes, bytearray, memoryview)):
        digest.update(source)
    elif isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    else:
        start = source.tell() if source.seekable() else None
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
        if start is not None:
            source.seek(start)
    return digest.hexdigest()


# Guards the creation of per-image locks (PIL images are unhashable, so the lock lives on the image).
_LOCKS_GUARD = threading.Lock()
_LOCK_ATTRIBUTE = "_apinet_decode_lock"


def _lock_for(image: Image.Image) -> threading.RLock:
    """The lock serialising this module's use of ``image`` across threads (created on first use)."""
    lock = getattr(image, _LOCK_ATTRIBUTE, None)
    if lock is None:
        with _LOCKS_GUARD:
            lock = getattr(image, _LOCK_ATTRIBUTE, None)
            if lock is None:
                lock = threading.RLock()
                try:
                    setattr(image, _LOCK_ATTRIBUTE, lock)
                except AttributeError:  # an Image subclass with __slots__: fall back to one lock for all
                    return _SHARED_FALLBACK_LOCK
    return lock


_SHARED_FALLBACK_LOCK = threading.RLock()


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _default_name(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)  # type: ignore[arg-type]
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or "<image>"
    file_name = getattr(source, "name", None)
    return os.fspath(file_name) if isinstance(file_name, (str, os.PathLike)) else "<stream>"


def _read_bytes(source: ImageSource, label: str) -> bytes:
    """Read the encoded bytes; decoding from memory leaves no open file handle behind."""
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        elif isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.exists():
                raise ImageDecodeError(label, "file not found")
            if path.is_dir():
                raise ImageDecodeError(label, "is a directory, not an image file")
            data = path.read_bytes()
        elif hasattr(source, "read"):
            data = source.read()
            if not isinstance(data, (bytes, bytearray)):
                raise ImageDecodeError(label, "file object must be opened in binary mode")
            data = bytes(data)
        else:
            raise ImageDecodeError(label, f"unsupported image source type {type(source).__name__}")
    except OSError as error:
        raise ImageDecodeError(label, f"cannot read file ({error.strerror or error})") from None
    if not data:
        raise ImageDecodeError(label, "file is empty (0 bytes)")
    return data


def _open_encoded(data: bytes, label: str, max_pixels: int) -> Image.Image:
    try:
        image = _open_header(data, label, pil_warning_is_error=True)
    except Image.DecompressionBombWarning as warning:
        # PIL only warns here (its soft limit); our own max_pixels decides whether that is fatal.
        pixels = _pixels_in_message(warning)
        if pixels is None or pixels > max_pixels:
            raise ImageDecodeError(label, _too_large(pixels, max_pixels)) from None
        image = _open_header(data, label, pil_warning_is_error=False)
    except Image.DecompressionBombError as error:
        # Above twice PIL's limit PIL refuses before we see the header, so only the count is known.
        raise ImageDecodeError(label, _too_large(_pixels_in_message(error), max_pixels)) from None
    _check_pixel_count(image, label, max_pixels)
    _full_decode(image, label, max_pixels)
    return image


def _open_header(data: bytes, label: str, *, pil_warning_is_error: bool) -> Image.Image:
    """``Image.open`` (header only), with PIL's many exception types turned into ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("error" if pil_warning_is_error else "ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageDecodeError(label, "not an image (unrecognised format)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise
        except Exception as error:  # header parsers raise SyntaxError, struct.error, OSError, ...
            raise ImageDecodeError(label, f"corrupt image header ({_describe(error)})") from None


def _pixels_in_message(error: BaseException) -> int | None:
    match = re.search(r"\((\d+) pixels\)", str(error))
    return int(match.group(1)) if match else None


def _too_large(pixels: int | None, max_pixels: int) -> str:
    if pixels is None:
        return "image too large (refused by PIL as a possible decompression bomb)"
    if pixels > max_pixels:
        return f"{pixels / 1e6:.1f} MP exceeds the {max_pixels / 1e6:g} MP limit"
    return f"{pixels / 1e6:.1f} MP exceeds PIL's decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS)"


def _check_pixel_count(image: Image.Image, label: str, max_pixels: int) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(label, f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError(
            label,
            f"{width}x{height} = {width * height / 1e6:.1f} MP exceeds the "
            f"{max_pixels / 1e6:g} MP limit",
        )


def _full_decode(image: Image.Image, label: str, max_pixels: int) -> None:
    """Decode every pixel now, so truncation and corrupt data surface here."""
    try:
        image.load()
    except Image.DecompressionBombError as error:  # formats that pick their size at load (ICO, ICNS)
        raise ImageDecodeError(label, _too_large(_pixels_in_message(error), max_pixels)) from None
    except Exception as error:  # zlib.error, OSError, SyntaxError, struct.error, ... all mean "bad data"
        raise ImageDecodeError(label, f"truncated or corrupt image data ({_describe(error)})") from None


def _describe(error: BaseException) -> str:
    message = _one_line(str(error))
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    try:
        transposed = ImageOps.exif_transpose(image)
    except Exception:
        # Unreadable EXIF is metadata damage, not pixel damage: browsers show such images
        # unrotated, and so do we rather than rejecting a decodable image.
        return image
    return image if transposed is None else transposed


def _to_rgb(image: Image.Image, label: str) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        # Palette transparency (GIF/PNG tRNS) must be composited, not dropped to the index colour.
        has_alpha = "transparency" in image.info or getattr(image.palette, "mode", "") == "RGBA"
        return _composite_on_white(image.convert("RGBA")) if has_alpha else image.convert("RGB")
    if mode in _ALPHA_MODES:
        return _composite_on_white(image.convert("RGBA"))
    if mode in _WIDE_MODES:
        return _scale_to_8bit(image).convert("RGB")
    try:
        # 1, L, CMYK, YCbCr, ... have standard PIL conversions. PIL applies no colour
        # management, which is fine for recognition inputs.
        return image.convert("RGB")
    except Exception as error:
        raise ImageDecodeError(label, f"unsupported image mode {mode} ({_describe(error)})") from None


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, _WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _scale_to_8bit(image: Image.Image) -> Image.Image:
    """Map a 16-bit / 32-bit / float image linearly from its actual [min, max] to [0, 255].

    Clipping would turn most 16-bit images (values in the thousands) white. A constant image has
    no range, so it keeps its value relative to the mode's nominal range instead.
    """
    values = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return Image.new("L", image.size, 0)
    low, high = float(values[finite].min()), float(values[finite].max())
    if high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        nominal_max = 65535.0 if image.mode.startswith("I;16") else 255.0
        scaled = np.full(values.shape, np.clip(low, 0.0, nominal_max) * 255.0 / nominal_max)
    scaled = np.where(finite, scaled, 0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))  # 2-D uint8 -> "L"
