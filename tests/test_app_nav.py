"""The link holds the whole view, the controls people look for, and the classroom bound on model runs.

AppTest on the tiny checkpoints of ``tests/app_checkpoints.py`` (see tests/test_app.py).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.app_helpers import send_label
from tests.test_app import _app, _calls, _gallery, _label_of, _ok, _open, _png

pytestmark = pytest.mark.slow


def _text(at) -> str:
    return " ".join(m.value for m in at.markdown)


def _class_names(env) -> list[str]:
    import json

    return json.loads((env["gallery"] / "gallery.json").read_text())["classes"]


# --- the link ----------------------------------------------------------------------------------


def test_link_holds_the_open_tab_as_its_slug(env):
    at = _app().run()
    _ok(at)
    assert at.query_params["tab"] == "walkthrough"
    _open(at, "LTPA attention")
    assert at.query_params["tab"] == "ltpa"
    _open(at, "A² maps")
    assert at.query_params["tab"] == "a2"


def test_link_opens_its_tab_with_its_settings(env):
    entries = _gallery(env)
    a, b = Path(entries[2]["file"]).stem, Path(entries[9]["file"]).stem
    at = _app()
    at.query_params.update({"a": a, "b": b, "tab": "ltpa", "cmap": "magma", "k": "3", "scope": "map",
                            "clip": "97.5", "layer": "layer3", "ta": "4", "rank": "contribution"})
    at.run()
    _ok(at)
    from app.tabs import TAB_KEY

    s = at.session_state
    assert s[TAB_KEY] == "LTPA attention"
    assert "LTPA: where the global descriptor looks" in _text(at) and "How API-Net compares" not in _text(at)
    assert (s.cmap, s.k, s.scope, s.clip, s.layer, s.ta, s.rank) == ("magma", 3, "map", 97.5, "layer3", 4,
                                                                       "contribution")
    assert at.selectbox(key="_explain_as_a").value == 4
    assert "clipped at the 2.5th / 97.5th percentiles" in " ".join(c.value for c in at.caption)
    # the link is written back unchanged (the view it restores is the view it shows)
    for key, value in {"tab": "ltpa", "cmap": "magma", "k": "3", "clip": "97.5", "layer": "layer3", "ta": "4",
                       "rank": "contribution", "a": a}.items():
        assert at.query_params[key] == value, key
    assert not at.info  # both images came from the gallery: nothing to say about the link


@pytest.mark.parametrize("tab", [None, "no-such-tab", "Mutual & gates"])
def test_link_without_a_known_tab_opens_the_default_tab(env, tab):
    at = _app()
    at.query_params.update({"k": "4"} | ({"tab": tab} if tab else {}))
    at.run()
    _ok(at)
    assert "How API-Net compares this pair" in _text(at)
    assert at.query_params["tab"] == "walkthrough" and at.session_state.k == 4


def test_old_links_still_parse(env):
    """A link written before tabs, reference classes, layers and clipping were in it."""
    entries = _gallery(env)
    a = Path(entries[4]["file"]).stem
    at = _app()
    at.query_params.update({"a": a, "b": Path(entries[5]["file"]).stem, "k": "2", "cmap": "turbo",
                            "alpha": "0.30", "scope": "pair", "stage": "layer4", "cam": "gradcam", "rank": "gate"})
    at.run()
    _ok(at)
    s = at.session_state
    assert (s.a, s.k, s.clip, s.layer, s.ta, s.tb) == ("g:" + a, 2, 100.0, "layer4", None, None)
    assert "ta" not in at.query_params and "clip" in at.query_params


def test_link_whose_image_was_an_upload_says_so(env):
    entries = _gallery(env)
    at = _app()
    at.query_params.update({"b": Path(entries[3]["file"]).stem, "k": "3", "tab": "gates"})
    at.run()
    _ok(at)
    notes = [i.value for i in at.info]
    assert notes == ["This link's image A was an upload, which links cannot carry; showing a gallery image "
                     "instead."]
    assert at.session_state.b == "g:" + Path(entries[3]["file"]).stem
    # a fresh visit (no parameters) has nothing to explain
    fresh = _app().run()
    assert not fresh.info
    # an image that is not in this gallery
    gone = _app()
    gone.query_params.update({"a": Path(entries[0]["file"]).stem, "b": "deleted-image", "k": "3"})
    gone.run()
    assert [i.value for i in gone.info] == ["This link's image B is not in this gallery; showing a gallery image "
                                            "instead."]
    # the note goes once the person picks another pair
    at.button(key="btn_random").click().run()
    while (at.session_state.a, at.session_state.b) == (at.session_state["_link_pair"]):
        at.button(key="btn_random").click().run()
    assert not any("upload" in i.value for i in at.info)


# --- controls -------------------------------------------------------------------------------------


def test_reference_class_selectors_change_the_targets_and_the_link(env):
    names = _class_names(env)
    at = _app().run()
    _ok(at)
    label_a, label_b = _label_of(env, at.session_state.a), _label_of(env, at.session_state.b)
    box = at.selectbox(key="_explain_as_a")
    assert box.label == "Explain A as (✓ label)" and box.value == label_a
    assert at.selectbox(key="_explain_as_b").value == label_b
    assert "ta" not in at.query_params  # the default is not written
    assert f"A → **{names[label_a]}**".replace("-", "\\-") in _text(at)
    before = _calls()
    other = (label_a + 7) % len(names)
    box.set_value(other).run()
    _ok(at)
    assert _calls() == before + 1  # a reference class is a model-run setting
    assert at.query_params["ta"] == str(other) and at.session_state.ta == other
    assert f"A → **{names[other]}**".replace("-", "\\-") in _text(at)
    assert f"A → **{names[label_a]}**".replace("-", "\\-") not in _text(at)
    assert any(c.value.startswith("Targets: chosen under Explain A / B as.") for c in at.caption)
    # back to the default: the link forgets it
    at.selectbox(key="_explain_as_a").set_value(label_a).run()
    assert "ta" not in at.query_params and _calls() == before + 1  # the default pair is still cached
    # a new image A starts at its own label
    at.selectbox(key="_explain_as_a").set_value(other).run()
    at.button(key="btn_swap").click().run()
    _ok(at)
    assert at.selectbox(key="_explain_as_a").value == label_b and "ta" not in at.query_params


def test_a_stale_label_from_the_browser_still_names_its_class(env):
    """The browser may send back the label it shows instead of an index. After a new image A the ✓
    moves, so a label from before ("Name ✓") is no longer an option and Streamlit passes the text
    through; that text reached ``ta`` and stopped the page (TypeError, seen in Chromium). It names
    the class it shows."""
    names = _class_names(env)
    at = _app().run()
    box = at.selectbox(key="_explain_as_a")
    label_a = box.value
    stale = box.options[label_a]
    assert stale == f"{names[label_a]} ✓"
    at.button(key="btn_swap").click().run()  # A is now B's image, of another class: the ✓ moves
    _ok(at)
    box = at.selectbox(key="_explain_as_a")
    assert box.value != label_a and stale not in box.options

    send_label(box, stale)
    at.run()
    _ok(at)
    assert at.session_state.ta == label_a and at.query_params["ta"] == str(label_a)
    assert at.selectbox(key="_explain_as_a").value == label_a
    assert f"A → **{names[label_a]}**".replace("-", "\\-") in _text(at)


def test_upload_defaults_to_the_prediction_and_can_be_overridden(env):
    from app import resources

    at = _app().run()
    at.file_uploader(key="upload_a").set_value(("blue.png", _png(), "image/png")).run()
    _ok(at)
    expl_pred = at.selectbox(key="_explain_as_a").value
    found, _ = resources.discover_checkpoints(env["checkpoints"].as_posix(), env["runs"].as_posix())
    ckpt = next(c for c in found if c.label == "demo: apinet_synthbirds")
    import hashlib

    data = _png()
    assert expl_pred == resources.predicted_class(ckpt.path, ckpt.sha256, hashlib.sha256(data).hexdigest(), data)
    options = at.selectbox(key="_explain_as_a").options
    names = _class_names(env)
    assert options[expl_pred] == f"{names[expl_pred]} ✓"
    assert [o for o in options if o.endswith(" ✓")] == [options[expl_pred]]
    assert at.selectbox(key="_explain_as_b").options[_label_of(env, at.session_state.b)].endswith(" ✓")
    # overriding an upload's class explains it as that class
    other = (expl_pred + 1) % len(names)
    at.selectbox(key="_explain_as_a").set_value(other).run()
    _ok(at)
    assert f"A → **{names[other]}**".replace("-", "\\-") in _text(at)
    assert at.query_params["ta"] == str(other) and "a" not in at.query_params


def test_cam_layer_and_contribution_ranking_run_the_model_once_each(env):
    at = _app().run()
    _ok(at)
    assert at.sidebar.selectbox(key="layer").options == ["layer4", "layer3", "layer2", "layer1"]
    assert at.sidebar.selectbox(key="layer").value == "layer4"
    before = _calls()
    at.sidebar.selectbox(key="layer").set_value("layer3").run()
    _ok(at)
    assert _calls() == before + 1 and at.query_params["layer"] == "layer3"
    _open(at, "Grad-CAM")
    assert _calls() == before + 1
    assert "exact contribution W(1+g)x" in at.sidebar.selectbox(key="rank").options
    at.sidebar.selectbox(key="rank").set_value("contribution").run()
    _ok(at)
    assert _calls() == before + 2 and at.query_params["rank"] == "contribution"
    _open(at, "Top-k channels")
    assert at.query_params["tab"] == "channels"
    assert "contribution W[c,k] (1 + g) x" in _text(at)


def test_clip_changes_the_colour_scale_without_running_a_model(env):
    import numpy as np

    from app.tabs import common

    at = _app().run()
    _open(at, "LTPA attention")
    captions = " ".join(c.value for c in at.caption)
    assert "clipped" not in captions
    before = _calls()
    at.sidebar.slider(key="clip").set_value(95.0).run()
    _ok(at)
    assert _calls() == before and at.query_params["clip"] == "95"
    assert "clipped at the 5th / 95th percentiles" in " ".join(c.value for c in at.caption)
    # the setting reaches apinet.render: ranges are the percentiles, not min / max
    assert common.DisplaySettings(3, "viridis", 0.5, "map", "layer4", "gradcam").percentile is None
    settings = common.DisplaySettings(3, "viridis", 0.5, "map", "layer4", "gradcam", clip=95.0)
    assert settings.percentile == 95.0
    from apinet.render.scales import scope_ranges

    m = np.arange(100, dtype=np.float32).reshape(10, 10)
    assert scope_ranges([[m]], "map", percentile=settings.percentile)[0][0] == pytest.approx((4.95, 94.05))


# --- first screen, gallery, uploads -------------------------------------------------------------


def test_first_screen_names_the_gallery_and_says_where_to_start(env):
    at = _app().run()
    _ok(at)
    captions = [c.value for c in at.caption]
    assert any(c.startswith("**Start here:**") for c in captions)
    # the gallery browser draws nothing until it is opened
    assert not any(b.key.startswith("set_a_") for b in at.button)
    at.session_state["browse_open"] = True
    at.run()
    n = len(_gallery(env))
    caption = next(c for c in (c.value for c in at.caption) if "images of" in c)
    assert caption.startswith(f"SynthBirds demo gallery, {n} images of 20 classes")
    assert str(env["gallery"]) not in " ".join(c.value for c in at.caption)
    assert sum(b.key.startswith("set_a_") for b in at.button) == n


def test_refused_upload_leaves_an_empty_uploader(env):
    at = _app().run()
    at.file_uploader(key="upload_a").set_value(("broken.png", b"\x89PNG\r\n\x1a\n nope", "image/png")).run()
    _ok(at)
    assert len(at.error) == 1
    keys = [u.key for u in at.get("file_uploader")]
    assert "upload_a" not in keys and "upload_a_1" in keys  # a fresh uploader: the refused file is gone
    assert at.file_uploader(key="upload_a_1").value is None
    at.file_uploader(key="upload_a_1").set_value(("blue.png", _png(), "image/png")).run()
    _ok(at)
    assert at.session_state.a.startswith("u:")


# --- the classroom bound --------------------------------------------------------------------------


def _request(env, i: int, j: int):
    from app import resources

    gallery = resources.load_gallery(env["gallery"].as_posix())
    found, _ = resources.discover_checkpoints(env["checkpoints"].as_posix(), env["runs"].as_posix())
    ckpt = next(c for c in found if c.label == "demo: apinet_synthbirds")
    a, b = gallery.items[i], gallery.items[j]
    return resources.ExplainRequest(ckpt.path, ckpt.sha256, None, None, a.sha256, b.sha256, (a.label, b.label),
                                    "gate"), a.data, b.data


def _hold_gate(release: threading.Event, held: threading.Event):
    from app import resources

    def run():
        with resources.RUN_GATE.queue():
            held.set()
            release.wait(30)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert held.wait(10)
    return thread


def test_a_run_waits_for_a_free_slot_and_a_hit_never_waits(env):
    from app import resources

    request, da, db = _request(env, 1, 6)
    cached = resources.explain(request, da, db)  # now a hit
    release, held = threading.Event(), threading.Event()
    holder = _hold_gate(release, held)
    waits, done = [], {}
    assert resources.RUN_GATE.ahead() == 1
    tic = time.perf_counter()
    hit = resources.explain(request, da, db, on_wait=waits.append)  # a hit: no wait at all
    assert hit.targets == cached.targets and (hit.gate1 == cached.gate1).all()
    assert waits == [] and time.perf_counter() - tic < 1.0
    miss, dma, dmb = _request(env, 2, 7)
    before = _calls()
    worker = threading.Thread(target=lambda: done.setdefault("expl", resources.explain(miss, dma, dmb,
                                                                                        on_wait=waits.append)))
    worker.start()
    time.sleep(0.5)
    assert waits == [1] and "expl" not in done and _calls() == before  # queued behind the holder
    assert resources.RUN_GATE.ahead() == 2  # one running, one waiting
    release.set()
    worker.join(60)
    holder.join(10)
    assert done["expl"].targets == (miss.targets[0], miss.targets[1]) and _calls() == before + 1
    assert resources.RUN_GATE.ahead() == 0


def test_the_page_shows_the_waiting_state_then_the_explanation(env, monkeypatch):
    from app import main

    labels = []
    original = main._waiting_label
    monkeypatch.setattr(main, "_waiting_label", lambda n: labels.append(original(n)) or original(n))
    at = _app().run()
    _ok(at)
    release, held = threading.Event(), threading.Event()
    holder = _hold_gate(release, held)
    threading.Timer(1.0, release.set).start()
    at.button(key="btn_random").click().run()  # a new pair: a miss that has to wait
    while at.session_state.get("_waited_for") is None and not release.is_set():
        at.button(key="btn_random").click().run()
    holder.join(10)
    _ok(at)
    assert labels == ["Waiting for the model (1 run ahead)…"]
    assert "after waiting for 1 run ahead" in at.status[0].label
    assert "How API-Net compares this pair" in _text(at)


def test_link_with_settings_but_no_images_says_both_were_uploads(env):
    at = _app()
    at.query_params.update({"cmap": "magma", "tab": "cam"})
    at.run()
    _ok(at)
    assert [i.value for i in at.info] == ["This link's images A and B were uploads, which links cannot carry; "
                                          "showing gallery images instead."]
    assert at.session_state.cmap == "magma" and at.query_params["tab"] == "cam"


def test_clip_caption_uses_ordinals():
    from app.tabs.common import ordinal, scope_caption

    assert [ordinal(v) for v in (1, 2, 3, 4, 11, 12, 13, 21, 22, 97.5, 98, 100)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "97.5th", "98th", "100th"]
    assert scope_caption("pair", 98.0).endswith("clipped at the 2nd / 98th percentiles.")
    assert "clipped" not in scope_caption("pair", 100.0)


def test_explanation_cache_is_bounded_in_bytes_and_env_numbers_are_checked(monkeypatch):
    """The explanation cache's bound is bytes (256 MB by default), not a count a classroom's stream of
    new pairs runs through; settings from the environment are clamped and a bad one falls back."""
    from app import resources

    assert resources.EXPLANATION_CACHE_MB == 256
    assert resources._explain_cached._info.max_size_bytes == 256 * 1024 * 1024
    monkeypatch.setenv("APINET_X", "not a number")
    assert resources._env_int("APINET_X", 7, 1, 9) == 7
    monkeypatch.setenv("APINET_X", "500")
    assert resources._env_int("APINET_X", 7, 1, 9) == 9
    monkeypatch.setenv("APINET_X", "0")
    assert resources._env_int("APINET_X", 7, 1, 9) == 1
    monkeypatch.delenv("APINET_X")
    assert resources._env_int("APINET_X", 7, 1, 9) == 7
