"""The page: sidebar controls, pair picker, explanation, tabs. Widgets only; maths lives in ``apinet``."""

from __future__ import annotations

import functools
import numbers

import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import RerunException  # internal; streamlit is pinned

from app import atlas_picker, atlas_source, config, header, picker, resources, responsive, state, tabs
from app import baselines as baselines_ui
from app.text import md

__all__ = ["main"]

_RANKINGS = {"gate": "gate value g", "gate_x_activation": "gate × pooled activation (g·x)",
             "contribution": "exact contribution W(1+g)x"}
#: The first screen's one line of guidance.
START_HERE = ("**Start here:** pick image A and image B (or press **Random pair**), then open a tab below "
              "to see how API-Net compares them.")


def _missing_checkpoints(paths: config.Paths, problems: list[str]) -> None:
    st.error("No API-Net checkpoint found, so there is nothing to explain yet.", icon=":material/error:")
    st.markdown(
        f"""
The app looks for the demo checkpoints **`{config.DEMO_APINET}`** and **`{config.DEMO_BASELINE}`**
in `{paths.checkpoints}` and for any `*.safetensors` with its `.json` model card under `{paths.runs}`.

Train the demo models on SynthBirds (no download needed; minutes on a CPU) and reload this page —
every `best.safetensors` under the runs folder is listed automatically:
"""
    )
    st.code(config.TRAIN_COMMAND, language="bash")
    st.caption("Other folders: set `APINET_CHECKPOINT_DIR` (demo checkpoints) or `APINET_RUNS_DIR` (your runs).")
    for problem in problems:
        st.warning(md(problem))


def _skipped_note(problems: list[str]) -> None:
    """Checkpoints left out of the selectors (unreadable or malformed cards), named, never silently."""
    if not problems:
        return
    with st.sidebar.expander(f"{len(problems)} checkpoint(s) skipped", icon=":material/warning:"):
        for problem in problems:
            st.caption(md(problem))


def _default(options: list, preferred_suffix: str | None) -> object:
    for option in options:
        if preferred_suffix and option.path.endswith(preferred_suffix):
            return option
    return options[0] if options else None


def _sidebar_models(apinets, baselines, ckpt, paths: config.Paths):
    """The model selectors; returns the chosen baseline (only compatible ones are offered, see app.baselines)."""
    with st.sidebar:
        st.header("Models")
        st.selectbox("API-Net checkpoint", [c.label for c in apinets], key="ckpt",
                     help="Demo checkpoints plus every *.safetensors with a model card under APINET_RUNS_DIR.")
        return baselines_ui.draw_baseline_selector(ckpt, baselines, paths)


def _sidebar_display(stages: list[str], cams: list[str]) -> None:
    with st.sidebar:
        st.header("Display")
        st.caption("These re-render the cached explanation; no model runs.")
        st.slider("Top-k channels", 1, config.K_MAX, key="k",
                  help="How many of the most strongly gated channels to show.")
        st.selectbox("Colormap", list(config.COLORMAPS), key="cmap")
        st.slider("Overlay opacity α", 0.0, 1.0, step=0.05, key="alpha")
        st.slider("Clip colour scale at percentile", 90.0, 100.0, step=0.5, key="clip", format="%.1f",
                  help="Colour scales span the [100−p, p] percentiles of the maps instead of their min and "
                       "max, so one hot cell does not wash out the rest. 100 = no clipping.")
        st.radio("Normalisation scope", list(config.SCOPES), key="scope",
                 format_func=lambda s: {"map": "per map", "pair": "per pair", "models": "across models"}[s],
                 help="\n".join(f"- **{k}**: {v}" for k, v in config.SCOPES.items()))
        from apinet.explain import CAM_LABELS, CAM_NOTE

        st.selectbox("CAM method", cams, key="cam", format_func=lambda m: CAM_LABELS.get(m, m),
                     help="Class activation map method (pytorch-grad-cam). " + CAM_NOTE)
        st.selectbox("LTPA stage", stages, key="stage", help="Trunk stage whose local features LTPA attends over.")
        st.header("Explanation")
        st.selectbox("Channel ranking", list(_RANKINGS), key="rank", format_func=_RANKINGS.get,
                     help="How the top-k channels are chosen. Changing it runs the models again.")
        st.selectbox("CAM layer", stages, key="layer",
                     help="Trunk stage the class activation maps are computed at (the last stage is the "
                          "paper's). Changing it runs the models again.")


