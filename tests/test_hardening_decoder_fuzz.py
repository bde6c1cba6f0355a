"""Hardening: property-based fuzzing of ``load_image`` (hypothesis).

The contract, for *any* input: either an 8-bit RGB PIL image of the displayed size comes back, or an
:class:`ImageDecodeError` whose message is one line starting with the name it was given. No other
exception type ever escapes (no ``OSError``, ``SyntaxError``, ``struct.error``, ``zlib.error``,
``ValueError`` from a PIL plugin, ``DecompressionBombWarning`` turned error, ...).

Three sources of input: arbitrary bytes (mostly unrecognised); valid images of random size, mode and
format (PNG, JPEG, GIF, BMP, TIFF, WebP) that must decode to the right size; and those valid files
damaged by truncation or byte flips, which reach deep into each decoder.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, features

from apinet.data.images import ImageDecodeError, load_image

NAME = "fuzz/input name.img"
# A loaded 2-core machine can stall a single example for seconds; the point is correctness.
FUZZ = settings(deadline=5000, suppress_health_check=[HealthCheck.too_slow], derandomize=True, database=None)

# modes each format can write (PIL), so valid inputs are really valid
_FORMAT_MODES = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "GIF": ["L", "P", "RGB"],
    "BMP": ["1", "L", "P", "RGB"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "F"],
    "WEBP": ["RGB", "RGBA"],
}
FORMATS = [f for f in _FORMAT_MODES if f != "WEBP" or features.check("webp")]


def _check(data: bytes, expected_size: tuple[int, int] | None = None) -> None:
    try:
        image = load_image(data, name=NAME)
    except ImageDecodeError as error:
        message = str(error)
        assert "\n" not in message and "\r" not in message, message
        assert message.startswith(f"{NAME}: ") and error.reason, message
        assert expected_size is None, f"a valid image was refused: {message}"
        return
    # anything else propagates and fails the test with its real type
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert image.width >= 1 and image.height >= 1
    assert len(image.tobytes()) == image.width * image.height * 3  # fully decoded
    if expected_size is not None:
        assert image.size == expected_size


@st.composite
def valid_images(draw) -> tuple[bytes, tuple[int, int]]:
    fmt = draw(st.sampled_from(FORMATS))
    mode = draw(st.sampled_from(_FORMAT_MODES[fmt]))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    elif mode == "F":
        image = Image.fromarray(rng.normal(size=(height, width)).astype(np.float32), mode="F")
    else:
        rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        image = rgb.convert(mode) if mode != "P" else rgb.quantize(colors=int(rng.integers(2, 64)))
    params = {}
    if fmt == "JPEG":
        params["quality"] = draw(st.integers(5, 95))
    if fmt == "GIF" and draw(st.booleans()):  # animated: first frame counts
        params.update(save_all=True, append_images=[image.copy()], duration=30)
    if fmt == "WEBP":
        params["lossless"] = draw(st.booleans())
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue(), (width, height)


@settings(FUZZ, max_examples=40)
@given(st.binary(min_size=0, max_size=2048))
def test_random_bytes(data):
    _check(data)


@settings(FUZZ, max_examples=30)
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
                        b"RIFF\x00\x00\x00\x00WEBPVP8 "]), st.binary(max_size=512))
def test_random_bytes_behind_a_real_magic_number(magic, tail):
    """Past format detection, into each header parser."""
    _check(magic + tail)


@settings(FUZZ, max_examples=50)
@given(valid_images())
def test_valid_images_decode_to_rgb_of_their_size(sample):
    data, size = sample
    _check(data, expected_size=size)


@settings(FUZZ, max_examples=40)
@given(valid_images(), st.data())
def test_damaged_images_decode_or_refuse_cleanly(sample, data):
    encoded, _ = sample
    damage = data.draw(st.sampled_from(["truncate", "flip", "both"]))
    raw = bytearray(encoded)
    if damage in ("truncate", "both"):
        raw = raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))]
    if damage in ("flip", "both") and raw:
        for _ in range(data.draw(st.integers(1, 8))):
            position = data.draw(st.integers(0, len(raw) - 1))
            raw[position] ^= data.draw(st.integers(1, 255))
    _check(bytes(raw))


def test_the_property_check_rejects_foreign_exceptions(monkeypatch):
    """Control: if load_image let a decoder's own exception escape, _check would fail."""
    import apinet.data.images as images

    def leaky(*args, **kwargs):
        raise OSError("broken data stream")

    monkeypatch.setattr(images, "_open_encoded", leaky)
    with pytest.raises(OSError):
        _check(b"\x89PNG\r\n\x1a\n")
