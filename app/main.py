"""The page: sidebar controls, pair picker, explanation, tabs. Widgets only; maths lives in ``apinet``."""

from __future__ import annotations

import streamlit as st

from app import config, header, picker, resources, state, tabs
from app.text import md

__all__ = ["main"]

_RANKINGS = {"gate": "gate value g", "gate_x_activation": "gate × pooled activation (g·x)"}


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


def _sidebar_models(apinets, baselines) -> None:
    with st.sidebar:
        st.header("Models")
        st.selectbox("API-Net checkpoint", [c.label for c in apinets], key="ckpt",
                     help="Demo checkpoints plus every *.safetensors with a model card under APINET_RUNS_DIR.")
        st.selectbox("Baseline checkpoint", ["none"] + [c.label for c in baselines], key="base",
                     help="Same backbone without pairwise interaction; compared map for map.")


def _sidebar_display(stages: list[str], cams: list[str]) -> None:
    with st.sidebar:
        st.header("Display")
        st.caption("These re-render the cached explanation; no model runs.")
        st.slider("Top-k channels", 1, config.K_MAX, key="k",
                  help="How many of the most strongly gated channels to show.")
        st.selectbox("Colormap", list(config.COLORMAPS), key="cmap")
        st.slider("Overlay opacity α", 0.0, 1.0, step=0.05, key="alpha")
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


def main() -> None:
    st.set_page_config(page_title="API-Net Explorer", page_icon=":material/compare:", layout="wide",
                       initial_sidebar_state="auto")
    try:
        _page()
    finally:
        if st.session_state.get(state.URL_LOADED):
            state.write_url()
        _ready_marker()


def _page() -> None:
    header.inject_css()
    paths = config.paths_from_env()
    found, problems = resources.discover_checkpoints(str(paths.checkpoints), str(paths.runs))
    apinets = [c for c in found if c.architecture == "apinet"]
    baselines = [c for c in found if c.architecture == "baseline"]

    st.title("API-Net Explorer")
    st.markdown(
        "How **Attentive Pairwise Interaction** (Zhuang et al., AAAI 2020) compares two images: a mutual "
        "vector learned from both, a gate per image, and the channels the gates pick — next to a plain "
        "baseline on the same backbone."
    )
    if not apinets:
        _missing_checkpoints(paths, problems)
        return

    gallery = resources.load_gallery(str(paths.gallery))
    if gallery.note:
        st.warning(md(gallery.note), icon=":material/warning:")
    cams = resources.cam_methods()
    choices = {
        "ckpt": [c.label for c in apinets],
        "base": ["none"] + [c.label for c in baselines],
        "a": picker.refs(gallery),
        "b": picker.refs(gallery),
        "cmap": list(config.COLORMAPS),
        "scope": list(config.SCOPES),
        "cam": cams,
        "stage": None,  # checked once the model (and so its stages) is known
        "rank": list(_RANKINGS),
    }
    state.restore_from_url(choices)
    default_base = _default(baselines, config.DEMO_BASELINE)
    first, second = _default_pair(gallery)
    defaults = {
        "ckpt": _default(apinets, config.DEMO_APINET).label,
        "base": default_base.label if default_base else "none",
        "a": state.GALLERY_PREFIX + first,
        "b": state.GALLERY_PREFIX + second,
        "k": config.K_DEFAULT,
        "cmap": config.COLORMAPS[0],
        "alpha": config.ALPHA_DEFAULT,
        "scope": "pair",
        "cam": cams[0],
        "rank": "gate",
    }
    state.ensure_defaults(defaults, choices)
    _sidebar_models(apinets, baselines)
    _skipped_note(problems)

    ckpt = next(c for c in apinets if c.label == st.session_state.ckpt)
    base = next((c for c in baselines if c.label == st.session_state.base), None)
    if base is not None and (base.num_classes != ckpt.num_classes or base.backbone != ckpt.backbone):
        st.warning(f"Baseline {md(base.label)} ({md(base.backbone)}, {base.num_classes} classes) does not match "
                   f"API-Net {md(ckpt.label)} ({md(ckpt.backbone)}, {ckpt.num_classes} classes): baseline left out.")
        base = None

    try:
        with st.spinner("Loading models and the gallery's feature bank (once per checkpoint)…"):
            loaded = resources.load_checkpoint(ckpt.path, ckpt.sha256)
            if base is not None:
                resources.load_checkpoint(base.path, base.sha256)
            bank = resources.feature_bank(ckpt.path, ckpt.sha256, str(paths.gallery), gallery.key)
    except Exception as exc:  # CheckpointError, out of memory, ...: a message, never a traceback
        st.error(f"Could not load the checkpoint: {md(str(exc)[:400])}", icon=":material/error:")
        st.code(config.TRAIN_COMMAND, language="bash")
        return
    stages = resources.stages_of(loaded)
    state.ensure_defaults({"stage": stages[0]}, {"stage": stages})
    _sidebar_display(stages, cams)

    col_a, col_b, col_r = st.columns([1, 1, 1.45], gap="large")
    with col_a:
        picker.draw_selector("a", gallery)
        slot_a = st.container()
    with col_b:
        picker.draw_selector("b", gallery)
        slot_b = st.container()
    with col_r:
        picker.draw_actions(gallery, loaded, bank)
        picker.show_message()
        status_slot = st.container()
        summary_slot = st.container()
    with st.expander("Browse the gallery by class", icon=":material/photo_library:"):
        picker.draw_gallery_browser(gallery)
    with st.expander("Upload your own two images", icon=":material/upload:"):
        picker.draw_uploads()

    image_a = picker.resolve(st.session_state.a, gallery)
    image_b = picker.resolve(st.session_state.b, gallery)
    if image_a is None or image_b is None:
        st.info("Choose image A and image B to start.")
        return

    targets = (image_a.label, image_b.label) if image_a.label is not None and image_b.label is not None else None
    request = resources.ExplainRequest(
        apinet_path=ckpt.path, apinet_sha=ckpt.sha256,
        baseline_path=base.path if base else None, baseline_sha=base.sha256 if base else None,
        image_a_sha=image_a.sha256, image_b_sha=image_b.sha256, targets=targets,
        rank_by=st.session_state.rank,
    )
    with status_slot, st.status("Explaining the pair…", expanded=False) as status:
        try:
            expl = resources.explain(request, image_a.data, image_b.data)
        except Exception as exc:  # a model/explainer failure must not take the page down
            status.update(label="Explanation failed", state="error")
            st.error(f"Could not explain this pair: {md(str(exc)[:300])}")
            return
        timings = (expl.settings or {}).get("timings_s", {})
        took = f" in {sum(timings.values()):.1f} s" if timings else ""
        status.update(label=f"Pair explained{took} · cached for this pair", state="complete")
        st.caption("Explanations are cached per image pair, checkpoint and channel ranking; display "
                   "settings only re-render.")

    settings = tabs.DisplaySettings(
        k=int(st.session_state.k), cmap=st.session_state.cmap, alpha=float(st.session_state.alpha),
        scope=st.session_state.scope, stage=st.session_state.stage, cam=st.session_state.cam,
    )
    ctx = tabs.Context(expl=expl, settings=settings, image_a=image_a, image_b=image_b,
                        apinet=ckpt, baseline=base)
    with slot_a:
        header.draw_image_card(ctx, "A")
    with slot_b:
        header.draw_image_card(ctx, "B")
    with summary_slot:
        header.draw_pair_summary(ctx)
    tabs.draw_tabs(ctx)
