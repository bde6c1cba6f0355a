"""Bring your own model in the app (issue #24, items 2-4): only compatible baselines are offered, the
others are listed with the reason; a checkpoint written while the app runs is listed on the next
rerun; the sidebar imports a classifier as the baseline and offers it in the same run."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from torchvision import models

import apinet
from apinet.backbones import expected_weights_path
from apinet.data import SynthBirds
from apinet.importers import import_classifier
from tests.app_helpers import app_test, ok as _ok

pytestmark = pytest.mark.slow

DEMO_BASE = "demo: baseline_synthbirds"
NAMES = list(SynthBirds.CLASSES)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """The app test assets plus the two baselines the issue saw offered: a 20-class ResNet-18 whose maps
    are coarser than API-Net's, and the 1000-class ImageNet EfficientNet-Lite0."""
    from tests.app_checkpoints import INPUT_SIZE, make_app_assets

    found = make_app_assets(tmp_path_factory.mktemp("byom"))
    torch.manual_seed(5)
    coarse = apinet.Baseline("resnet18", num_classes=len(NAMES), output_stride=32).eval()
    apinet.save_checkpoint(coarse, found["runs"] / "r18-os32.safetensors", class_names=NAMES,
                           preprocess={"input_size": INPUT_SIZE, "resize": INPUT_SIZE})
    import_classifier(expected_weights_path("efficientnet_lite0"), found["runs"] / "lite0-imagenet.safetensors",
                      input_size=INPUT_SIZE, resize=INPUT_SIZE)
    return found


def _app():
    return app_test(timeout=180)


