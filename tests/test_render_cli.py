"""``python -m apinet explain``: --width, --view from the one view vocabulary, and --pairs FILE (a
multi-pair figure), run in-process with a tiny random checkpoint."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

import apinet
from apinet.cli import main
from apinet.cli.explain import MAX_PAIRS, figure_width, read_pairs
from apinet.errors import UserError
from apinet.render import VIEWS


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("cli")
    model = apinet.APINet("resnet18", num_classes=3, output_stride=32).eval()
    ckpt = apinet.save_checkpoint(model, root / "tiny.safetensors", class_names=["wren", "robin", "finch"],
                                  preprocess={"input_size": 32, "resize": 32})
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / name)
    return root, ckpt


def _argv(ckpt, *rest):
    return ["explain", *rest, "--checkpoint", str(ckpt), "--baseline", "none", "--methods", "gradcam,ltpa,channels",
            "--k", "2", "--dpi", "30"]


def test_read_pairs_formats_comments_header_and_relative_paths(tmp_path):
    f = tmp_path / "pairs.csv"
    f.write_text("image1,image2\n# a comment\n\na.png, b.png\nsub/c.png\t/abs/d.png\n\"e f.png\",g.png\nh.png i.png\n")
    assert read_pairs(f) == [(str(tmp_path / "a.png"), str(tmp_path / "b.png")),
                             (str(tmp_path / "sub/c.png"), "/abs/d.png"),
                             (str(tmp_path / "e f.png"), str(tmp_path / "g.png")),
                             (str(tmp_path / "h.png"), str(tmp_path / "i.png"))]


@pytest.mark.parametrize("text,message", [
    ("a.png\n", "line 1: expected two image paths, got 1 fields"),
    ("a.png,b.png,c.png\n", "line 1: expected two image paths, got 3 fields"),
    ("# only comments\n", "no pairs"),
    ("a.png b.png\n" * (MAX_PAIRS + 1), f"more than {MAX_PAIRS} pairs"),
])
def test_read_pairs_refuses_bad_files(tmp_path, text, message):
    f = tmp_path / "pairs.txt"
    f.write_text(text)
    with pytest.raises(UserError, match=message):
        read_pairs(f)
    with pytest.raises(UserError, match="not found"):
        read_pairs(tmp_path / "missing.txt")


def test_width_argument():
    assert figure_width("single") == "single" and figure_width("4.5") == 4.5
    for bad in ("wide", "1", "30", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            figure_width(bad)


def test_view_choices_are_the_render_vocabulary(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "a", "b", "--out", "f.png", "--view", "nope"])
    err = capsys.readouterr().err
    assert all(v in err for v in VIEWS)


def test_single_width_figure_is_one_column_wide(tiny, tmp_path):
    root, ckpt = tiny
    out = tmp_path / "fig.png"
    assert main(_argv(ckpt, str(root / "a.png"), str(root / "b.png"), "--out", str(out), "--width", "single")) == 0
    with Image.open(out) as im:
        assert im.size[0] == round(3.3 * 30)  # 3.3 in at 30 dpi


def test_pairs_file_makes_one_figure_with_a_row_per_pair(tiny, tmp_path, capsys):
    root, ckpt = tiny
    pairs = root / "pairs.txt"
    pairs.write_text("a.png b.png\nb.png c.png\nc.png a.png\n")
    one, three = tmp_path / "one.png", tmp_path / "three.png"
    assert main(_argv(ckpt, str(root / "a.png"), str(root / "b.png"), "--out", str(one), "--view", "cams")) == 0
    capsys.readouterr()
    assert main(_argv(ckpt, "--pairs", str(pairs), "--out", str(three), "--view", "cams")) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed[:3]] == [
        f"{root}/a.png / {root}/b.png", f"{root}/b.png / {root}/c.png", f"{root}/c.png / {root}/a.png"]
    assert printed[-1] == f"wrote {three}"
    with Image.open(one) as a, Image.open(three) as b:
        assert b.size[0] == a.size[0] and b.size[1] > 2.5 * a.size[1] * 0.8  # three rows of the same width


def test_pairs_refusals(tiny, tmp_path, capsys):
    root, ckpt = tiny
    pairs = root / "pairs2.txt"
    pairs.write_text("a.png b.png\n")

    def refused(*rest):
        assert main(_argv(ckpt, *rest)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
        return err[0]

    before = (root / "a.png").read_bytes()
    assert "is the input file" in refused("--pairs", str(pairs), "--out", str(root / "a.png"))
    assert (root / "a.png").read_bytes() == before
    odd = root / "list.png"  # a pairs file the figure would replace
    odd.write_text("a.png b.png\n")
    assert "(--pairs)" in refused("--pairs", str(odd), "--out", str(odd))
    assert odd.read_text() == "a.png b.png\n"
    assert "either two images or --pairs" in refused(str(root / "a.png"), str(root / "b.png"), "--pairs", str(pairs),
                                                     "--out", str(tmp_path / "f.png"))
    assert "take one pair" in refused("--pairs", str(pairs), "--json", str(tmp_path / "e.json"),
                                      "--out", str(tmp_path / "f.png"))
    assert "two images" in refused("--out", str(tmp_path / "f.png"))
    assert "no a2 maps" in refused(str(root / "a.png"), str(root / "b.png"), "--view", "a2",
                                   "--out", str(tmp_path / "f.png"))