# --- the dataset atlas (issue #23): which one opens, and its sidebar choice -------------------------


def _atlas_for(apinets, baselines) -> atlas_source.AtlasChoice:
    """The atlas of the checkpoints this run will show (read before the widgets, as the URL gives them)."""
    first = not st.session_state.get(state.URL_LOADED)

    def chosen(key, options, default):
        value = st.session_state.get(key, st.query_params.get(key) if first else None)
        return value, next((c for c in options if c.label == value), default)

    _, ckpt = chosen("ckpt", apinets, _default(apinets, config.DEMO_APINET))
    base_label, base = chosen("base", baselines, _default(baselines, config.DEMO_BASELINE))
    if base_label == "none" or not baselines_ui.is_offered(ckpt, base):
        base = None
    return atlas_source.choose_atlas(ckpt.sha256, base.sha256 if base else None)


def _sidebar_atlas(choice: atlas_source.AtlasChoice) -> list[str]:
    options = ["auto"] + [e.label for e in choice.entries] + [atlas_source.NO_ATLAS]
    with st.sidebar:
        st.selectbox("Dataset atlas", options, key=atlas_source.ATLAS_KEY,
                     help="A dataset computed once through both checkpoints (python -m apinet atlas): the images "
                          "the pair is chosen from and the Dataset tab. auto: the first atlas of exactly the "
                          "loaded checkpoints (APINET_ATLAS_DIR, assets/atlas, then runs/).")
    return options


def _default_pair(gallery) -> tuple[str, str]:
    """A first pair that shows something: the first image and the nearest class-sibling available."""
    if len(gallery.items) < 2:
        only = gallery.items[0].id if gallery.items else ""
        return only, only
    first = gallery.items[0]
    others = [it for it in gallery.items if it.label != first.label]
    return first.id, (others[0] if others else gallery.items[1]).id


def _ready_marker() -> None:
    """An invisible element whose data-run grows with every finished run (browser tests wait on it)."""
    st.session_state["_runs"] = st.session_state.get("_runs", 0) + 1
    st.html(f'<div class="apinet-ready" data-run="{st.session_state["_runs"]}"></div>')


#: Below 640 px Streamlit stacks columns; A and B stay side by side (half-width cards) so that on a
#: phone the tabs start about two screens down instead of four.
_NARROW_CSS = """<style>
@media (max-width: 640px) {
  .st-key-pair_ab [data-testid="stHorizontalBlock"] { flex-wrap: nowrap; gap: 0.75rem; }
  .st-key-pair_ab [data-testid="stColumn"] { min-width: 0 !important; width: auto !important; flex: 1 1 0 !important; }
}
</style>"""


def _runs(n: int) -> str:
    return f"{n} run{'' if n == 1 else 's'}"


def _waiting_label(ahead: int) -> str:
    """The status while this session's explanation waits for a model-run slot (see resources.RUN_GATE)."""
    return f"Waiting for the model ({_runs(ahead)} ahead)…"


def _link_notes() -> None:
    """What a shared link could not restore (an uploaded image), shown while its pair is still open."""
    notes = st.session_state.get(state.LINK_NOTES) or []
    if not notes:
        return
    pair = st.session_state.setdefault("_link_pair", (st.session_state.a, st.session_state.b))
    if pair != (st.session_state.a, st.session_state.b):
        st.session_state[state.LINK_NOTES] = []
        return
    for note in notes:
        st.info(note, icon=":material/link_off:")


_SHOWN_PAIR = "_shown_pair"  # session_state: (sha A, sha B) of the pair whose cards were last drawn


def _pending_cards(image_a, image_b, slots) -> None:
    """A new image (an upload, another gallery image): clear the old cards and summary at once, so the
    old picture and prediction never stand under the new name while the new pair is explained (#24)."""
    pair = (image_a.sha256, image_b.sha256)
    if st.session_state.get(_SHOWN_PAIR) == pair:
        return
    st.session_state[_SHOWN_PAIR] = pair
    for slot, image, tag in zip(slots, (image_a, image_b, None), ("A", "B", None)):
        with slot.container():
            if tag is None:
                st.caption("Explaining the new pair…")
                continue
            st.markdown(f'<span class="apinet-tag apinet-{tag.lower()}">{tag}</span> **{md(image.name)}**',
                        unsafe_allow_html=True)
            st.caption("Explaining… (the picture and prediction appear when the model has run)")


