"""apinet.data.images: every way an image can be bad, and every mode that must become sane RGB."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.image_factory import encode, noise

from apinet.data.images import DEFAULT_MAX_PIXELS, ImageDecodeError, image_sha256, load_image


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _png_claiming_size(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR is patched to claim ``width x height`` (CRC fixed): a bomb header."""
    data = bytearray(encode(Image.new("1", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _decode_error(source, **kwargs) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as caught:
        load_image(source, **kwargs)
    return caught.value


# --- failures: one line, "<name>: <reason>" -------------------------------------------------------


def test_empty_file(tmp_path):
    path = _write(tmp_path, "cat.jpg", b"")
    assert str(_decode_error(path)) == f"{path}: file is empty (0 bytes)"


def test_missing_file(tmp_path):
    error = _decode_error(tmp_path / "nope.png")
    assert str(error).endswith("nope.png: file not found")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_fail_at_load(tmp_path, fmt):
    data = encode(noise(64), fmt)
    path = _write(tmp_path, f"half.{fmt.lower()}", data[: len(data) // 2])
    error = _decode_error(path)
    assert error.reason.startswith("truncated or corrupt image data"), error.reason
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_non_image_bytes_with_jpg_extension(tmp_path):
    path = _write(tmp_path, "x.jpg", b"this is a text file, not a JPEG\n" * 20)
    assert str(_decode_error(path)) == f"{path}: not an image (unrecognised format)"


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (30000, 30000, "900.0 MP exceeds the 64 MP limit"),  # past 2x PIL's limit: PIL refuses first
        (10000, 10000, "100.0 MP exceeds the 64 MP limit"),  # PIL only warns; the warning is ours now
        (9000, 8000, "9000x8000 = 72.0 MP exceeds the 64 MP limit"),  # under PIL's limit: our header check
    ],
)
def test_decompression_bomb_refused_from_header(tmp_path, width, height, expected):
    path = _write(tmp_path, "big.png", _png_claiming_size(width, height))
    error = _decode_error(path, name="big.png")
    assert str(error) == f"big.png: {expected}"


def test_pixel_limit_is_configurable(tmp_path):
    tiny = _write(tmp_path, "small.png", encode(noise(8), "PNG"))
    assert _decode_error(tiny, max_pixels=63).reason.startswith("8x8 = 0.0 MP exceeds the")
    assert load_image(tiny, max_pixels=64).size == (8, 8)
    # A larger limit overrides PIL's soft warning: the 100 MP header passes, and the missing pixel
    # data is then reported as corrupt (the image is never silently accepted).
    bomb = _write(tmp_path, "bomb.png", _png_claiming_size(10000, 10000))
    assert "truncated or corrupt" in _decode_error(bomb, max_pixels=150_000_000).reason
    assert DEFAULT_MAX_PIXELS == 64_000_000


def test_error_messages_are_one_line_and_name_the_file(tmp_path):
    cases = {
        "empty.jpg": b"",
        "text.jpg": b"GIF89a but not really\n\n\n",
        "cut.png": encode(noise(64), "PNG")[:100],
        "cut.gif": encode(noise(64).convert("P"), "GIF")[:200],
        "big.png": _png_claiming_size(30000, 30000),
    }
    for name, data in cases.items():
        error = _decode_error(_write(tmp_path, name, data), name=name)
        message = str(error)
        assert "\n" not in message and message.startswith(f"{name}: "), message
        assert "Traceback" not in message


def test_bytes_and_stream_sources_use_their_names():
    assert str(_decode_error(b"nope")) == "<bytes>: not an image (unrecognised format)"
    stream = io.BytesIO(b"nope")
    stream.name = "upload.png"
    assert str(_decode_error(stream)) == "upload.png: not an image (unrecognised format)"


# --- modes and geometry ---------------------------------------------------------------------------


def _roundtrip(image: Image.Image, fmt: str = "PNG", **params) -> Image.Image:
    result = load_image(encode(image, fmt, **params))
    assert result.mode == "RGB"
    return result


def test_one_by_one_image_is_valid():
    result = _roundtrip(Image.new("RGB", (1, 1), (10, 20, 30)))
    assert result.size == (1, 1) and result.getpixel((0, 0)) == (10, 20, 30)


def test_grayscale_and_one_bit():
    assert _roundtrip(Image.new("L", (3, 2), 77)).getpixel((2, 1)) == (77, 77, 77)
    bits = Image.new("1", (4, 4), 0)
    bits.putpixel((1, 1), 1)
    result = _roundtrip(bits)
    assert result.getpixel((1, 1)) == (255, 255, 255) and result.getpixel((0, 0)) == (0, 0, 0)


def test_rgba_and_la_are_composited_on_white():
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 128))
    rgba.putpixel((1, 0), (0, 0, 255, 0))
    result = _roundtrip(rgba)
    red, green, blue = result.getpixel((0, 0))
    assert red == 255 and abs(green - 127) <= 1 and abs(blue - 127) <= 1  # half red over white
    assert result.getpixel((1, 0)) == (255, 255, 255)  # fully transparent -> white, not blue or black
    assert _roundtrip(Image.new("LA", (1, 1), (0, 0))).getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_and_without_transparency():
    palette_image = Image.new("P", (2, 1), 0)
    palette_image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    palette_image.putpixel((1, 0), 1)
    assert _roundtrip(palette_image).getpixel((0, 0)) == (0, 0, 0)
    transparent = _roundtrip(palette_image, transparency=0)
    assert transparent.getpixel((0, 0)) == (255, 255, 255)  # transparent index -> white
    assert transparent.getpixel((1, 0)) == (200, 10, 10)


def test_cmyk_becomes_rgb():
    result = _roundtrip(Image.new("CMYK", (2, 2), (0, 255, 255, 0)), "TIFF")
    assert result.getpixel((0, 0)) == (255, 0, 0)


def test_sixteen_bit_is_scaled_by_its_range_not_clipped():
    values = np.linspace(1000, 3000, 5 * 4, dtype=np.uint16).reshape(4, 5)
    source = Image.fromarray(values)
    assert source.mode.startswith("I;16")
    result = np.asarray(_roundtrip(source))[..., 0]
    assert result.min() == 0 and result.max() == 255  # range-scaled; clipping would give all 255
    assert np.allclose(result, (values - 1000) / 2000 * 255, atol=1)


def test_float_image_is_scaled_and_constant_keeps_nominal_value():
    values = np.linspace(-1.0, 1.0, 9, dtype=np.float32).reshape(3, 3)
    result = np.asarray(load_image(Image.fromarray(values, mode="F")))[..., 0]
    assert result[0, 0] == 0 and result[2, 2] == 255 and abs(int(result[1, 1]) - 128) <= 1
    constant = Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16))
    assert load_image(constant).getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert load_image(data).getpixel((4, 4)) == (255, 0, 0)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    result = _roundtrip(image, "JPEG", exif=exif.tobytes(), quality=95)
    assert result.size == (20, 40)
    top, bottom = result.getpixel((10, 5)), result.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60