def _plain(markdown: str) -> str:
    """The text a reader sees: app.text.md's backslash escapes removed."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def _captions(at) -> list[str]:
    return [_plain(c.value) for c in at.sidebar.caption]


def test_only_compatible_baselines_are_offered_and_the_others_are_listed_with_the_reason(env):
    at = _app().run()
    _ok(at)
    assert at.selectbox(key="base").options == ["none", DEMO_BASE]
    assert at.selectbox(key="base").value == DEMO_BASE
    captions = _captions(at)
    assert "runs/r18-os32: maps 2×2 (resnet18, output stride 32), API-Net's are 4×4 at 64 px" in captions
    assert ("runs/lite0-imagenet: other classes: 1000 classes (tench, goldfish, ...), API-Net has 20 classes "
            f"({NAMES[0]}, {NAMES[1]}, ...)") in captions
    # No line appears only after an incompatible baseline is picked: there is none to pick.
    assert not [w for w in at.warning if "baseline left out" in w.value]
    from app import resources
    from app.baselines import is_offered

    found, _ = resources.discover_checkpoints(str(env["checkpoints"]), str(env["runs"]))
    by_label = {c.label: c for c in found}
    apinet_ckpt = by_label["demo: apinet_synthbirds"]
    assert [label for label, c in by_label.items() if c.architecture == "baseline" and is_offered(apinet_ckpt, c)] \
        == [DEMO_BASE]


def test_a_shared_link_naming_an_incompatible_baseline_falls_back_to_a_compatible_one(env):
    at = _app()
    at.query_params["base"] = "runs/lite0-imagenet"
    at.run()
    _ok(at)
    assert at.selectbox(key="base").value == DEMO_BASE


def test_a_checkpoint_written_while_the_app_runs_is_listed_on_the_next_rerun(env):
    at = _app().run()
    _ok(at)
    assert "runs/late/best" not in at.selectbox(key="base").options
    torch.manual_seed(6)
    late = env["runs"] / "late" / "best.safetensors"
    model = apinet.Baseline("resnet18", num_classes=len(NAMES), output_stride=16).eval()
    apinet.save_checkpoint(model, late, class_names=NAMES, preprocess={"input_size": 64, "resize": 64})
    try:
        at.run()
        _ok(at)
        assert "runs/late/best" in at.selectbox(key="base").options
        late.unlink()
        late.with_suffix(".json").unlink()
        at.run()
        _ok(at)
        assert "runs/late/best" not in at.selectbox(key="base").options
    finally:
        for path in (late, late.with_suffix(".json")):
            if path.exists():
                path.unlink()


def test_fingerprint_changes_with_every_checkpoint_or_card_written(tmp_path):
    from app.resources import checkpoint_fingerprint

    demo, runs = tmp_path / "demo", tmp_path / "runs"
    (runs / "a" / "b").mkdir(parents=True)
    demo.mkdir()
    (runs / "a" / "b" / "log.txt").write_text("x")
    (demo / "nested").mkdir()
    (demo / "nested" / "x.safetensors").write_bytes(b"x")  # the demo folder is read at its top level only
    empty = checkpoint_fingerprint(str(demo), str(runs))
    assert empty == ()
    weights = runs / "a" / "b" / "best.safetensors"
    weights.write_bytes(b"12345")
    one = checkpoint_fingerprint(str(demo), str(runs))
    assert [(Path(p).name, size) for p, _, size in one] == [("best.safetensors", 5)]
    weights.with_suffix(".json").write_text("{}")
    two = checkpoint_fingerprint(str(demo), str(runs))
    assert len(two) == 2
    os.utime(weights, ns=(1, 1))
    assert checkpoint_fingerprint(str(demo), str(runs)) != two
    assert checkpoint_fingerprint(str(tmp_path / "missing"), str(tmp_path / "missing")) == ()


def test_sidebar_imports_a_classifier_from_the_server_and_offers_it_in_the_same_run(env, tmp_path):
    src = tmp_path / "resnet18_finetuned.pth"
    torch.manual_seed(7)
    torch.save(models.resnet18(num_classes=len(NAMES)).state_dict(), src)
    at = _app().run()
    _ok(at)
    at.radio(key="_imp_source").set_value("server").run()
    at.selectbox(key="_imp_arch").set_value("resnet18")
    at.text_input(key="_imp_path").set_value(str(src))
    at.text_input(key="_imp_name").set_value("r18-finetuned")
    at.button(key="_imp_go").click().run()
    _ok(at)
    out = env["runs"] / "imported" / "r18-finetuned.safetensors"
    try:
        assert out.is_file() and out.with_suffix(".json").is_file()
        base = at.selectbox(key="base")
        assert base.options == ["none", DEMO_BASE, "runs/imported/r18-finetuned"]
        assert base.value == "runs/imported/r18-finetuned"  # chosen in the run that imported it
        captions = _captions(at)
        assert "architecture: resnet18 with 20 outputs (torchvision layout)" in captions
        assert "every tensor found its place, with the right shape and finite values" in captions
        card = apinet.load_card(out)
        assert card["class_names"] == NAMES and card["config"]["output_stride"] == 16
        assert card["preprocess"]["input_size"] == 64
        # The explanation uses it: the pair is explained with this baseline.
        assert not at.error, [e.value for e in at.error]
        # A second import under the same name is refused in one line; nothing is overwritten.
        sha = card["weights_sha256"]
        at.button(key="_imp_go").click().run()
        _ok(at)
        errors = [_plain(e.value) for e in at.sidebar.error]
        assert errors == ["runs/imported/r18-finetuned exists already: choose another name under Save as"]
        assert apinet.load_card(out)["weights_sha256"] == sha
    finally:
        for path in (out, out.with_suffix(".json")):
            if path.exists():
                path.unlink()


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_an_uploaded_pickle_with_code_is_refused_in_one_line_and_never_run(env, tmp_path):
    import io

    marker = tmp_path / "PWNED"
    buffer = io.BytesIO()
    torch.save({"fc.weight": torch.zeros(2, 2), "hook": _Payload(marker)}, buffer)
    at = _app().run()
    _ok(at)
    at.radio(key="_imp_source").set_value("upload").run()
    at.file_uploader(key="_imp_upload").set_value(("evil.pth", buffer.getvalue(), "application/octet-stream"))
    at.run()
    at.button(key="_imp_go").click().run()
    _ok(at)
    errors = [_plain(e.value) for e in at.sidebar.error]
    assert errors == ["evil.pth: refused: it references posix.system, which is code, not a tensor or plain "
                      "container; nothing in it was executed (only weights_only loading is allowed)"]
    assert not marker.exists()
    assert not (env["runs"] / "imported" / "evil.safetensors").exists()
    assert at.selectbox(key="base").options == ["none", DEMO_BASE]


def test_a_refused_server_file_is_named_without_its_folder(env, tmp_path):
    src = tmp_path / "secret-folder" / "vit.pth"
    src.parent.mkdir()
    torch.save({"patch_embed.proj.weight": torch.zeros(4, 3, 2, 2)}, src)
    at = _app().run()
    at.radio(key="_imp_source").set_value("server").run()
    at.text_input(key="_imp_path").set_value(str(src))
    at.button(key="_imp_go").click().run()
    _ok(at)
    errors = [_plain(e.value) for e in at.sidebar.error]
    assert len(errors) == 1 and errors[0].startswith("vit.pth: unrecognised key layout for --format auto")
    assert "secret-folder" not in errors[0]


def test_installed_lite0_imports_and_is_listed_as_not_offered_with_the_reason(env):
    at = _app().run()
    _ok(at)
    at.radio(key="_imp_source").set_value("lite").run()
    at.selectbox(key="_imp_lite").set_value("efficientnet_lite0")  # default names: API-Net's do not fit 1000
    at.button(key="_imp_go").click().run()
    _ok(at)
    out = env["runs"] / "imported" / "efficientnet_lite0-imagenet.safetensors"
    try:
        assert out.is_file()
        assert at.selectbox(key="base").options == ["none", DEMO_BASE]
        assert any(c.startswith("runs/imported/efficientnet_lite0-imagenet: other classes: 1000 classes (tench, ")
                   for c in _captions(at))
        assert apinet.load_card(out)["class_names"][281] == "tabby"
        # Progress and outcome name the package's file, never the server folder it lives in.
        captions = _captions(at)
        assert "read 296 tensors from efficientnet-lite0-57934424.pth (weights only: nothing in the file runs)" \
            in captions
        assert not any("site-packages" in c for c in captions)
    finally:
        for path in (out, out.with_suffix(".json")):
            if path.exists():
                path.unlink()