def _default_target(image, ckpt) -> int:
    """An image's default reference class: its gallery label, or API-Net's prediction for an upload."""
    if image.label is not None:
        return int(image.label)
    return resources.predicted_class(ckpt.path, ckpt.sha256, image.sha256, image.data)


_DEFAULT_MARK = " ✓"


def _class_label(names: list[str], i: int, default: int) -> str:
    return " ".join(str(names[i]).split()) + (_DEFAULT_MARK if i == default else "")


def _class_index(value, names: list[str]) -> int | None:
    """The class a reference selector's value names, or ``None``.

    Usually an index. The browser may send back the label it shows instead: when the ✓ moved to
    another class (a new image) and the selected index stayed the same, its label is no longer one of
    the options, and Streamlit passes the text through. That text still names the chosen class.
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value) if 0 <= value < len(names) else None
    if isinstance(value, str):
        name = value.removesuffix(_DEFAULT_MARK)
        labels = [_class_label(names, i, -1) for i in range(len(names))]
        return labels.index(name) if name in labels else None
    return None


def _set_target(slot: str, default: int, ref: str, names: list[str]) -> None:
    chosen = _class_index(st.session_state.get(f"_explain_as_{slot}"), names)
    st.session_state[f"t{slot}"] = None if chosen is None or chosen == default else chosen
    st.session_state[f"_t{slot}_ref"] = ref


def _reference_class(slot: str, image, default: int, names: list[str]) -> int:
    """The "Explain A as" selector: the class the maps and scores of ``slot`` refer to.

    ``session_state["ta"]`` holds a choice other than the default (and so does the URL); it is
    forgotten when the image changes, so a new image starts at its own label or prediction.
    """
    key, ref_key = f"t{slot}", f"_t{slot}_ref"
    override = _class_index(st.session_state.get(key), names)
    if override is not None and (override == default
                                 or st.session_state.setdefault(ref_key, image.ref) != image.ref):
        override = None
    st.session_state[key] = override
    if override is None:
        st.session_state.pop(ref_key, None)
    value = default if override is None else override
    st.session_state[f"_explain_as_{slot}"] = value
    why = "label" if image.label is not None else "predicted"
    # "✓" marks the default (a short mark: "(label)" pushed long class names out of the box, #24)
    st.selectbox(f"Explain {slot.upper()} as (✓ {why})", list(range(len(names))), key=f"_explain_as_{slot}",
                 format_func=lambda i: _class_label(names, i, default),
                 on_change=_set_target, args=(slot, default, image.ref, names),
                 help="The reference class of this image's maps and scores (default: its "
                      + ("gallery label" if image.label is not None else "class as API-Net predicts it") + "). "
                      "Changing it runs the models again.")
    return int(value)


def main() -> None:
    st.set_page_config(page_title="API-Net Explorer", page_icon=":material/compare:", layout="wide",
                       initial_sidebar_state="auto")
    try:
        _page()
    except RerunException:  # interrupted (a widget changed mid-run): the next run ends it, not this one
        raise
    except BaseException:  # st.stop() or an error: the run has ended all the same
        _end_run()
        raise
    _end_run()


def _end_run() -> None:
    state.write_url_once_restored()
    _ready_marker()


def _page() -> None:
    header.inject_css()
    paths = config.paths_from_env()
    found, problems = resources.discover_checkpoints(str(paths.checkpoints), str(paths.runs))
    apinets = [c for c in found if c.architecture == "apinet"]
    baselines = [c for c in found if c.architecture == "baseline"]

    responsive.inject()
    st.title("API-Net Explorer")
    intro = st.container(key="page_intro")
    intro.markdown(
        "How **Attentive Pairwise Interaction** (Zhuang et al., AAAI 2020) compares two images: a mutual "
        "vector learned from both, a gate per image, and the channels the gates pick — next to a plain "
        "baseline on the same backbone."
    )
    intro.caption(START_HERE)
    if not apinets:
        _missing_checkpoints(paths, problems)
        return

    atlas_choice = _atlas_for(apinets, baselines)
    if atlas_choice.refused:
        st.error(md(atlas_choice.refused), icon=":material/dataset:")
    atlas = atlas_choice.atlas
    gallery = atlas_source.AtlasGallery(atlas) if atlas is not None else resources.load_gallery(str(paths.gallery))
    if gallery.note:
        st.warning(md(gallery.note), icon=":material/warning:")
    cams = resources.cam_methods()
    choices = {
        "ckpt": [c.label for c in apinets],
        "base": ["none"] + [c.label for c in baselines],
        "a": picker.refs(gallery) if atlas is None else atlas_source.AtlasRefs(gallery, state.GALLERY_PREFIX, picker.refs_uploads()),
        "b": picker.refs(gallery) if atlas is None else atlas_source.AtlasRefs(gallery, state.GALLERY_PREFIX, picker.refs_uploads()),
        atlas_source.ATLAS_KEY: ["auto"] + [e.label for e in atlas_choice.entries] + [atlas_source.NO_ATLAS],
        "dview": list(tabs.dataset.VIEWS),
        "dcolour": list(tabs.dataset.COLOURS),
        "cmap": list(config.COLORMAPS),
        "scope": list(config.SCOPES),
        "cam": cams,
        "stage": None,  # checked once the model (and so its stages) is known
        "layer": None,
        "rank": list(_RANKINGS),
        "ta": None,  # checked once the classes are known
        "tb": None,
    }
    state.restore_from_url(choices)
    state.keep_tab_settings()
    default_base = _default(baselines, config.DEMO_BASELINE)
    first, second = _default_pair(gallery)
    defaults = {
        "ckpt": _default(apinets, config.DEMO_APINET).label,
        "base": default_base.label if default_base else "none",
        "k": config.K_DEFAULT,
        "cmap": config.COLORMAPS[0],
        "alpha": config.ALPHA_DEFAULT,
        "scope": "pair",
        "cam": cams[0],
        "rank": "gate",
        "clip": 100.0,
        atlas_source.ATLAS_KEY: "auto",
    }
    state.ensure_defaults(defaults, choices)
    ckpt = next(c for c in apinets if c.label == st.session_state.ckpt)
    base = _sidebar_models(apinets, baselines, ckpt, paths)
    _sidebar_atlas(atlas_choice)
    _skipped_note(problems)

    try:
        with st.spinner("Loading the models (once per checkpoint)…"):
            loaded = resources.load_checkpoint(ckpt.path, ckpt.sha256)
            if base is not None:
                resources.load_checkpoint(base.path, base.sha256)
            # The gallery's feature bank (one forward pass per gallery image) serves only the partner
            # suggestions: computed on the first press of "Same-class B" / "Other-class B", not before
            # the first page (issue #24: it was most of the first page's time). An atlas stores it.
            bank = gallery.bank if atlas is not None else \
                functools.partial(resources.feature_bank, ckpt.path, ckpt.sha256, str(paths.gallery), gallery.key)
    except Exception as exc:  # CheckpointError, out of memory, ...: a message, never a traceback
        st.error(f"Could not load the checkpoint: {md(str(exc)[:400])}", icon=":material/error:")
        st.code(config.TRAIN_COMMAND, language="bash")
        return
    from app import strongest  # issue #22: the landing pair is the gallery's strongest inter pair

    landing = strongest.landing_pair(gallery, ckpt, str(paths.gallery)) or (first, second)
    state.ensure_defaults({"a": state.GALLERY_PREFIX + landing[0], "b": state.GALLERY_PREFIX + landing[1]}, choices)
    stages = resources.stages_of(loaded)
    state.ensure_defaults({"stage": stages[0], "layer": stages[0]}, {"stage": stages, "layer": stages})
    _sidebar_display(stages, cams)

    _link_notes()
    st.html(_NARROW_CSS)
    col_ab, col_r = st.columns([2.25, 1.45], gap="large")  # the pair's selectors get the room (#24)
    col_a, col_b = col_ab.container(key="pair_ab").columns(2, gap="large")
    with col_a:
        picker.draw_selector("a", gallery)
        target_a = st.container()
        slot_a = st.empty()
    with col_b:
        picker.draw_selector("b", gallery)
        target_b = st.container()
        slot_b = st.empty()
    with col_r:
        with st.container(key="pair_actions"):
            picker.draw_actions(gallery, loaded, bank)
            strongest.draw_buttons(gallery, ckpt, str(paths.gallery))
        picker.show_message()
        status_slot = st.container()
        summary_slot = st.container(key="pair_summary").empty()
    browser = st.expander("Browse the gallery by class" if atlas is None else "Browse and search the atlas",
                          icon=":material/photo_library:", key="browse_open", on_change="rerun")
    if browser.open:  # the thumbnail grid runs only while it is open
        with browser:
            if atlas is None:
                picker.draw_gallery_browser(gallery)
            else:  # one page of thumbnails at a time, searchable, A and B marked
                atlas_picker.draw_picker(atlas, key="bpick")
    with st.expander("Upload your own two images", icon=":material/upload:"):
        picker.draw_uploads()

    image_a = picker.resolve(st.session_state.a, gallery)
    image_b = picker.resolve(st.session_state.b, gallery)
    if image_a is None or image_b is None:
        st.info("Choose image A and image B to start.")
        return

    _pending_cards(image_a, image_b, (slot_a, slot_b, summary_slot))
    tab, tab_box = tabs.open_tab()
    if not tab.needs_pair:  # the Dataset tab: drawn before the explanation, so a click there shows at once
        with tab_box:
            tab.draw(tabs.Context(expl=None, settings=None, image_a=image_a, image_b=image_b, apinet=ckpt,
                                  baseline=base, atlas=atlas, atlas_note=atlas_choice.refused))
    names = list(loaded.class_names)
    try:  # an upload's default reference class is API-Net's prediction: a forward pass that may refuse it
        default1, default2 = _default_target(image_a, ckpt), _default_target(image_b, ckpt)
    except Exception as exc:
        with status_slot:
            st.error(f"Could not explain this pair: {md(str(exc)[:300])}")
        return
    with target_a:
        target1 = _reference_class("a", image_a, default1, names)
    with target_b:
        target2 = _reference_class("b", image_b, default2, names)
    targets = (target1, target2)
    layer = st.session_state.layer
    request = resources.ExplainRequest(
        apinet_path=ckpt.path, apinet_sha=ckpt.sha256,
        baseline_path=base.path if base else None, baseline_sha=base.sha256 if base else None,
        image_a_sha=image_a.sha256, image_b_sha=image_b.sha256, targets=targets,
        rank_by=st.session_state.rank, cam_layer=None if layer == stages[0] else layer,
    )
    with status_slot, st.status("Explaining the pair…", expanded=False) as status:
        waited: list[int] = []

        def on_wait(ahead: int) -> None:
            waited.append(ahead)
            status.update(label=_waiting_label(ahead), state="running")

        try:
            expl = resources.explain(request, image_a.data, image_b.data, on_wait=on_wait)
        except Exception as exc:  # a model/explainer failure must not take the page down
            status.update(label="Explanation failed", state="error")
            st.error(f"Could not explain this pair: {md(str(exc)[:300])}")
            return
        timings = (expl.settings or {}).get("timings_s", {})
        took = f" in {sum(timings.values()):.1f} s" if timings else ""
        queued = f" after waiting for {_runs(waited[0])} ahead" if waited else ""
        st.session_state["_waited_for"] = waited[0] if waited else None
        status.update(label=f"Pair explained{took}{queued} · cached for this pair", state="complete")
        st.caption("Explanations are cached per image pair, checkpoints, reference classes, channel ranking "
                   "and CAM layer; display settings only re-render.")

    settings = tabs.DisplaySettings(
        k=int(st.session_state.k), cmap=st.session_state.cmap, alpha=float(st.session_state.alpha),
        scope=st.session_state.scope, stage=st.session_state.stage, cam=st.session_state.cam,
        clip=float(st.session_state.clip),
    )
    ctx = tabs.Context(expl=expl, settings=settings, image_a=image_a, image_b=image_b,
                        apinet=ckpt, baseline=base, atlas=atlas, atlas_note=atlas_choice.refused)
    from app.tabs.export import remember_visit  # the multi-pair figure offers every pair opened

    remember_visit(ctx)
    with slot_a.container():
        header.draw_image_card(ctx, "A")
    with slot_b.container():
        header.draw_image_card(ctx, "B")
    with summary_slot.container():
        header.draw_pair_summary(ctx)
    from app.tabs import whatif

    whatif.forget_if_pair_changed(ctx)  # what-if changes belong to one pair
    if tab.needs_pair:
        with tab_box:
            tab.draw(ctx)
