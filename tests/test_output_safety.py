"""No user file lost: outputs that name an input are refused before any work, numeric flags are
range-checked, run folders are locked, and damaged inputs give one line (never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from apinet import APINet, Baseline, load_card, save_checkpoint
from apinet._io import OutputPathError, checkpoint_files, dataset_root, refuse_overwriting_inputs
from apinet.checkpoint import CheckpointError
from apinet.cli import main
from apinet.data import SynthBirds
from apinet.train import LOCK_FILE, STATE_FILE, _RunLock, build_config, train

ROOT = Path(__file__).resolve().parents[1]
NAMES = list(SynthBirds.CLASSES)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two images and tiny API-Net / baseline checkpoints (20 classes, ResNet-18)."""
    root = tmp_path_factory.mktemp("safety")
    for name, colour in (("a.png", (200, 30, 30)), ("b.png", (30, 30, 200))):
        Image.new("RGB", (40, 40), colour).save(root / name)
    torch.manual_seed(0)
    save_checkpoint(APINet("resnet18", 20).eval(), root / "m.safetensors", class_names=NAMES,
                    preprocess={"input_size": 32, "resize": 32}, dataset={"spec": "synthbirds"})
    save_checkpoint(Baseline("resnet18", 20).eval(), root / "base.safetensors", class_names=NAMES,
                    preprocess={"input_size": 32, "resize": 32})
    return root


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()}


