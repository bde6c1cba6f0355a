"""Hardening: bad and unusual images through every non-app entry point (CLI explain, datasets).

``tests/test_data_images.py`` already proves ``load_image`` itself for each kind (empty, truncated
JPEG/PNG, text behind .jpg, header bombs, 1x1, grayscale, RGBA, palette, CMYK, 16-bit, animated GIF,
EXIF rotation). Here the same corpus goes through the entry points a person actually uses:

* ``python -m apinet explain BAD GOOD --out x.png`` exits 2 with one line naming the bad file;
* a folder dataset holding the whole corpus raises naming each bad file (``on_error="raise"``) or
  drops and reports exactly the bad ones (``on_error="skip"``), while every unusual-but-valid image
  comes out as RGB of its displayed size;
* a CUB folder with missing *and* corrupt files: missing files are a ``DatasetError`` even under
  ``on_error="skip"`` (skip is for unreadable images, not for an incomplete download).

The app's upload path is covered in ``tests/test_hardening_app.py``; the app test imports the corpus
from here.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import apinet
from apinet.cli import main as cli_main
from apinet.data.base import DatasetError
from apinet.data.cub import CUB200
from apinet.data.folder import ImageFolderDataset
from apinet.data.images import ImageDecodeError
from tests.image_factory import encode, noise

ROOT = Path(__file__).resolve().parents[1]


# --- the corpus -----------------------------------------------------------------------------------


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A 1x1 PNG whose IHDR claims ``width x height`` (CRC fixed): a bomb header, a few dozen bytes."""
    data = bytearray(encode(Image.new("1", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def bad_images() -> dict[str, tuple[bytes, str]]:
    """file name -> (bytes, a phrase the one-line reason must contain)."""
    jpeg, png = encode(noise(48), "JPEG"), encode(noise(48), "PNG")
    return {
        "empty.jpg": (b"", "file is empty (0 bytes)"),
        "cut.jpg": (jpeg[: len(jpeg) // 2], "truncated or corrupt image data"),
        "cut.png": (png[: len(png) // 2], "truncated or corrupt image data"),
        "text.jpg": (b"Dear reader, this is not a JPEG.\n" * 10, "not an image (unrecognised format)"),
        "bomb.png": (png_bomb(), "900.0 MP exceeds the 64 MP limit"),
    }


def good_images() -> dict[str, tuple[bytes, tuple[int, int]]]:
    """file name -> (bytes, expected RGB size (w, h) after EXIF orientation)."""
    palette = Image.new("P", (9, 7), 0)
    palette.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    frames = [Image.new("RGB", (10, 6), c) for c in ((255, 0, 0), (0, 255, 0))]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display: 40x20 stored, 20x40 shown
    sixteen = np.arange(30, dtype=np.uint16).reshape(5, 6) * 1000  # 16-bit values up to 29000
    return {
        "one.png": (encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"), (1, 1)),
        "gray.png": (encode(Image.new("L", (12, 5), 90), "PNG"), (12, 5)),
        "rgba.png": (encode(Image.new("RGBA", (6, 6), (0, 0, 255, 0)), "PNG"), (6, 6)),
        "palette.png": (encode(palette, "PNG", transparency=0), (9, 7)),
        "cmyk.jpg": (encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"), (8, 8)),
        "sixteen.png": (encode(Image.fromarray(sixteen), "PNG"), (6, 5)),
        "animated.gif": (encode(frames[0], "GIF", save_all=True, append_images=frames[1:]), (10, 6)),
        "exif.jpg": (encode(Image.new("RGB", (40, 20), (0, 128, 0)), "JPEG", exif=exif.tobytes()), (20, 40)),
    }


def _write_all(folder: Path, corpus: dict) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (data, _) in corpus.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


def _assert_one_line_naming(message: str, name: str, reason: str) -> None:
    assert "\n" not in message and "Traceback" not in message, message
    assert name in message and reason in message, message


# --- CLI: python -m apinet explain ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = apinet.APINet("resnet18", num_classes=3, output_stride=32).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return apinet.save_checkpoint(model, path, class_names=["a", "b", "c"],
                                  preprocess={"input_size": 32, "resize": 32})


def _explain_argv(first: Path, second: Path, checkpoint: Path, out: Path) -> list[str]:
    return ["explain", str(first), str(second), "--checkpoint", str(checkpoint), "--baseline", "none",
            "--methods", "gradcam", "--k", "2", "--dpi", "20", "--out", str(out)]


@pytest.mark.slow
def test_cli_explain_bad_first_image_exits_2_with_one_line(tiny_checkpoint, tmp_path):
    """The real command line, in a fresh interpreter: exit 2, one stderr line, no traceback."""
    bad = tmp_path / "BAD.jpg"
    bad.write_bytes(bad_images()["cut.jpg"][0])
    good = tmp_path / "GOOD.png"
    good.write_bytes(encode(noise(40), "PNG"))
    out = tmp_path / "x.png"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("APINET_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "apinet", *_explain_argv(bad, good, tiny_checkpoint, out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {bad}: truncated or corrupt image data"), lines[0]
    assert not out.exists()


@pytest.mark.parametrize("kind", sorted(bad_images()))
@pytest.mark.parametrize("position", [0, 1])
def test_cli_explain_refuses_every_bad_kind_in_either_position(kind, position, tiny_checkpoint, tmp_path,
                                                               capsys, monkeypatch):
    """Same code path as the subprocess above (apinet.cli.main), in-process to keep it fast."""
    monkeypatch.delenv("APINET_DEBUG", raising=False)
    data, reason = bad_images()[kind]
    bad = tmp_path / kind
    bad.write_bytes(data)
    good = tmp_path / "good.png"
    good.write_bytes(encode(noise(40), "PNG"))
    pair = (bad, good) if position == 0 else (good, bad)
    assert cli_main(_explain_argv(*pair, tiny_checkpoint, tmp_path / "x.png")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    _assert_one_line_naming(lines[0], str(bad), reason)
    assert lines[0].startswith("error: ")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_cli_explain_accepts_unusual_valid_images(tiny_checkpoint, tmp_path, capsys):
    """16-bit PNG vs CMYK JPEG, and animated GIF vs EXIF-rotated JPEG, give a figure (exit 0)."""
    paths = _write_all(tmp_path / "good", good_images())
    for first, second in (("sixteen.png", "cmyk.jpg"), ("animated.gif", "exif.jpg")):
        out = tmp_path / f"{first}-{second}.png"
        assert cli_main(_explain_argv(paths[first], paths[second], tiny_checkpoint, out)) == 0
        assert Image.open(out).format == "PNG"
    assert "wrote" in capsys.readouterr().out


# --- datasets -------------------------------------------------------------------------------------


@pytest.fixture()
def mixed_folder(tmp_path) -> tuple[Path, dict[str, Path], dict[str, Path]]:
    """Class "a_good" holds every unusual-but-valid image; class "b_bad" every broken one."""
    goods = _write_all(tmp_path / "a_good", good_images())
    bads = _write_all(tmp_path / "b_bad", bad_images())
    return tmp_path, goods, bads


def test_folder_dataset_raise_policy_names_each_bad_file(mixed_folder):
    root, goods, bads = mixed_folder
    dataset = ImageFolderDataset(root)
    assert len(dataset) == len(goods) + len(bads)  # "raise" validates lazily: nothing dropped
    expected = good_images()
    reasons = bad_images()
    for index, path in enumerate(dataset.paths):
        if path.name in expected:
            image, label = dataset[index]
            assert label == 0 and image.mode == "RGB" and image.size == expected[path.name][1], path.name
        else:
            with pytest.raises(ImageDecodeError) as caught:
                dataset[index]
            message = str(caught.value)
            assert message.startswith(f"{path}: "), message
            _assert_one_line_naming(message, str(path), reasons[path.name][1])


def test_folder_dataset_skip_policy_drops_and_reports_exactly_the_bad_files(mixed_folder):
    root, goods, bads = mixed_folder
    expected = rf"skipped {len(bads)} unreadable image\(s\) of {len(goods) + len(bads)}"
    with pytest.warns(UserWarning, match=expected):
        dataset = ImageFolderDataset(root, on_error="skip")
    reasons = bad_images()
    assert {Path(p).name for p, _ in dataset.skipped} == set(bads)
    for path, reason in dataset.skipped:
        assert reasons[Path(path).name][1] in reason and "\n" not in reason
    assert sorted(p.name for p in dataset.paths) == sorted(goods)
    assert dataset.labels == [0] * len(goods) and dataset.classes == ["a good", "b bad"]
    for index in range(len(dataset)):
        assert dataset[index][0].mode == "RGB"


def test_folder_dataset_error_surfaces_through_a_dataloader(mixed_folder):
    """Iterating a loader reaches the bad file and stops with its name, never a blank tensor."""
    root, _, bads = mixed_folder
    dataset = ImageFolderDataset(root, transform=lambda im: torch.zeros(1))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=0)
    with pytest.raises(ImageDecodeError) as caught:
        for _ in loader:
            pass
    assert Path(str(caught.value).split(": ", 1)[0]).name in bads


def test_cub_with_missing_and_corrupt_files(tmp_path):
    """Missing files: one DatasetError listing them, whatever on_error says. Corrupt only: skip reports."""
    from tests.test_data_cub import FOLDERS, make_cub

    root = make_cub(tmp_path)
    truncated = root / "images" / FOLDERS[0] / "Black_footed_Albatross_0000.jpg"
    bomb = root / "images" / FOLDERS[2] / "Sooty_Albatross_0000.jpg"
    truncated.write_bytes(truncated.read_bytes()[:200])
    bomb.write_bytes(png_bomb())  # a PNG behind .jpg: decoded by content, refused by size
    missing = root / "images" / FOLDERS[1] / "Laysan_Albatross_0001.jpg"
    missing.unlink()
    for policy in ("raise", "skip"):
        expected = r"missing 1 of 6 image files listed in images.txt.*Laysan_Albatross_0001"
        with pytest.raises(DatasetError, match=expected):
            CUB200(root, "train", on_error=policy)
    Image.new("RGB", (17, 12)).save(missing)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CUB200(root, "train", on_error="skip")
    assert len([w for w in caught if "skipped 2 unreadable image(s) of 3" in str(w.message)]) == 1
    assert [Path(p).name for p, _ in dataset.skipped] == [truncated.name, bomb.name]
    assert "corrupt" in dataset.skipped[0][1]  # cut inside the header: "corrupt image header (...)"
    assert "900.0 MP exceeds" in dataset.skipped[1][1]
    assert dataset.image_ids == [3] and dataset.labels == [1]

    strict = CUB200(root, "train")
    with pytest.raises(ImageDecodeError, match=rf"^{truncated}: corrupt"):
        strict.load_pil(0)
    with pytest.raises(ImageDecodeError, match=rf"^{bomb}: 900.0 MP exceeds"):
        strict[2]
