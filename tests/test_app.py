"""The Streamlit app through ``streamlit.testing.v1.AppTest``: every view and flow, on tiny checkpoints.

The app reads its checkpoint and gallery folders from environment variables, so these tests point it
at randomly initialised ResNet-18 checkpoints with a 64 px input (see ``tests/app_checkpoints.py``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.app_helpers import app_test, ok as _ok, open_tab as _open


pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TABS = ["Walk-through", "Mutual & gates", "What if?", "Top-k channels", "LTPA attention", "Grad-CAM", "A² maps",
        "Exact maps", "Why A, not B", "Where does it match?", "Predictions", "Export", "Dataset"]


_app = app_test


def _calls() -> int:
    from app import resources

    return resources.EXPLAIN_CALLS.value


def _gallery(assets):
    import json

    return json.loads((assets["gallery"] / "gallery.json").read_text())["images"]


def _label_of(assets, ref: str) -> int:
    name = ref.removeprefix("g:")
    return next(e["label"] for e in _gallery(assets) if Path(e["file"]).stem == name)


def _png(colour=(30, 140, 200), size=80) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_first_run_renders_every_view(env):
    at = _app().run()
    _ok(at)
    assert [t.label for t in at.tabs] == TABS
    headings = ("How API-Net compares this pair", "Mutual vector and gates", "What if? Change the pair", "Top-5 channels",
                "LTPA: where the global descriptor looks", "class activation maps", "A²: double-attention",
                "Exact maps: where each pair-path logit", "Why A, not B?", "Where does it match?", "Predictions",
                "Export", "The dataset through both models")
    # Only the open tab runs: the first run draws the walk-through and none of the other views.
    text = " ".join(m.value for m in at.markdown)
    assert headings[0] in text and not any(h in text for h in headings[1:])
    walkthrough_latex = len(at.latex)
    for label, heading in zip(TABS, headings):
        _open(at, label)
        text = " ".join(m.value for m in at.markdown)
        assert heading in text, heading
        assert [h for h in headings if h in text] == [heading], label
    _open(at, TABS[0])
    assert len(at.latex) == walkthrough_latex
    assert len(at.latex) >= 9  # the walk-through's equations, with live numbers
    assert any("\\sigma(x_m \\odot x_1)" in eq.value for eq in at.latex)
    assert at.session_state.a.startswith("g:") and at.session_state.b.startswith("g:")
    # The state is mirrored in the URL from the first run on.
    assert at.query_params["a"] == at.session_state.a[2:] and at.query_params["k"] == "5"
    assert at.sidebar.selectbox(key="ckpt").value == "demo: apinet_synthbirds"
    assert "runs/ltpa-run/best" in at.sidebar.selectbox(key="ckpt").options


def test_missing_checkpoints_say_how_to_create_them(tmp_path, monkeypatch):
    from app import config

    monkeypatch.setenv("APINET_CHECKPOINT_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("APINET_RUNS_DIR", str(tmp_path / "none-either"))
    at = _app().run()
    _ok(at)
    assert "No API-Net checkpoint found" in at.error[0].value
    assert any(config.TRAIN_COMMAND in c.value for c in at.code)


def test_swap_and_random_pair(env):
    at = _app().run()
    a, b = at.session_state.a, at.session_state.b
    at.button(key="btn_swap").click().run()
    _ok(at)
    assert (at.session_state.a, at.session_state.b) == (b, a)
    assert at.query_params["a"] == b[2:] and at.query_params["b"] == a[2:]
    at.button(key="btn_random").click().run()
    _ok(at)
    assert at.session_state.a != at.session_state.b


def test_pick_from_gallery_and_suggest_partners(env):
    at = _app().run()
    assert not any(b.key.startswith("set_a_") for b in at.button)  # the closed browser draws no thumbnails
    at.session_state["browse_open"] = True
    at.run()
    entries = _gallery(env)
    target = Path(entries[5]["file"]).stem
    at.button(key=f"set_a_{target}").click().run()
    _ok(at)
    assert at.session_state.a == "g:" + target

    at.button(key="btn_intra").click().run()
    _ok(at)
    assert at.session_state.b != at.session_state.a
    assert _label_of(env, at.session_state.b) == _label_of(env, at.session_state.a)
    assert "same-class (intra)" in at.info[0].value

    at.button(key="btn_inter").click().run()
    _ok(at)
    assert _label_of(env, at.session_state.b) != _label_of(env, at.session_state.a)
    assert "other-class (inter)" in at.info[0].value


def test_suggested_partner_is_the_nearest_by_pooled_features(env):
    """The suggestion is apinet.mine_pairs on the gallery's pooled features (the paper's construction)."""
    import torch

    import apinet
    from apinet.data import Preprocess, load_image

    at = _app().run()
    at.button(key="btn_inter").click().run()
    model, card = apinet.load_model(env["checkpoints"] / "apinet_synthbirds.safetensors")
    pre = Preprocess.from_dict(card["preprocess"])
    entries = _gallery(env)
    batch = torch.stack([pre(load_image(env["gallery"] / e["file"])) for e in entries])
    with torch.no_grad():
        feats = model.pool_features(model.forward_features(batch))
    labels = torch.tensor([e["label"] for e in entries])
    _, inter = apinet.mine_pairs(feats, labels)
    index = [Path(e["file"]).stem for e in entries].index(at.session_state.a[2:])
    assert at.session_state.b[2:] == Path(entries[int(inter[index])]["file"]).stem


def test_display_controls_rerender_without_running_a_model(env):
    at = _app().run()
    _ok(at)
    before = _calls()
    at.sidebar.selectbox(key="cmap").set_value("inferno").run()
    at.sidebar.slider(key="k").set_value(3).run()
    at.sidebar.slider(key="alpha").set_value(0.8).run()
    at.sidebar.radio(key="scope").set_value("models").run()
    at.sidebar.selectbox(key="cam").set_value("gradcam++").run()
    at.sidebar.selectbox(key="stage").set_value("layer3").run()
    _ok(at)
    assert _calls() == before
    _open(at, "Top-k channels")
    assert _calls() == before
    assert "Top-3 channels" in " ".join(m.value for m in at.markdown)
    assert at.query_params["cmap"] == "inferno" and at.query_params["scope"] == "models"
    # A setting that changes what the model computes does run it (once).
    at.sidebar.selectbox(key="rank").set_value("gate_x_activation").run()
    _ok(at)
    assert _calls() == before + 1


def test_url_restores_pair_and_settings(env):
    entries = _gallery(env)
    a, b = Path(entries[7]["file"]).stem, Path(entries[12]["file"]).stem
    at = _app()
    at.query_params.update({"a": a, "b": b, "k": "2", "cmap": "turbo", "alpha": "0.30", "scope": "map",
                            "stage": "layer3", "cam": "layercam", "rank": "gate"})
    at.run()
    _ok(at)
    state = at.session_state
    assert (state.a, state.b, state.k, state.cmap, state.alpha, state.scope, state.stage, state.cam) == (
        "g:" + a, "g:" + b, 2, "turbo", 0.3, "map", "layer3", "layercam")
    assert at.query_params["a"] == a and at.query_params["k"] == "2"


def test_url_with_invalid_values_falls_back_to_defaults(env):
    at = _app()
    at.query_params.update({"a": "no-such-image", "k": "99", "cmap": "rainbow", "alpha": "x", "scope": "?"})
    at.run()
    _ok(at)
    assert at.session_state.k == 5 and at.session_state.cmap == "viridis" and at.session_state.scope == "pair"
    assert at.session_state.a != "g:no-such-image"


def test_bad_upload_gives_one_line_message_and_the_app_keeps_running(env):
    at = _app().run()
    a = at.session_state.a
    at.file_uploader(key="upload_a").set_value(("broken.png", b"\x89PNG\r\n\x1a\n not an image", "image/png")).run()
    _ok(at)
    messages = [e.value for e in at.error]
    # the file name and reason are escaped for Markdown (app.text.md): they render literally
    assert len(messages) == 1 and messages[0].startswith(r"Upload refused — broken\.png\: not an image")
    assert "\n" not in messages[0] and "Traceback" not in messages[0]
    assert at.session_state.a == a  # nothing replaced the image
    assert len(at.tabs) == len(TABS)


def test_uploaded_pair_is_explained_with_predicted_targets(env):
    at = _app().run()
    at.file_uploader(key="upload_a").set_value(("blue.png", _png(), "image/png")).run()
    at.file_uploader(key="upload_b").set_value(("orange.png", _png((230, 120, 20)), "image/png")).run()
    _ok(at)
    assert at.session_state.a.startswith("u:") and at.session_state.b.startswith("u:")
    assert not at.error
    assert "API-Net's predictions (uploads have no label)" in " ".join(c.value for c in at.caption)
    # Uploads never travel in the URL; the rest of the state does.
    assert "a" not in at.query_params and "k" in at.query_params
    # The paper's pair construction also works for an uploaded A (its predicted class).
    at.button(key="btn_inter").click().run()
    _ok(at)
    assert at.session_state.b.startswith("g:")


def test_sessions_do_not_share_choices(env):
    first, second = _app().run(), _app().run()
    first.file_uploader(key="upload_a").set_value(("mine.png", _png(), "image/png")).run()
    first.sidebar.selectbox(key="cmap").set_value("magma").run()
    second.run()
    _ok(first)
    _ok(second)
    assert first.session_state.a.startswith("u:")
    assert second.session_state.a.startswith("g:") and second.session_state.cmap == "viridis"
    assert not any(o.startswith("u:") for o in second.selectbox(key="a").options)


def test_exported_figures_and_arrays(env):
    """The export tab's download payloads: PDF, SVG and PNG figures, NPZ arrays and JSON."""
    import json

    from app import picker, resources
    from app.tabs import common, export

    at = _app().run()
    _ok(at)
    gallery = resources.load_gallery(env["gallery"].as_posix())
    found, _ = resources.discover_checkpoints(env["checkpoints"].as_posix(), env["runs"].as_posix())
    ckpt = next(c for c in found if c.label == "demo: apinet_synthbirds")
    item_a, item_b = gallery.items[0], gallery.items[3]
    request = resources.ExplainRequest(ckpt.path, ckpt.sha256, None, None, item_a.sha256, item_b.sha256,
                                       (item_a.label, item_b.label), "gate")
    expl = resources.explain(request, item_a.data, item_b.data)
    chosen = [picker.ChosenImage("g:" + i.id, i.id, i.data, i.sha256, i.label, i.class_name) for i in (item_a, item_b)]
    ctx = common.Context(expl, common.DisplaySettings(3, "viridis", 0.5, "pair", "layer4", "gradcam"),
                        chosen[0], chosen[1], ckpt, None)
    assert export.figure_bytes(ctx, "channels", "pdf", 150).startswith(b"%PDF")
    assert b"<svg" in export.figure_bytes(ctx, "summary", "svg", 150)[:2000]
    png = export.figure_bytes(ctx, "cams", "png", 100)
    assert png.startswith(b"\x89PNG") and Image.open(io.BytesIO(png)).size[0] > 200
    with np.load(io.BytesIO(export.npz_bytes(expl))) as arrays:
        assert arrays["gate1"].shape == expl.gate1.shape
    assert json.loads(expl.to_json())["targets"] == [item_a.label, item_b.label]


