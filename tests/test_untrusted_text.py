"""Untrusted text is text: hostile class names in a model card and a gallery.json, and malformed cards
in the runs folder, never take the app down and never reach the page as Markdown, HTML or LaTeX."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from app.text import html_text, md, plotly_text

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "[click me](http://evil.example/)",
    "![pic](http://evil.example/p.png)",
    "$q^{99}$ **bold** :red[red]",
    '<iframe src="http://evil.example"></iframe>',
]


def test_md_escapes_every_markup_character():
    assert md("<img src=x onerror=alert(1)>") == r"&lt;img src\=x onerror\=alert\(1\)&gt;"
    # a bare URL or address gets an invisible word joiner (U+2060): GFM would link it whatever is escaped
    assert md("[a](http://e.x)") == "\\[a\\]\\(http\u2060\\://e\\.x\\)"
    assert md("www.e.x a@e.x") == "www\u2060\\.e\\.x a@\u2060e\\.x"
    assert md("$x$ *y* `z` #h a_b ~s~ |t|") == r"\$x\$ \*y\* \`z\` \#h a\_b \~s\~ \|t\|"
    assert md("two\nlines\t here") == "two lines here"  # no new Markdown block can start
    assert md(3) == "3" and md("Black-footed Albatross") == r"Black\-footed Albatross"
    assert html_text('<b a="1">') == "&lt;b a=&quot;1&quot;&gt;"
    assert plotly_text("<a href='x'>y</a>") == "&lt;a href=&#x27;x&#x27;&gt;y&lt;/a&gt;"


@pytest.fixture(scope="module")
def hostile_env(tmp_path_factory):
    return make_hostile_assets(tmp_path_factory.mktemp("hostile"))


def make_hostile_assets(root: Path) -> dict[str, Path]:
    """The app's tiny assets with hostile names in the card and gallery.json, plus malformed cards."""
    from tests.app_checkpoints import make_app_assets

    assets = make_app_assets(root)
    for card_path in assets["checkpoints"].glob("*.json"):
        card = json.loads(card_path.read_text())
        card["class_names"][: len(HOSTILE)] = HOSTILE
        card_path.write_text(json.dumps(card))
    manifest = assets["gallery"] / "gallery.json"
    meta = json.loads(manifest.read_text())
    meta["classes"][: len(HOSTILE)] = HOSTILE
    for entry in meta["images"]:
        if entry["label"] < len(HOSTILE):
            entry["class_name"] = HOSTILE[entry["label"]]
    meta["images"].append({"file": "../../outside.png", "label": 0})  # outside the gallery: skipped
    manifest.write_text(json.dumps(meta))

    weights = assets["runs"] / "ltpa-run" / "best.safetensors"
    good = json.loads(weights.with_suffix(".json").read_text())
    bad_cards = {
        "list": [good],
        "string": "a card",
        "config": {**good, "config": "resnet18"},
        "huge": {**{k: v for k, v in good.items() if k != "class_names"}, "num_classes": 30_000_000},
        "intnames": {**good, "class_names": list(range(1, 21))},  # valid: numbers become text
    }
    for name, card in bad_cards.items():
        folder = assets["runs"] / name
        folder.mkdir()
        shutil.copy(weights, folder / "best.safetensors")
        (folder / "best.json").write_text(json.dumps(card))
    return assets