def test_pil_source_is_not_modified_and_result_is_new():
    source = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    result = load_image(source)
    assert source.mode == "RGBA" and result is not source
    rgb = Image.new("RGB", (2, 2))
    assert load_image(rgb) is not rgb


def test_shared_lazily_opened_images_are_safe_across_threads():
    """5 threads decode the same 8 lazily opened images at once (as the app's worker threads do with
    gallery images), 20 rounds of fresh images: every result equals a single-threaded decode and
    nothing raises. Without a per-image lock this gave ~40 corrupt or failed decodes in 800 calls."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    datas = [encode(noise(160, seed=i), "JPEG" if i % 2 else "PNG") for i in range(8)]
    expected = [np.asarray(load_image(data)) for data in datas]
    problems: list[str] = []
    for _ in range(20):
        shared = [Image.open(io.BytesIO(data)) for data in datas]
        barrier = threading.Barrier(5)

        def work(thread: int) -> None:
            barrier.wait()
            for j in range(8):
                i = (j + thread) % 8
                try:
                    if i % 4 == 0:  # the cache key path reads the same shared image
                        image_sha256(shared[i])
                    if not np.array_equal(np.asarray(load_image(shared[i])), expected[i]):
                        problems.append(f"image {i}: wrong pixels")
                except Exception as error:  # noqa: BLE001 - any failure is what this test counts
                    problems.append(f"image {i}: {error}")

        with ThreadPoolExecutor(5) as pool:
            list(pool.map(work, range(5)))
    assert problems == []


def test_image_sha256(tmp_path):
    data = encode(noise(8), "PNG")
    path = _write(tmp_path, "a.png", data)
    assert image_sha256(path) == image_sha256(data) == image_sha256(io.BytesIO(data))
    assert image_sha256(path) != image_sha256(encode(noise(8, seed=1), "PNG"))
    pixels = Image.open(io.BytesIO(data))
    assert image_sha256(pixels) == image_sha256(pixels.copy())
    assert image_sha256(pixels) != image_sha256(pixels.convert("L"))
