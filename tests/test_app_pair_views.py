"""The pair-native tabs (Exact maps, Why A not B, Where does it match?), the walk-through's
ranking-loss sentence, the differing-part outline and the Export tab's views and multi-pair figure,
through ``streamlit.testing.v1.AppTest`` on the tiny checkpoints of ``tests/app_checkpoints.py``."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from tests.app_helpers import app_test, current_pair, explanation, ok as _ok, open_tab as _open, tab_context

pytestmark = pytest.mark.slow

SIBLINGS = ("test_0000_red-crowned-finch", "test_0001_golden-crowned-finch")  # differ in the crown only


def _app(a: str | None = None, b: str | None = None):
    return app_test(a=a, b=b) if a and b else app_test()


def _expl(at, env):
    return explanation(env, at)


def _captions(at) -> list[str]:
    return [c.value for c in at.caption]


def _image_captions(at) -> list[str]:
    return [sub.caption for img in at.get("image") for sub in img.proto.imgs]


def test_exact_tab_shows_the_explanations_logits(env):
    at = _open(_app(*SIBLINGS).run(), "Exact maps")
    e = _expl(at, env)
    text = " ".join(_captions(at))
    assert "Exact maps: where each pair-path logit comes from" in " ".join(m.value for m in at.markdown)
    for i in (1, 2):
        c = e.targets[i - 1]
        s, o = float(e.logits[f"{i}_self"][c]), float(e.logits[f"{i}_other"][c])
        bias = e.exact_cams[f"{i}_self"].offset
        mean = float(np.asarray(e.exact_cams[f"{i}_self"].raw, np.float64).mean())
        assert f"logit_self(c) = {s:.3f} (model: {s:.3f})" in text
        assert f"logit_other(c) = {o:.3f} (model: {o:.3f})" in text
        assert f"mean + bias = {mean:.3f} {'+' if bias >= 0 else '−'} {abs(bias):.3f}" in text
        assert f"logit_self − logit_other = {s - o:+.3f} (model: {s - o:+.3f})" in text
    # every number shown pairs a reconstruction with the model's own value, equal to 3 decimals
    pairs = re.findall(r"= (-?[+]?\d+\.\d{3}) \(model: (-?[+]?\d+\.\d{3})\)", text)
    assert len(pairs) == 6 and all(float(x) == float(y) for x, y in pairs)
    # six signed overlays, three per image, on symmetric ranges: per pair (the sidebar's default scope),
    # then per map
    from apinet.render import signed_scale
    from app.tabs.common import fmt_num

    def shown():
        return [c for c in _image_captions(at) if c.startswith(("self:", "other:", "contrast:"))]

    assert len(shown()) == 6
    for j, kind in enumerate(("self", "other", "contrast")):
        maps = [e.exact_cams[f"{i}_{kind}"].raw for i in (1, 2)]
        lo, hi = signed_scale(maps, "pair")
        assert lo == -hi and shown()[j].endswith(f"±{fmt_num(hi)}") and shown()[3 + j].endswith(f"±{fmt_num(hi)}")
    at.sidebar.radio(key="scope").set_value("map")
    at.run()
    _ok(at)
    for j, kind in enumerate(("self", "other", "contrast")):
        for i in (1, 2):
            m = float(np.max(np.abs(e.exact_cams[f"{i}_{kind}"].raw)))
            assert shown()[3 * (i - 1) + j].endswith(f"±{fmt_num(m)}")
    # the sidebar's clip slider acts here as on every map tab: the 95th percentile of |value| per map
    at.sidebar.slider(key="clip").set_value(95.0)
    at.run()
    _ok(at)
    for j, kind in enumerate(("self", "other", "contrast")):
        for i in (1, 2):
            lo, hi = signed_scale([e.exact_cams[f"{i}_{kind}"].raw], "map", percentile=95.0)
            assert shown()[3 * (i - 1) + j].endswith(f"±{fmt_num(hi)}")
    assert "clipped at the 5th / 95th percentiles" in " ".join(_captions(at))


def test_contrast_tab_names_the_classes_and_its_numbers_are_the_logit_differences(env):
    at = _open(_app(*SIBLINGS).run(), "Why A, not B")
    e = _expl(at, env)
    from app.text import md

    names = [md(e.class_names[t]) for t in e.targets]
    heads = " ".join(m.value for m in at.markdown)
    assert "Why A, not B?" in heads
    assert f"**A** · {names[0]} − {names[1]}" in heads and f"**B** · {names[1]} − {names[0]}" in heads
    text = " ".join(_captions(at))
    a, b = e.targets
    for model, logits in (("apinet", e.logits), ("baseline", e.baseline_logits)):
        assert f"{model}/test/class_contrast" in e.contrast_cams
        for i, (ca, cb) in ((1, (a, b)), (2, (b, a))):  # each column: its own class minus the other's
            diff = float(logits[f"{i}_test"][ca]) - float(logits[f"{i}_test"][cb])
            own, other = md(e.class_names[ca]), md(e.class_names[cb])
            assert f"logit[{own}] − logit[{other}] = {diff:+.3f} (model: {diff:+.3f})" in text
            assert f"mean + (b[{own}] − b[{other}]) = " in text
    assert "logit A − logit B" not in text and "b_A − b_B" not in text
    assert "API-Net · class contrast W[own] − W[other] · test path" in heads
    assert "Baseline · class contrast W[own] − W[other] · test path" in heads
    assert "red raises A over B" not in heads
    assert "API-Net · Finer-CAM · test path" in heads
    assert text.count("Finer-CAM (raw, ReLU'd)") == 4  # API-Net and baseline, A and B


def test_walkthrough_links_the_contrast_map_to_the_ranking_loss(env):
    at = _app(*SIBLINGS).run()
    _ok(at)
    e = _expl(at, env)
    c = e.targets[0]
    gap = float(e.logits["1_self"][c]) - float(e.logits["1_other"][c])
    text = " ".join(m.value for m in at.markdown)
    from app.numbers import signed_sig

    assert (f"averages logit_self − logit_other = {signed_sig(gap)} (p_self − p_other = "
            f"{signed_sig(e.p_self1 - e.p_other1)})") in text
    assert "the gap the ranking loss widens" in text


def test_cell_from_selection_maps_display_pixels_to_feature_cells():
    from app.tabs.correspondence import cell_from_selection

    expl = SimpleNamespace(unit_features1=np.zeros((4, 4, 8), np.float16), image1=np.zeros((64, 64, 3), np.uint8))
    assert cell_from_selection({"selection": {"points": [{"x": 40.0, "y": 8.0}]}}, expl) == (0, 2)
    assert cell_from_selection({"selection": {"points": [{"x": 63.9, "y": 63.9}]}}, expl) == (3, 3)
    assert cell_from_selection({"selection": {"points": [{"x": 999, "y": -5}]}}, expl) == (0, 3)  # clipped
    assert cell_from_selection({"selection": {"points": [{"y": 3}], "box": []}}, expl) is None
    assert cell_from_selection({"selection": {"points": []}}, expl) is None
    assert cell_from_selection(None, expl) is None
    # the first usable point wins
    sel = {"selection": {"points": [{"x": "nan", "y": 1}, {"x": 17, "y": 50}]}}
    assert cell_from_selection(sel, expl) == (3, 1)


def test_match_tab_shows_the_correspondence_of_the_picked_cell_and_is_fast(env):
    from apinet.explain import correspondence_map

    at = _open(_app(*SIBLINGS).run(), "Where does it match?")
    e = _expl(at, env)
    h, w = e.unit_features1.shape[:2]

    def shown() -> tuple[tuple[int, int], float]:
        line = next(m.value for m in at.markdown if m.value.startswith("Best match on"))
        cell = re.search(r"cell \*\*\((\d+), (\d+)\)\*\*, cosine \*\*(-?\d\.\d{3})\*\*", line)
        return (int(cell.group(1)), int(cell.group(2))), float(cell.group(3))

    from apinet.explain import start_cell

    start = start_cell(e, 1)  # issue #24: a cell on the object, not the centre
    assert (at.slider(key="match_row").value, at.slider(key="match_col").value) == start
    seen = set()
    timings = []
    for row, col in ((0, 0), (h - 1, w - 1), (1, 2), (2, 1)):
        at.slider(key="match_row").set_value(row)
        at.slider(key="match_col").set_value(col)
        tic = time.perf_counter()
        at.run()
        timings.append(time.perf_counter() - tic)
        _ok(at)
        ref = correspondence_map(e, 1, row, col)
        best, cosine = shown()
        assert best == ref.best and cosine == pytest.approx(float(ref.similarity[ref.best]), abs=1e-3)
        seen.add(best)
    at.toggle(key="match_reverse").set_value(True)
    at.run()
    _ok(at)
    ref = correspondence_map(e, 2, *start_cell(e, 2))  # the reverse direction starts on B's object
    assert shown()[0] == ref.best
    assert "Best match on A" in " ".join(m.value for m in at.markdown)
    # the clickable picture: one marker per feature cell at the cell centres (display pixels)
    import base64
    import json

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    scatter = next(t for t in spec["data"] if t["type"] == "scatter")
    xs = np.frombuffer(base64.b64decode(scatter["x"]["bdata"]), scatter["x"]["dtype"])
    big = e.image1.shape[1]
    assert len(xs) == h * w and sorted(set(xs.tolist())) == [(j + 0.5) * big / w for j in range(w)]
    print(f"\nmatch tab: full AppTest rerun for a new cell: {[round(t * 1000) for t in timings]} ms")


def _sibling_masks(env, ids):
    """The crown masks of the two gallery images, rendered independently of the app."""
    import json

    from apinet import load_card
    from apinet.data import SynthBirds
    from apinet.data.contrast_pairs import mask_to_input
    from apinet.explain import preprocess_from_card

    entries = {Path(x["file"]).stem: x for x in json.loads((env["gallery"] / "gallery.json").read_text())["images"]}
    pre = preprocess_from_card(load_card(env["checkpoints"] / "apinet_synthbirds.safetensors"))
    data = SynthBirds(split="test")
    return [mask_to_input(data.sample(entries[i]["index"]).masks["crown"], pre) for i in ids]


def test_outline_of_the_differing_part_and_the_pointing_game(env):
    from apinet.metrics.localisation import pointing_game, standard_tolerance

    at = _open(_app(*SIBLINGS).run(), "Why A, not B")
    e = _expl(at, env)
    at.toggle(key="contrast_outline").set_value(True)
    at.run()
    _ok(at)
    masks = _sibling_masks(env, SIBLINGS)
    assert all(m.any() for m in masks) and masks[0].shape == e.image1.shape[:2]
    assert "Outlined: the **crown**" in " ".join(_captions(at))
    caps = [f"{c[0]} · crown: {c.rsplit(' ', 1)[1]}" for c in _image_captions(at)
            if c.startswith(("A · ", "B · ")) and " · crown: " in c]
    expected = []
    for key in ("apinet/test/class_contrast", "baseline/test/class_contrast", "apinet/pair/class_contrast",
                "apinet/test/finercam", "baseline/test/finercam"):
        rec = e.contrast_cams[key]
        for tag, raw, mask in (("A", rec.raw1, masks[0]), ("B", rec.raw2, masks[1])):
            hit = pointing_game(raw, mask, standard_tolerance(mask.shape[0]))
            expected.append(f"{tag} · crown: {'hit' if hit else 'miss'}")
    assert sorted(caps) == sorted(expected)
    # the exact tab outlines too
    _open(at, "Exact maps")
    at.toggle(key="exact_outline").set_value(True)
    at.run()
    _ok(at)
    exact = [c for c in _image_captions(at) if " · crown: " in c]
    assert len(exact) == 6
    rec = e.exact_cams["1_contrast"]
    hit = pointing_game(rec.raw, masks[0], standard_tolerance(masks[0].shape[0]))
    assert exact[2].startswith("contrast: self − other · ±") and exact[2].endswith(f"· crown: {'hit' if hit else 'miss'}")


def test_outline_says_why_there_is_none(env):
    # a finch and a warbler differ in more than one part
    at = _open(_app("test_0000_red-crowned-finch", "test_0005_streaked-warbler").run(), "Why A, not B")
    at.toggle(key="contrast_outline").set_value(True)
    at.run()
    _ok(at)
    note = " ".join(i.value for i in at.info)
    assert "No outline" in note and "differ in" in note and "sibling" in note
    assert not any(" · crown: " in c for c in _image_captions(at))


def test_part_masks_refuse_a_gallery_image_that_does_not_render_again(env, tmp_path, monkeypatch):
    import shutil

    from app import outline

    gallery = tmp_path / "gallery"
    shutil.copytree(env["gallery"], gallery)
    path = gallery / f"{SIBLINGS[0]}.png"
    pixels = np.asarray(Image.open(path).convert("RGB")).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(path)
    mask, why = outline.regenerate_masks.__wrapped__(str(gallery), SIBLINGS[0], "x", "crown",
                                                     str(env["checkpoints"] / "apinet_synthbirds.safetensors"), "y")
    assert mask is None and "does not give the gallery's pixels" in why
    mask, why = outline.regenerate_masks.__wrapped__(str(gallery), SIBLINGS[1], "x", "crown",
                                                     str(env["checkpoints"] / "apinet_synthbirds.safetensors"), "y")
    assert mask is not None and mask.any() and why == ""
    mask, why = outline.regenerate_masks.__wrapped__(str(gallery), "not-there", "x", "crown", "", "")
    assert mask is None and "does not record" in why


def test_export_offers_every_view_and_sizes_the_figure_for_a_paper(env):
    from app.tabs import export

    at = _open(_app(*SIBLINGS).run(), "Export")
    e = _expl(at, env)
    options = at.selectbox(key="export_view").options
    from apinet.render import available_views

    assert [o for o in options] == [v.label for v in available_views(e)]
    assert {"Gates and pairwise scores", "Exact pair-path maps (signed)"} <= set(options)
    assert any(o.startswith("Why A and not B") for o in options)
    ctx = tab_context(env, at, e)
    for view in ("exact", "contrast", "gates"):
        single = Image.open(io.BytesIO(export.figure_bytes(ctx, view, "png", 100, width="single")))
        double = Image.open(io.BytesIO(export.figure_bytes(ctx, view, "png", 100, width="double")))
        assert single.size[0] <= 330 + 2 and double.size[0] > single.size[0], view
    svg = export.figure_bytes(ctx, "exact", "svg", 100, font_size=9.0).decode()
    assert "font-size: 9px" in svg or "font-size:9px" in svg or 'font-size="9' in svg
    # pairs for the multi-pair figure: the gallery's sibling classes
    gallery = current_pair(env, at)[0]
    choices = export.pair_choices(gallery)
    assert choices and choices[0].label == "Red-crowned Finch vs Golden-crowned Finch (crown)"
    other = export._explain_choice(ctx, gallery, choices[1])
    pdf = export.multi_figure_bytes(ctx, [e, other], ["one", "two"], "contrast", "pdf", 100, width="single")
    assert pdf.startswith(b"%PDF")
    png = Image.open(io.BytesIO(export.multi_figure_bytes(ctx, [e, other], ["one", "two"], "exact", "png", 100)))
    one = Image.open(io.BytesIO(export.figure_bytes(ctx, "exact", "png", 100)))
    assert png.size[1] > one.size[1]  # two rows of pairs


def test_export_tab_makes_the_multi_pair_figure(env):
    import json

    at = _open(_app(*SIBLINGS).run(), "Export")
    assert len(at.multiselect(key="export_pairs").value) == 2
    at.radio(key="export_width").set_value("single")
    at.select_slider(key="export_font").set_value(9.0)
    at.run()
    _ok(at)
    settings = json.loads(at.code[-1].value)
    assert settings["width"] == "single" and settings["font_size"] == 9.0 and settings["view"] == "summary"
    at.selectbox(key="export_view").set_value("exact")
    at.button(key="export_multi_make").click()
    at.run()
    _ok(at)
    assert "Last multi-pair figure: 3 pairs, view exact." in " ".join(_captions(at))
    assert {b.proto.label for b in at.get("download_button")} >= {"3 pairs · PDF", "3 pairs · SVG", "3 pairs · PNG"}
    # One figure saved in the three formats (the session keeps the files, not the explanations).
    view, n, files = at.session_state["_export_multi"]
    assert (view, n) == ("exact", 3) and files["png"].startswith(b"\x89PNG\r\n\x1a\n")
    assert files["pdf"].startswith(b"%PDF")
    svg = files["svg"].decode()  # editable text: the rows' headings are in the file as text
    assert svg.startswith("<?xml") and all(f"pair {i}" in svg for i in (1, 2, 3))


def test_hostile_class_names_reach_the_pair_tabs_only_escaped(tmp_path_factory, monkeypatch):
    from app.text import md
    from tests.test_untrusted_text import HOSTILE, make_hostile_assets

    assets = make_hostile_assets(tmp_path_factory.mktemp("hostile-pair"))
    monkeypatch.setenv("APINET_CHECKPOINT_DIR", str(assets["checkpoints"]))
    monkeypatch.setenv("APINET_RUNS_DIR", str(assets["runs"]))
    monkeypatch.setenv("APINET_GALLERY_DIR", str(assets["gallery"]))
    at = _app(*SIBLINGS).run()  # classes 0 and 1 (the landing pair is chosen by mechanism strength)
    _ok(at)
    for label, toggle in (("Exact maps", "exact_outline"), ("Why A, not B", "contrast_outline"),
                          ("Where does it match?", None), ("Export", None)):
        _open(at, label)
        if toggle:
            at.toggle(key=toggle).set_value(True)
            at.run()
            _ok(at)
            assert "not SynthBirds'" in " ".join(i.value for i in at.info)  # renamed classes: no masks
        texts = [e.value for kind in ("markdown", "caption", "info") for e in getattr(at, kind)]
        texts += [c for img in at.get("image") for c in img.captions]
        page = "\n".join(texts)
        assert not any(name in page for name in HOSTILE), label
        if label == "Why A, not B":
            assert md(HOSTILE[0]) in page and md(HOSTILE[1]) in page
        for chart in at.get("plotly_chart"):
            spec = chart.proto.spec
            assert "<img" not in spec and "<iframe" not in spec
    assert any("<img" in o for o in at.multiselect(key="export_pairs").options)  # plain-text options
    at.button(key="export_multi_make").click()
    at.run()
    _ok(at)
    assert "Last multi-pair figure: 3 pairs" in " ".join(c.value for c in at.caption)


def test_part_masks_of_the_in_memory_gallery(tmp_path):
    """Without gallery.json the app renders SynthBirds test images in memory; their ids name the index."""
    from apinet.data import SynthBirds
    from apinet.data.contrast_pairs import mask_to_input
    from apinet.data.transforms import Preprocess
    from app import outline
    from tests.app_checkpoints import make_app_assets

    assets = make_app_assets(tmp_path / "a")
    empty = tmp_path / "no-gallery"
    empty.mkdir()
    ckpt = assets["checkpoints"] / "apinet_synthbirds.safetensors"
    mask, why = outline.regenerate_masks.__wrapped__(str(empty), "test_0002_double-barred-finch", "x", "wing",
                                                     str(ckpt), "y")
    from apinet import load_card

    pre = Preprocess.from_card(load_card(ckpt))
    expected = mask_to_input(SynthBirds(split="test").sample(2).masks["wing"], pre)
    assert why == "" and mask is not None and np.array_equal(mask, expected) and mask.shape == (64, 64)