@pytest.fixture()
def app(hostile_env, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("APINET_CHECKPOINT_DIR", str(hostile_env["checkpoints"]))
    monkeypatch.setenv("APINET_RUNS_DIR", str(hostile_env["runs"]))
    monkeypatch.setenv("APINET_GALLERY_DIR", str(hostile_env["gallery"]))
    torch.set_num_threads(1)
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["browse_open"] = True  # the gallery browser (thumbnail captions) draws only when open
    # a pair of class 0 and class 1 (the landing pair is chosen by mechanism strength, any classes)
    at.session_state["a"], at.session_state["b"] = "g:test_0000_red-crowned-finch", "g:test_0001_golden-crowned-finch"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _markdown_sources(at) -> list[str]:
    """Every string the page hands to Streamlit's Markdown renderer."""
    texts = [e.value for kind in ("markdown", "caption", "warning", "error", "info", "success") for e in getattr(at, kind)]
    texts += [caption for image in at.get("image") for caption in image.captions]  # image captions are Markdown
    texts += [button.help or "" for button in at.button]  # tooltips are Markdown
    assert any("Fork\\-tailed Flycatcher" in text for text in texts)  # gallery captions are collected
    return texts


def test_hostile_class_names_reach_the_page_only_escaped(app):
    sources = _markdown_sources(app)
    page = "\n".join(sources)
    # the pair is a gallery image of class 0 and one of class 1: both names are on the page
    for name in HOSTILE[:2]:
        assert md(name) in page, name
    for name in HOSTILE:
        assert name not in page
    # nothing a Markdown/HTML renderer would turn into an element or math
    assert not re.search(r"<(img|iframe|a)\b", page, re.I)
    assert not re.search(r"(?<!\\)\]\(", page)  # a link or image target: ](
    assert not re.search(r"(?<!\\)\$q", page)  # math
    # the gallery entry pointing outside its folder was skipped, with a note
    assert any(w.value == md("1 gallery.json entry skipped (bad or missing file, label or class name)")
               for w in app.warning)
    # Plotly labels (top-5 chart) carry the names as entities, never as tags
    from app.tabs import TAB_KEY, TABS

    app.session_state[TAB_KEY] = "Predictions"  # only the open tab runs
    app.run()
    charts = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    app.session_state[TAB_KEY] = TABS[0].label
    app.run()
    labels = [y for chart in charts for trace in chart.get("data", []) for y in trace.get("y", []) or []
              if isinstance(y, str)]
    assert labels and not any("<img" in y or "<iframe" in y for y in labels)


def test_malformed_cards_are_skipped_with_a_note_and_integer_names_work(app, hostile_env):
    options = app.sidebar.selectbox(key="ckpt").options
    assert "runs/intnames/best" in options
    assert not any(o.startswith(("runs/list", "runs/string", "runs/config", "runs/huge")) for o in options)
    expander = [e for e in app.sidebar.expander if e.label == "4 checkpoint(s) skipped"]
    assert len(expander) == 1
    notes = [c.value for c in expander[0].caption]
    runs = hostile_env["runs"]
    assert notes == [
        md(f"{runs}/config/best.json: model card's 'config' is not an object"),
        md(f"{runs}/huge/best.json: model card's num_classes must be an integer from 1 to 100000, got 30000000"),
        md(f"{runs}/list/best.json: model card is a JSON list, not an object"),
        md(f"{runs}/string/best.json: model card is a JSON str, not an object"),
    ]
    app.sidebar.selectbox(key="ckpt").set_value("runs/intnames/best").run()
    assert not app.exception, [e.message for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    summary = " ".join(m.value for m in app.markdown)
    assert "A → **1**, B → **2**" in summary  # the card's integer names 1..20, shown as text


def test_upload_whose_model_input_would_be_huge_is_refused_with_a_message(app):
    """8 x 400000 px decodes within the 64 MP cap, but its resize before the crop would be 205 MP."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 400_000), (90, 120, 30)).save(buffer, "PNG")
    app.file_uploader(key="upload_a").set_value(("tall.png", buffer.getvalue(), "image/png")).run()
    assert not app.exception, [e.message for e in app.exception]
    errors = [e.value for e in app.error]
    assert errors == ["Could not explain this pair: " + md(
        "image 8x400000 (aspect ratio 50000:1) would be resized to 64x3200000 = 205 MP before the 64 px centre "
        "crop (limit 32 MP); crop it closer to the subject")]
    app.button(key="btn_swap").click().run()  # the page keeps working
    assert not app.exception
