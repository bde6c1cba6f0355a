"""The app with a dataset atlas: it opens one, refuses a stale one, and the Dataset tab's map,
confusion, disagreements, ranked pairs and picker choose the pair (AppTest, tiny checkpoints)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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


def test_map_click_takes_the_first_atlas_point(atlas_dir):
    from app.tabs.dataset import map_click

    atlas = _atlas(atlas_dir)
    density = {"curve_number": 0, "x": 0.1, "y": 0.2}  # the density layer carries no row
    assert map_click([density, {"customdata": 7}], atlas, "b") == ("b", 7)
    assert map_click([{"customdata": [12, 3]}], atlas, "a") == ("a", 12)  # a partner line: its first point is A
    assert map_click([{"customdata": 999}], atlas, "a") is None  # not a row
    assert map_click([], atlas, "a") is None


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


def test_map_samples_points_and_keeps_the_pair():
    from apinet.atlas.query import map_density, map_sample

    rows = map_sample(100_000, 20_000, keep=np.array([99_999, 5]))
    assert len(rows) == 20_000 and len(np.unique(rows)) == 20_000 and {5, 99_999} <= set(rows.tolist())
    assert np.array_equal(map_sample(50, 20_000), np.arange(50))
    counts, cx, cy = map_density(np.random.default_rng(0).normal(size=(1000, 2)), bins=10)
    assert counts.sum() == 1000 and counts.shape == (10, 10) and len(cx) == len(cy) == 10


# ---------------------------------------------------------------------------------------- the app


def _app(atlas_dir, monkeypatch, env):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("APINET_ATLAS_DIR", str(atlas_dir))
    return AppTest.from_file(APP, default_timeout=120)


def _ok(at):
    assert not at.exception, [e.message + "\n" + "\n".join(e.stack_trace or []) for e in at.exception]


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
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("APINET_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=600).run()
    _open_dataset(at)
    at.button(key="datlas_build").click().run()
    _ok(at)
    built = list((tmp_path / "runs").glob("atlas-demo-*/manifest.json"))
    assert len(built) == 1
    assert len(_atlas(built[0].parent)) == 800
    assert at.session_state.a[2:].startswith("test/")  # the pair now comes from the new atlas
    assert "800 images" in " ".join(c.value for c in at.caption)


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
