"""The app with a dataset atlas: it opens one, refuses a stale one, and the Dataset tab's map,
confusion, disagreements, ranked pairs and picker choose the pair (AppTest, tiny checkpoints)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.app_helpers import app_test, ok as _ok

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")


@pytest.fixture(scope="module")
def atlas_dir(assets, tmp_path_factory):
    from apinet.atlas import build_atlas

    out = tmp_path_factory.mktemp("atlas") / "synth"
    build_atlas("synthbirds", assets["checkpoints"] / "apinet_synthbirds.safetensors",
                assets["checkpoints"] / "baseline_synthbirds.safetensors", out, limit=40, progress=False)
    return out


def _atlas(folder):
    from apinet.atlas import Atlas

    return Atlas.open(folder)


# ---------------------------------------------------------------------------------------- pure parts


def test_map_click_takes_a_row_of_this_atlas_and_a_slot(atlas_dir):
    from app.atlas_map import map_click

    atlas = _atlas(atlas_dir)
    assert map_click({"row": 7, "slot": "b"}, atlas) == ("b", 7)
    assert map_click({"row": "12", "slot": "a"}, atlas) == ("a", 12)
    assert map_click({"row": len(atlas), "slot": "a"}, atlas) is None  # not a row
    assert map_click({"row": -1, "slot": "a"}, atlas) is None
    assert map_click({"row": 3, "slot": "c"}, atlas) is None
    assert map_click({"row": None, "slot": "a"}, atlas) is None
    assert map_click([3], atlas) is None


def _unpack(payload):
    import base64

    points = payload["points"]
    xy = np.frombuffer(base64.b64decode(points["xy"]), "<u2").reshape(-1, 2)
    return xy, np.frombuffer(base64.b64decode(points["colour"]), np.uint8), \
        np.frombuffer(base64.b64decode(points["label"]), "<u2")


def test_map_points_are_packed_once_with_their_shape_and_colours(atlas_dir):
    from app.atlas_map import COLOURS, points_payload

    atlas = _atlas(atlas_dir)
    payload = points_payload(atlas, "class")
    assert points_payload(atlas, "class") is payload  # made once per atlas and colouring
    xy, colour, labels = _unpack(payload)
    assert len(xy) == len(colour) == len(labels) == payload["n"] == len(atlas)
    # one scale for both axes: the layout's aspect ratio survives the packing (to 1/65535)
    span = atlas.xy.max(0) - atlas.xy.min(0)
    packed = (xy.max(0) - xy.min(0)).astype(float)
    assert packed.max() == 65535
    assert packed[0] / packed[1] == pytest.approx(span[0] / span[1], rel=1e-3)
    order = np.argsort(atlas.xy[:, 0])
    assert np.all(np.diff(xy[order, 0].astype(int)) >= 0)  # the packing keeps the order of positions
    assert np.array_equal(labels, np.where(atlas.labelled, atlas.labels, 65535))
    assert np.array_equal(colour, atlas.labels % len(atlas.class_names))
    assert len(payload["palette"]) == 256 and len(set(payload["palette"][:len(atlas.class_names)])) == len(atlas.class_names)
    # correctness: 1 right, 0 wrong, drawn wrong-last; OOD: 0..254 from the lowest to the highest score
    right = _unpack(points_payload(atlas, "apinet"))[1]
    assert np.array_equal(right, atlas.correct("apinet").astype(np.uint8))
    assert points_payload(atlas, "apinet")["points"]["order"] == [255, 1, 0]
    scores = atlas.column("ood").astype(float)
    assert np.all(_unpack(points_payload(atlas, "ood"))[1][~np.isfinite(scores)] == 255)  # no score: grey
    demo = _atlas(ROOT / "assets" / "atlas")  # the shipped atlas has every OOD score
    ood, scores = _unpack(points_payload(demo, "ood"))[1], demo.column("ood").astype(float)
    assert ood[np.argmin(scores)] == 0 and ood[np.argmax(scores)] == 254 and np.all(ood < 255)
    assert np.all(np.diff(ood[np.argsort(scores)].astype(int)) >= 0)
    disagree = _unpack(points_payload(atlas, "disagree"))[1]
    assert np.array_equal(disagree, atlas.predictions("apinet") != atlas.predictions("baseline"))
    assert len({points_payload(atlas, m)["key"] for m in COLOURS}) == len(COLOURS)


def test_map_marks_and_hover_card(atlas_dir):
    import base64
    import io

    from PIL import Image

    from app.atlas_map import hover_card, marks_of

    atlas = _atlas(atlas_dir)
    assert marks_of(atlas, {}) == {"a": -1, "b": -1, "intra": -1, "inter": -1}
    marks = marks_of(atlas, {"a": 4, "b": 9})
    assert marks == {"a": 4, "b": 9, "intra": int(atlas.column("intra")[4]), "inter": int(atlas.column("inter")[4])}
    assert atlas.labels[marks["intra"]] == atlas.labels[4] != atlas.labels[marks["inter"]]
    card = hover_card(atlas, 5)
    assert card["row"] == 5 and card["id"] == atlas.column("id")[5]
    head, data = card["thumb"].split(",", 1)
    assert head == "data:image/webp;base64"
    assert Image.open(io.BytesIO(base64.b64decode(data))).format == "WEBP"
    names = atlas.class_names
    assert card["preds"] == (f"API-Net: {names[atlas.predictions('apinet')[5]]} · "
                             f"baseline: {names[atlas.predictions('baseline')[5]]}")


def test_confusion_click_opens_a_misclassified_image_beside_the_nearest_of_the_other_class(atlas_dir):
    from app.tabs.dataset_tables import confusion_click, pair_of_row

    atlas = _atlas(atlas_dir)
    wrong = np.flatnonzero(atlas.labelled & ~atlas.correct("apinet"))
    row = int(wrong[0])
    c, d = int(atlas.labels[row]), int(atlas.predictions("apinet")[row])
    a, b = confusion_click([{"x": d, "y": c, "customdata": {"0": c}}], atlas, "apinet")
    assert atlas.labels[a] == c and atlas.predictions("apinet")[a] == d and atlas.labels[b] == d
    assert confusion_click([{"x": c, "y": c}], atlas, "apinet") is None  # the diagonal opens nothing
    assert confusion_click([{"x": "nan?"}], atlas, "apinet") is None
    assert pair_of_row(atlas, row) == (row, int(atlas.column("inter")[row]))


# ---------------------------------------------------------------------------------------- the app


def _app(atlas_dir, monkeypatch, env):
    monkeypatch.setenv("APINET_ATLAS_DIR", str(atlas_dir))
    return app_test()


def _open_dataset(at, view: str | None = None):
    from app.tabs import TAB_KEY

    at.session_state[TAB_KEY] = "Dataset"
    if view:
        at.session_state["dview"] = view
    at.run()
    _ok(at)
    return at


@pytest.mark.slow
def test_app_opens_the_atlas_and_every_dataset_view(atlas_dir, monkeypatch, env):
    atlas = _atlas(atlas_dir)
    at = _app(atlas_dir, monkeypatch, env).run()
    _ok(at)
    ids = set(atlas.column("id"))
    assert at.session_state.a[2:] in ids and at.session_state.b[2:] in ids  # the pair comes from the atlas
    assert at.sidebar.selectbox(key="atlas").value == "auto"
    _open_dataset(at)
    text = " ".join(c.value for c in at.caption)
    assert "40 images" in text and "20 classes" in text
    assert at.query_params["tab"] == "dataset" and at.query_params["dview"] == "map"
    for view in ("confusion", "disagree", "pairs", "browse"):
        _open_dataset(at, view)
        assert at.query_params["dview"] == view
    _open_dataset(at, "pairs")
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == min(50, int((atlas.column("inter") >= 0).sum()))


@pytest.mark.slow
def test_picker_pages_searches_and_sets_the_pair(atlas_dir, monkeypatch, env):
    atlas = _atlas(atlas_dir)
    at = _open_dataset(_app(atlas_dir, monkeypatch, env).run(), "browse")
    assert sum(b.key.startswith("dpick_a_") for b in at.button) == 24  # one page of 40
    at.number_input(key="dpick_page").set_value(2).run()
    _ok(at)
    assert sum(b.key.startswith("dpick_a_") for b in at.button) == 16
    at.button(key="dpick_b_30").click().run()
    _ok(at)
    assert at.session_state.b == "g:" + atlas.column("id")[30] and at.query_params["b"] == atlas.column("id")[30]
    # search by class: only that class's images are offered
    name = atlas.class_names[3]
    at.selectbox(key="dpick_class").set_value(name).run()
    rows = [int(b.key.rsplit("_", 1)[1]) for b in at.button if b.key.startswith("dpick_a_")]
    assert rows and all(atlas.labels[r] == 3 for r in rows) and len(rows) == int((atlas.labels == 3).sum())
    at.button(key=f"dpick_a_{rows[-1]}").click().run()
    _ok(at)
    assert at.session_state.a == "g:" + atlas.column("id")[rows[-1]]
    assert r"\[A\] " in " ".join(c.value for c in at.caption)  # the current A is marked (escaped Markdown)


@pytest.mark.slow
def test_link_restores_the_atlas_pair_and_view(atlas_dir, monkeypatch, env):
    atlas = _atlas(atlas_dir)
    at = _app(atlas_dir, monkeypatch, env)
    at.query_params.update({"a": atlas.column("id")[11], "b": atlas.column("id")[22], "tab": "dataset",
                            "dview": "confusion", "dcolour": "ood"})
    at.run()
    _ok(at)
    assert at.session_state.a == "g:" + atlas.column("id")[11] and at.session_state.b == "g:" + atlas.column("id")[22]
    assert at.session_state.dview == "confusion" and at.session_state.dcolour == "ood"


@pytest.mark.slow
def test_stale_atlas_refused_in_one_line_and_the_gallery_still_works(atlas_dir, monkeypatch, env, tmp_path):
    import json
    import shutil

    stale = tmp_path / "stale"
    shutil.copytree(atlas_dir, stale)
    manifest = json.loads((stale / "manifest.json").read_text())
    manifest["checkpoints"]["apinet"]["sha256"] = "f" * 64
    (stale / "manifest.json").write_text(json.dumps(manifest))
    at = _app(stale, monkeypatch, env).run()
    _ok(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "stale atlas" in errors[0] and "\n" not in errors[0]
    assert at.session_state.a.startswith("g:test_")  # the gallery, explained as before
    _open_dataset(at)
    assert any("python -m apinet atlas" in c.value for c in at.code)


@pytest.mark.slow
def test_without_an_atlas_of_these_checkpoints_the_tab_says_how_to_build_one(env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120).run()  # the shipped atlas is of the demo checkpoints
    _ok(at)
    assert not at.error
    _open_dataset(at)
    assert any("python -m apinet atlas" in c.value for c in at.code)
    assert at.button(key="datlas_build").label.startswith("Build the demo atlas now")  # demo-named checkpoints


@pytest.mark.slow
def test_partner_buttons_use_the_atlas_partners(atlas_dir, monkeypatch, env):
    atlas = _atlas(atlas_dir)
    at = _app(atlas_dir, monkeypatch, env).run()
    a = atlas.index_of[at.session_state.a[2:]]
    at.button(key="btn_inter").click().run()
    _ok(at)
    assert at.session_state.b == "g:" + atlas.column("id")[atlas.column("inter")[a]]
    at.button(key="btn_intra").click().run()
    _ok(at)
    assert at.session_state.b == "g:" + atlas.column("id")[atlas.column("intra")[a]]


@pytest.mark.slow
def test_demo_atlas_built_from_the_app_opens_on_the_next_run(env, tmp_path, monkeypatch):
    """The button builds the test split's atlas (800 images, as it says) into the runs folder, and the
    next run opens it. Here the build keeps the split's first 120 images (its ``limit``), the same
    code path at a seventh of the cost."""
    import functools

    from streamlit.testing.v1 import AppTest

    import apinet.atlas
    from apinet.data import SynthBirds

    monkeypatch.setenv("APINET_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=600).run()
    _open_dataset(at)
    assert f"{len(SynthBirds(split='test'))} images" in at.button(key="datlas_build").label
    monkeypatch.setattr(apinet.atlas, "build_atlas", functools.partial(apinet.atlas.build_atlas, limit=120))
    at.button(key="datlas_build").click().run()
    _ok(at)
    built = list((tmp_path / "runs").glob("atlas-demo-*/manifest.json"))
    assert len(built) == 1
    assert len(_atlas(built[0].parent)) == 120
    assert at.session_state.a[2:].startswith("test/")  # the pair now comes from the new atlas
    assert "120 images" in " ".join(c.value for c in at.caption)


def test_unlabelled_atlas_images_have_no_label_in_the_picker(tmp_path, assets):
    from apinet.atlas import build_atlas
    from apinet.data import SynthBirds
    from app.atlas_source import AtlasGallery

    data = SynthBirds(split="test", image_size=64)
    for folder, index in (("Red-crowned Finch", 0), ("Purple Penguin", 1)):
        (tmp_path / "data" / folder).mkdir(parents=True)
        data.load_pil(index).save(tmp_path / "data" / folder / "img_000.png")
    build_atlas(str(tmp_path / "data"), assets["checkpoints"] / "apinet_synthbirds.safetensors",
                assets["checkpoints"] / "baseline_synthbirds.safetensors", tmp_path / "atlas", unlabelled=True,
                progress=False)
    gallery = AtlasGallery(_atlas(tmp_path / "atlas"))
    penguin = gallery.get("Purple Penguin/img_000.png")
    finch = gallery.get("Red-crowned Finch/img_000.png")
    assert penguin.label is None and penguin.class_name == "Purple Penguin (unlabelled)"  # explained as an upload
    assert finch.label == 0 and finch.class_name == "Red-crowned Finch"


@pytest.mark.slow
def test_dataset_tab_is_drawn_before_the_pair_is_explained(atlas_dir, monkeypatch, env):
    """The Dataset tab never reads the explanation: the page draws it first, so a map click shows
    before the new pair is explained, and the map stays usable when an explanation fails."""
    from app import resources

    def fail(*args, **kwargs):
        raise RuntimeError("the model is away")

    at = _app(atlas_dir, monkeypatch, env).run()
    _ok(at)
    monkeypatch.setattr(resources, "explain", fail)
    _open_dataset(at)
    assert any("Could not explain this pair: the model is away" in e.value for e in at.error)
    assert any(c.value.startswith("Atlas of **synthbirds**") for c in at.caption)  # the tab is there all the same
    assert at.radio(key="dcolour").value == "class"
    from app.tabs import TAB_KEY

    at.session_state[TAB_KEY] = "Walk-through"  # a tab that needs the explanation stays empty
    at.run()
    assert not any(c.value.startswith("Atlas of") for c in at.caption)
    assert any("Could not explain this pair" in e.value for e in at.error)