def _refused(argv, capsys) -> str:
    """Run the CLI in-process; it must exit 2 with exactly one ``error:`` line on stderr."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# --- the shared helper -----------------------------------------------------------------------------


def test_helper_refuses_same_file_through_symlink_dotdot_and_hard_link(tmp_path):
    src = tmp_path / "photo.png"
    src.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(src)
    (tmp_path / "hard.png").hardlink_to(src)
    (tmp_path / "sub").mkdir()
    for out in (src, tmp_path / "link.png", tmp_path / "sub" / ".." / "photo.png", tmp_path / "hard.png"):
        with pytest.raises(OutputPathError, match=r"is the input file .*photo.png \(image1\); refusing"):
            refuse_overwriting_inputs({"--out": out}, {"image1": src})
    refuse_overwriting_inputs({"--out": tmp_path / "figure.png"}, {"image1": src})  # a new name is fine
    with pytest.raises(OutputPathError, match="--out and --json name the same file"):
        refuse_overwriting_inputs({"--out": tmp_path / "x.json", "--json": tmp_path / "x.json"}, {})
    with pytest.raises(OutputPathError, match="is a folder; give a file name"):
        refuse_overwriting_inputs({"--out": tmp_path / "sub"}, {})
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        refuse_overwriting_inputs({"--out": src}, {}, folders=["--out"])
    with pytest.raises(OutputPathError, match=r"inside the input folder .* \(--data\)"):
        refuse_overwriting_inputs({"--out": tmp_path / "sub" / "run"}, {"--data": tmp_path})
    assert checkpoint_files("r/best.json") == [Path("r/best.safetensors"), Path("r/best.json")]
    assert checkpoint_files("none") == [] and checkpoint_files(None) == []
    assert dataset_root("cub:/data/CUB") == Path("/data/CUB") and dataset_root("synthbirds:3") is None


# --- explain ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag,target,message", [
    ("--out", "a.png", r"--out .*a.png is the input file .*a.png \(image1\)"),
    ("--json", "m.json", r"--json .*m.json is the input file .*m.json \(--checkpoint\)"),
    ("--npz", "base.safetensors", r"--npz .*base.safetensors is the input file .*base.safetensors \(--baseline\)"),
])
def test_explain_refuses_outputs_onto_inputs(files, capsys, flag, target, message):
    before = _snapshot(files)
    argv = ["explain", str(files / "a.png"), str(files / "b.png"), "--checkpoint", str(files / "m.safetensors"),
            "--baseline", str(files / "base.safetensors"), "--out", str(files / "fig.png")]
    if flag == "--out":
        argv[-1] = str(files / target)
    else:
        argv += [flag, str(files / target)]
    import re

    assert re.search(message, _refused(argv, capsys))
    assert _snapshot(files) == before  # nothing written, nothing replaced


def test_explain_view_all_cannot_overwrite_an_input_either(files, capsys):
    # --view all writes <stem>_<view>.png: fig_summary.png here is an input image
    (files / "fig_summary.png").write_bytes((files / "a.png").read_bytes())
    try:
        line = _refused(["explain", str(files / "fig_summary.png"), str(files / "b.png"), "--view", "all",
                         "--out", str(files / "fig.png")], capsys)
        assert "fig_summary.png is the input file" in line
    finally:
        (files / "fig_summary.png").unlink()


# --- evaluate --------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv_tail,message", [
    (["--out", "m.safetensors"], "--out {root}/m.safetensors is the input file {root}/m.safetensors (--checkpoint)"),
    (["--out", "m.json"], "--out {root}/m.json is the input file {root}/m.json (--checkpoint)"),
    (["--export", "m.safetensors"], "--export {root}/m.safetensors is the input file {root}/m.safetensors (--checkpoint)"),
    (["--out", "e.json", "--export", "e.safetensors"], "--out and --export name the same file {root}/e.json"),
])
def test_evaluate_refuses_outputs_onto_its_checkpoint(files, capsys, argv_tail, message):
    before = _snapshot(files)
    tail = [str(files / t) if i % 2 else t for i, t in enumerate(argv_tail)]
    line = _refused(["evaluate", "--checkpoint", str(files / "m.safetensors"), *tail], capsys)
    assert line == "error: " + message.format(root=files) + (
        "" if "same file" in message else "; refusing to overwrite an input, choose another output name")
    assert _snapshot(files) == before
    assert load_card(files / "m.safetensors")["weights_dtype"] == "as trained"  # not re-exported as float16


@pytest.mark.parametrize("command,out,class_names,message", [
    ("import-classifier", "r18.safetensors", None,
     "--out {root}/r18.safetensors is the input file {root}/r18.safetensors (CHECKPOINT)"),
    ("import-classifier", "names.safetensors", "names.json",
     "--out {root}/names.json is the input file {root}/names.json (--class-names)"),
    ("import-official", "r18.safetensors", None,
     "--out {root}/r18.safetensors is the input file {root}/r18.safetensors (CHECKPOINT)"),
])
def test_imports_refuse_outputs_onto_their_inputs(tmp_path, capsys, command, out, class_names, message):
    from safetensors.torch import save_file
    import torchvision

    save_file(torchvision.models.resnet18(num_classes=3).state_dict(), str(tmp_path / "r18.safetensors"))
    (tmp_path / "names.json").write_text("a\nb\nc\n")
    before = _snapshot(tmp_path)
    argv = [command, str(tmp_path / "r18.safetensors"), "--out", str(tmp_path / out)]
    if class_names:
        argv += ["--class-names", str(tmp_path / class_names)]
    line = _refused(argv, capsys)
    assert line == "error: " + message.format(root=tmp_path) + (
        "; refusing to overwrite an input, choose another output name")
    assert _snapshot(tmp_path) == before


def test_evaluate_refuses_output_inside_the_dataset_folder(files, tmp_path, capsys):
    data = tmp_path / "CUB"
    data.mkdir()
    line = _refused(["evaluate", "--checkpoint", str(files / "m.safetensors"), "--data", f"cub:{data}",
                     "--out", str(data / "images.txt")], capsys)
    assert line.startswith(f"error: --out {data}/images.txt is inside the input folder {data} (--data)")


# --- evaluate-explanations -------------------------------------------------------------------------


def test_evaluate_explanations_refuses_to_overwrite_a_card_named_results(tmp_path, capsys):
    torch.manual_seed(0)
    save_checkpoint(APINet("resnet18", 20).eval(), tmp_path / "results.safetensors", class_names=NAMES)
    before = _snapshot(tmp_path)
    line = _refused(["evaluate-explanations", "--checkpoint", str(tmp_path / "results.safetensors"),
                     "--baseline", "none", "--pairs", "1", "--out", str(tmp_path)], capsys)
    assert line.startswith(f"error: --out {tmp_path}/results.json is the input file {tmp_path}/results.json "
                           "(--checkpoint)")
    assert _snapshot(tmp_path) == before
    line = _refused(["evaluate-explanations", "--baseline", "none", "--out",
                     str(tmp_path / "results.safetensors")], capsys)
    assert line == f"error: --out {tmp_path}/results.safetensors: is a file, not a folder"


# --- train -----------------------------------------------------------------------------------------


def _tiny(out, **overrides):
    flags = dict(model="baseline", backbone="resnet18", output_stride=32, data="synthbirds", image_size=32,
                 input_size=32, resize=32, test_resize=32, per_class=2, val_per_class=1, n_classes=4, n_samples=2,
                 epochs=1, max_steps=1, out=str(out), no_progress=True, workers=0, threads=1, log_every=1)
    return build_config({**flags, **overrides})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "done"
    train(_tiny(out))
    return out


def test_train_into_a_finished_run_without_resume_is_refused(finished_run, capsys):
    before = _snapshot(finished_run)
    line = _refused(["train", "--preset", "demo", "--out", str(finished_run), "--max-steps", "1"], capsys)
    assert line == (f"error: --out {finished_run} already holds a training run ({STATE_FILE}); continue it with "
                    f"--resume {finished_run} or choose a new folder")
    assert _snapshot(finished_run) == before  # best.safetensors and its card untouched


def test_train_refuses_inputs_as_outputs(finished_run, tmp_path, capsys):
    images = tmp_path / "birds"
    (images / "train" / "robin").mkdir(parents=True)
    line = _refused(["train", "--data", f"folder:{images}", "--out", str(images / "run")], capsys)
    assert line == (f"error: --out {images}/run/{STATE_FILE} is inside the input folder {images} (--data); "
                    "write outputs somewhere else")
    assert not (images / "run").exists()
    line = _refused(["train", "--out", str(finished_run / "best.safetensors")], capsys)
    assert line == f"error: --out {finished_run}/best.safetensors: is a file, not a folder"


@pytest.mark.slow
def test_second_train_on_a_locked_run_folder_stops_with_one_line(tmp_path):
    out = tmp_path / "busy"
    with _RunLock(out):  # a first training process holds the folder
        with pytest.raises(ValueError, match=r"^--out .*busy: another training process is writing to this run"):
            train(_tiny(out))
        proc = subprocess.run(
            [sys.executable, "-m", "apinet", "train", "--preset", "demo", "--max-steps", "1", "--out", str(out)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: --out {out}: another training process is writing to this run folder; "
                                   "wait for it to finish or choose another folder")
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # the refused runs wrote nothing


def test_a_failed_train_leaves_no_empty_run_folder(tmp_path):
    with pytest.raises(ValueError):
        train(_tiny(tmp_path / "new", data="cub:/nonexistent"))
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("content,message", [
    (b"garbage, not a zip", "damaged training state (UnpicklingError); resume from an intact copy or start a new run"),
    (b"PK\x03\x04" + b"\0" * 40, "damaged training state (RuntimeError: PytorchStreamReader failed"),
    (None, "not a training state (missing model, optimizer, scheduler, samplers, rng, epoch, best)"),
])
def test_resume_with_a_damaged_state_is_one_line(tmp_path, capsys, content, message):
    run = tmp_path / "run"
    run.mkdir()
    if content is None:
        torch.save({"step": 3}, run / STATE_FILE)
    else:
        (run / STATE_FILE).write_bytes(content)
    line = _refused(["train", "--resume", str(run)], capsys)
    assert line.startswith(f"error: --resume {run}/{STATE_FILE}: {message}")


def test_resume_with_a_non_object_recipe_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({}, run / STATE_FILE)
    (run / "config.json").write_text("[1, 2]")
    assert _refused(["train", "--resume", str(run)], capsys) == \
        f"error: --resume: the run's recipe {run}/config.json is not a JSON object"


# --- numeric flags ---------------------------------------------------------------------------------


@pytest.mark.parametrize("argv,message", [
    (["explain", "a", "b", "--out", "f.png", "--k", "0"], "argument --k: must be an integer from 1 to 64, got 0"),
    (["explain", "a", "b", "--out", "f.png", "--k", "100000"], "argument --k: must be an integer from 1 to 64, got 100000"),
    (["explain", "a", "b", "--out", "f.png", "--dpi", "100000"], "argument --dpi: must be an integer from 10 to 1200, got 100000"),
    (["explain", "a", "b", "--out", "f.png", "--alpha", "1.5"], "argument --alpha: must be a number from 0.0 to 1.0, got 1.5"),
    (["explain", "a", "b", "--out", "f.png", "--alpha", "nan"], "argument --alpha: must be a number from 0.0 to 1.0, got nan"),
    (["evaluate-explanations", "--out", "o", "--pairs", "0"], "argument --pairs: must be an integer from 1 to 100000, got 0"),
    (["evaluate-explanations", "--out", "o", "--steps", "1"], "argument --steps: must be an integer from 2 to 1000, got 1"),
    (["evaluate", "--checkpoint", "m", "--batch-size", "-1"], "argument --batch-size: must be an integer from 1 to 4096, got -1"),
    (["train", "--epochs", "0"], "argument --epochs: must be an integer from 1 to 100000, got 0"),
    (["train", "--lr", "0"], "argument --lr: must be a number > 0.0 and <= 10.0, got 0"),
    (["train", "--lr", "inf"], "argument --lr: must be a number > 0.0 and <= 10.0, got inf"),
    (["train", "--log-every", "0"], "argument --log-every: must be an integer from 1 to 1000000000, got 0"),
    (["train", "--input-size", "ten"], "argument --input-size: must be an integer from 16 to 1024, got 'ten'"),
])
def test_numeric_flags_out_of_range_are_one_line_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: {message}")


# --- malformed model cards -------------------------------------------------------------------------


@pytest.mark.parametrize("edit,message", [
    (lambda card: [card], "model card is a JSON list, not an object"),
    (lambda card: "card", "model card is a JSON str, not an object"),
    (lambda card: {**card, "config": "resnet"}, "model card's 'config' is not an object"),
    (lambda card: {**card, "num_classes": 30_000_000, "class_names": None},
     "model card's num_classes must be an integer from 1 to 100000, got 30000000"),
    (lambda card: {**card, "class_names": "abc"}, "model card's 'class_names' must be a list of at most 100000 names"),
    (lambda card: {**card, "class_names": [{"x": 1}]}, "model card's 'class_names' must hold names (text or numbers)"),
])
def test_malformed_cards_are_one_line_checkpoint_errors(files, tmp_path, edit, message):
    card = json.loads((files / "m.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps(edit(card)))
    with pytest.raises(CheckpointError) as caught:
        load_card(tmp_path / "m.safetensors")
    assert str(caught.value) == f"{tmp_path}/m.json: {message}"


def test_integer_class_names_become_text(files, tmp_path):
    card = json.loads((files / "m.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**card, "class_names": list(range(1, 21))}))
    assert load_card(tmp_path / "m.safetensors")["class_names"] == [str(i) for i in range(1, 21)]


def test_explain_with_a_non_object_card_is_one_line(files, tmp_path, capsys):
    (tmp_path / "m.safetensors").write_bytes((files / "m.safetensors").read_bytes())
    (tmp_path / "m.json").write_text("[]")
    line = _refused(["explain", str(files / "a.png"), str(files / "b.png"), "--checkpoint",
                     str(tmp_path / "m.safetensors"), "--baseline", "none", "--out", str(tmp_path / "f.png")], capsys)
    assert line == f"error: {tmp_path}/m.json: model card is a JSON list, not an object"


def test_output_that_is_a_folder_is_one_line(files, tmp_path, capsys):
    line = _refused(["explain", str(files / "a.png"), str(files / "b.png"), "--out", str(tmp_path)], capsys)
    assert line == f"error: --out must end in .pdf, .svg or .png, got {tmp_path.name}"
    (tmp_path / "fig.png").mkdir()
    line = _refused(["explain", str(files / "a.png"), str(files / "b.png"), "--out", str(tmp_path / "fig.png")],
                    capsys)
    assert line == f"error: --out {tmp_path}/fig.png: is a folder; give a file name"
    line = _refused(["evaluate", "--checkpoint", str(files / "m.safetensors"), "--out", str(tmp_path)], capsys)
    assert line == f"error: --out {tmp_path}: is a folder; give a file name"