@pytest.mark.parametrize("pair", [("test_0000_red-crowned-finch", "test_0001_golden-crowned-finch"),
                                  ("test_0002_double-barred-finch", "test_0003_golden-double-barred-finch"),
                                  ("test_0004_spectacled-finch", "test_0005_streaked-warbler")])
def test_gates_topk_and_walkthrough_show_the_explanations_own_numbers(pair, monkeypatch, tmp_path):
    """On the shipped demo checkpoint and gallery, the three places that name channels name the ones
    PairExplanation ranked, and the walk-through's scores are its numbers. (Re-sorting float32 gates
    in the UI, as it used to, picked other channels wherever gates saturate at exactly 1.0, as they did
    on the first demo checkpoint; tests/test_explain.py covers those ties.)"""
    import json
    import re

    from apinet.data import load_image
    from apinet.explain import explain_pair, load_pair_models, preprocess_from_card

    monkeypatch.setenv("APINET_CHECKPOINT_DIR", str(ROOT / "assets" / "checkpoints"))
    monkeypatch.setenv("APINET_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("APINET_GALLERY_DIR", str(ROOT / "assets" / "gallery"))
    at = _app()
    # "atlas": "none": these ids are the gallery's, not the demo atlas's
    at.query_params.update({"a": pair[0], "b": pair[1], "k": "5", "rank": "gate", "atlas": "none"})
    at.run()
    _ok(at)
    labels = {e["file"][:-4]: e["label"] for e in json.loads((ROOT / "assets/gallery/gallery.json").read_text())["images"]}
    model, card, baseline, _ = load_pair_models()
    images = [load_image(ROOT / "assets" / "gallery" / f"{name}.png") for name in pair]
    e = explain_pair(model, *images, baseline, k=10, cam_methods=(), preprocess=preprocess_from_card(card),
                     targets=(labels[pair[0]], labels[pair[1]]))
    k = 5
    # walk-through: the top channel of each gate and the four scores
    latex = " ".join(eq.value for eq in at.latex)
    assert re.search(r"g_1\[(\d+)\]", latex).group(1) == str(e.gate_order1[0])
    assert re.search(r"g_2\[(\d+)\]", latex).group(1) == str(e.gate_order2[0])
    for value in (e.p_self1, e.p_other1, e.p_self2, e.p_other2, e.rank_term1 + e.rank_term2):
        assert f"{value:.3f}" in latex
    # "Mutual & gates": the labelled top-k dots
    _open(at, "Mutual & gates")
    spec = json.loads(next(c for c in at.get("plotly_chart") if "top-k of g" in c.proto.spec).proto.spec)
    dots = {trace["name"]: {int(t) for t in trace["text"]} for trace in spec["data"] if trace.get("text")}
    assert dots["top-k of g₁"] == set(e.gate_order1[:k].tolist())
    assert dots["top-k of g₂"] == set(e.gate_order2[:k].tolist())
    # "Top-k channels": captions '#c · g₁ v', rows A and B of g₁'s set, then of g₂'s set
    _open(at, "Top-k channels")
    captions = [sub.caption for img in at.get("image") for sub in img.proto.imgs if sub.caption.startswith("#")]
    shown = [int(c[1:].split(" ")[0]) for c in captions]
    assert shown[:k] == shown[k:2 * k] == e.gate_order1[:k].tolist()
    assert shown[2 * k:3 * k] == e.gate_order2[:k].tolist()
    # the explanation's order is its ranking of z = x_m * x (what the app must not re-derive)
    z = e.mutual.astype(np.float64) * e.features1
    assert e.gate_order1[:k].tolist() == np.argsort(-z, kind="stable")[:k].tolist()
