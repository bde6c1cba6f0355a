"""Export: publication figures (PDF, SVG, PNG) of every view ``apinet.render`` offers, sized for a
paper column, one pair or several pairs as rows of one figure; the raw arrays (NPZ) and the summary (JSON)."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from app.tabs.common import Context, class_name, render_api

__all__ = ["PairChoice", "draw", "figure_bytes", "figure_settings", "multi_figure_bytes",
           "multi_figure_files", "npz_bytes", "pair_choices", "panel_bytes", "remember_visit"]

WIDTHS = {"single": "single column (3.3 in)", "double": "two columns (6.9 in)", "slide": "16:9 slide (13.3 × 7.5 in)"}
FONT_SIZES = (7.0, 8.0, 9.0, 10.0, 12.0, 14.0)
BACKGROUNDS = {"white": "white", "transparent": "transparent", "dark": "dark"}
#: Export defaults (session_state keys; widgets take no value=, so a shared link can set them).
DEFAULTS = {"export_width": "single", "export_font": 7.0, "export_dpi": 300, "export_bg": "white"}
VISITED = "_visited_pairs"  # session_state: PairChoice of every pair explained this session, newest last
FORMATS = (("pdf", "application/pdf"), ("svg", "image/svg+xml"), ("png", "image/png"))
_MULTI = "_export_multi"  # session_state: (view, pairs, {fmt: bytes}) of the last multi-pair figure


def figure_settings(ctx: Context, view: str, dpi: int, *, width: str | float = "double", font_size: float = 7.0,
                    background: str = "white"):
    """The :class:`apinet.render.FigureSettings` of the current display settings."""
    e, s = ctx.expl, ctx.settings
    extra = {"panel_inches": render_api().PRESETS["slide"]["panel_inches"]} if width == "slide" else {}
    return render_api().FigureSettings(
        view=view, cmap=s.cmap, alpha=s.alpha, scope=s.scope, k=s.k, dpi=dpi, width=width, font_size=font_size,
        background=background, **extra,
        channel_sets=[c for c in ("apinet_gate1", "apinet_gate2", "baseline_top") if c in e.channels],
        ltpa_keys=[k for k in e.ltpa if k.endswith("/" + s.stage)] or None,
        cam_keys=[k for k in e.cams if k.endswith("/" + s.cam)] or None,
    )


def _save(fig, fmt: str, dpi: int) -> bytes:
    return _save_formats(fig, (fmt,), dpi)[fmt]


def _save_formats(fig, formats, dpi: int) -> dict[str, bytes]:
    """``fig`` saved in each of ``formats`` (in that order), then closed."""
    import io

    import matplotlib.pyplot as plt

    files = {}
    try:
        for fmt in formats:
            buffer = io.BytesIO()
            render_api().save_figure(fig, buffer, dpi=dpi, format=fmt)
            files[fmt] = buffer.getvalue()
        return files
    finally:
        plt.close(fig)


def figure_bytes(ctx: Context, view: str, fmt: str, dpi: int, *, width: str | float = "double",
                 font_size: float = 7.0, background: str = "white") -> bytes:
    """The figure of ``view`` as PDF / SVG / PNG bytes (drawn by apinet.render; no model runs)."""
    settings = figure_settings(ctx, view, dpi, width=width, font_size=font_size, background=background)
    return _save(render_api().pair_figure(ctx.expl, view, settings), fmt, dpi)


def panel_bytes(ctx: Context, view: str, key: str, image: int, fmt: str, dpi: int, *, width: str | float = "double",
                font_size: float = 7.0, background: str = "white") -> bytes:
    """One map of ``view`` on image ``image`` (1 = A) as its own file (:func:`apinet.render.panel_figure`)."""
    settings = figure_settings(ctx, view, dpi, width=width, font_size=font_size, background=background)
    return _save(render_api().panel_figure(ctx.expl, view, key, image, settings), fmt, dpi)


def multi_figure_bytes(ctx: Context, expls, names, view: str, fmt: str, dpi: int, *, width: str | float = "double",
                       font_size: float = 7.0, background: str = "white") -> bytes:
    """Several pairs as rows of one figure (:func:`apinet.render.multi_pair_figure`)."""
    return multi_figure_files(ctx, expls, names, view, (fmt,), dpi, width=width, font_size=font_size,
                              background=background)[fmt]


def multi_figure_files(ctx: Context, expls, names, view: str, formats, dpi: int, *, width: str | float = "double",
                       font_size: float = 7.0, background: str = "white") -> dict[str, bytes]:
    """:func:`multi_figure_bytes` in several formats from one figure (laid out once)."""
    settings = figure_settings(ctx, view, dpi, width=width, font_size=font_size, background=background)
    fig = render_api().multi_pair_figure(list(expls), view, settings, names=list(names))
    return _save_formats(fig, formats, dpi)


def npz_bytes(expl) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="apinet-npz-") as tmp:
        return expl.to_npz(f"{tmp}/explanation.npz").read_bytes()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:60]


@dataclass(frozen=True)
class PairChoice:
    """A gallery pair offered for the multi-pair figure."""

    label: str  # "Red-crowned Finch vs Golden-crowned Finch (crown)"
    id_a: str
    id_b: str
    refs: tuple[str, str] | None = None  # a visited pair: its selector refs (gallery or this session's upload)
    targets: tuple[int, int] | None = None  # a visited pair: the reference classes it was explained with


def remember_visit(ctx: Context) -> None:
    """Add the pair on screen to this session's visited pairs (newest last, each pair once, at most 24)."""
    a, b, e = ctx.image_a, ctx.image_b, ctx.expl
    label = f"{class_name(e, e.targets[0])} vs {class_name(e, e.targets[1])} ({a.name} / {b.name})"
    visit = PairChoice(label, a.name, b.name, refs=(a.ref, b.ref), targets=tuple(int(t) for t in e.targets))
    visited = [v for v in st.session_state.get(VISITED, []) if v.refs != visit.refs or v.targets != visit.targets]
    st.session_state[VISITED] = (visited + [visit])[-24:]


def pair_choices(gallery) -> list[PairChoice]:
    """One pair per SynthBirds sibling class pair the gallery holds (first image of each class; the
    two classes differ in exactly one part); for another gallery, each class with the next one."""
    from apinet.data import SynthBirds

    firsts = {}
    for item in gallery.items:
        firsts.setdefault(item.label, item)
    out = []
    if list(gallery.classes) == list(SynthBirds.CLASSES):
        for a, b, part in SynthBirds.sibling_pairs():
            if a in firsts and b in firsts:
                out.append(PairChoice(f"{firsts[a].class_name} vs {firsts[b].class_name} ({part})",
                                      firsts[a].id, firsts[b].id))
        return out
    labels = sorted(firsts)
    return [PairChoice(f"{firsts[a].class_name} vs {firsts[b].class_name}", firsts[a].id, firsts[b].id)
            for a, b in zip(labels, labels[1:])]


def _explain_choice(ctx: Context, gallery, choice: PairChoice):
    from app import picker, resources

    if choice.refs is not None:
        a, b = picker.resolve(choice.refs[0], gallery), picker.resolve(choice.refs[1], gallery)
        if a is None or b is None:
            raise ValueError(f"{choice.label}: an image of this pair is no longer available")
        targets = choice.targets
    else:
        a, b = gallery.get(choice.id_a), gallery.get(choice.id_b)
        targets = (a.label, b.label)
    base = ctx.baseline
    request = resources.ExplainRequest(
        apinet_path=ctx.apinet.path, apinet_sha=ctx.apinet.sha256,
        baseline_path=base.path if base else None, baseline_sha=base.sha256 if base else None,
        image_a_sha=a.sha256, image_b_sha=b.sha256, targets=targets,
        rank_by=(ctx.expl.settings or {}).get("rank_by", "gate"))
    return resources.explain(request, a.data, b.data)


def _pair_name(e) -> str:
    return f"{class_name(e, e.targets[0])} vs {class_name(e, e.targets[1])}"


def _views(*expls):
    render = render_api()
    slugs = [{v.slug for v in render.available_views(e)} for e in expls]
    return [v for v in render.VIEW_LIST if all(v.slug in s for s in slugs)]


def _multi_section(ctx: Context, view: str, dpi: int, width: str, font_size: float, background: str) -> None:
    from app import config, resources

    gallery = resources.load_gallery(str(config.paths_from_env().gallery))
    here = (ctx.image_a.ref, ctx.image_b.ref)
    visited = [v for v in reversed(st.session_state.get(VISITED, [])) if v.refs != here]
    choices = [PairChoice("Visited: " + v.label, v.id_a, v.id_b, v.refs, v.targets) for v in visited]
    choices += pair_choices(gallery)
    by_label = {c.label: c for c in choices}
    st.caption("The current pair plus the pairs chosen here, one row each: every pair you have opened in this "
               "session (Visited), then the gallery's pairs (SynthBirds: sibling classes, which differ in exactly "
               "one part). Pairs not seen yet are explained once and cached.")
    default = [c.label for c in choices if c.refs is not None][:2] or list(by_label)[:2]
    chosen = st.multiselect("Pairs", list(by_label), default=default, key="export_pairs", max_selections=7)
    include = st.checkbox("Include the current pair as the first row", value=True, key="export_current")
    if st.button("Make the multi-pair figure", key="export_multi_make", icon=":material/view_agenda:"):
        with st.spinner("Explaining the pairs…"):
            expls = ([ctx.expl] if include else []) + [_explain_choice(ctx, gallery, by_label[c]) for c in chosen]
        if not expls:
            st.info("Choose at least one pair.")
            return
        names = [_pair_name(e) for e in expls]
        usable = {v.slug for v in _views(*expls)}
        slug = view if view in usable else "summary"
        try:
            # One figure, laid out once, saved in every format (PNG first: the preview is that file). The
            # session keeps the files, not the explanations behind them (3.9 MB each).
            files = multi_figure_files(ctx, expls, names, slug, ("png", "pdf", "svg"), dpi, width=width,
                                       font_size=font_size, background=background)
        except ValueError as exc:
            st.info(" ".join(str(exc).split()))
            return
        st.session_state[_MULTI] = (slug, len(expls), files)
    made = st.session_state.get(_MULTI)
    if made:
        slug, n, files = made
        st.caption(f"Last multi-pair figure: {n} pairs, view {slug}.")
        cols = st.columns(len(FORMATS))
        for col, (fmt, mime) in zip(cols, FORMATS):
            col.download_button(f"{n} pairs · {fmt.upper()}", data=files[fmt], file_name=f"apinet_{n}_pairs_{slug}.{fmt}",
                                mime=mime, key=f"dl_multi_{fmt}", on_click="ignore", icon=":material/download:",
                                width="stretch")
        st.image(files["png"], width="stretch")


def draw(ctx: Context) -> None:
    st.markdown("#### Export")
    st.caption("Publication figures are drawn by `apinet.render` with the current display settings (k, "
               "colormap, opacity, normalisation scope, CAM method, LTPA stage); PDF and SVG keep editable "
               "text. Signed maps (exact, class contrast) use a diverging colormap centred at zero. Arrays are the "
               "raw explanation (NPZ) and its scalars and settings (JSON).")
    _body(ctx)


@st.fragment
def _body(ctx: Context) -> None:
    """The choices, downloads and preview: a fragment, so changing the figure, width, font, resolution or
    the preview reruns this tab alone, not the page (it then writes the shared link itself)."""
    from app import state

    try:
        _draw_body(ctx)
    finally:
        state.write_url_once_restored()


def _draw_body(ctx: Context) -> None:
    e = ctx.expl
    views = {v.slug: v.label for v in _views(e)}
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    if st.session_state.get("export_view") not in views:
        st.session_state["export_view"] = next(iter(views))
    left, mid, right = st.columns([2, 1.6, 1])
    view = left.selectbox("Figure", list(views), key="export_view", format_func=views.get)
    width = mid.radio("Size", list(WIDTHS), format_func=WIDTHS.get, key="export_width", horizontal=True,
                      help="A paper column, two columns, or a 16:9 slide (13.3 × 7.5 in; use 12 pt or more).")
    font_size = right.select_slider("Font size (pt)", FONT_SIZES, key="export_font")
    row = st.columns([2, 1.6, 1])
    dpi = row[0].select_slider("PNG resolution (dpi)", [150, 200, 300, 600], key="export_dpi")
    background = row[1].radio("Background", list(BACKGROUNDS), format_func=BACKGROUNDS.get, key="export_bg",
                              horizontal=True, help="White for print; transparent to lay the figure over any "
                                                    "slide; dark for dark slides (text turns light).")
    look = {"width": width, "font_size": font_size, "background": background}
    stem = _slug(f"apinet_{ctx.image_a.name}_vs_{ctx.image_b.name}")
    cols = st.columns(5)
    for col, (fmt, mime) in zip(cols, FORMATS):
        col.download_button(f"Figure · {fmt.upper()}",
                            data=lambda fmt=fmt: figure_bytes(ctx, view, fmt, dpi, **look),
                            file_name=f"{stem}_{view}.{fmt}", mime=mime, key=f"dl_{fmt}", on_click="ignore",
                            icon=":material/download:", width="stretch")
    cols[3].download_button("Arrays · NPZ", data=lambda: npz_bytes(e), file_name=f"{stem}.npz",
                            mime="application/octet-stream", key="dl_npz", on_click="ignore",
                            icon=":material/data_array:", width="stretch")
    cols[4].download_button("Summary · JSON", data=lambda: e.to_json(), file_name=f"{stem}.json",
                            mime="application/json", key="dl_json", on_click="ignore",
                            icon=":material/data_object:", width="stretch")
    if st.toggle("Preview the figure", key="export_preview",
                 help="Draws the figure on every change while on (about a second)."):
        try:
            st.image(figure_bytes(ctx, view, "png", 100, **look), width="stretch")
        except ValueError as exc:
            st.info(" ".join(str(exc).split()))
    with st.expander("One map as its own file", icon=":material/crop_square:"):
        _panel_section(ctx, view, dpi, look, stem)
    with st.expander("Several pairs in one figure", icon=":material/view_agenda:"):
        _multi_section(ctx, view, dpi, width, font_size, background)
    with st.expander("What if? before / after figure", icon=":material/science:"):
        from app.tabs import whatif

        whatif.export_section(ctx, width, font_size, background)
    with st.expander("Figure settings as JSON (to remake it with apinet.render)", icon=":material/tune:"):
        st.code(figure_settings(ctx, view, dpi, **look).to_json(), language="json")


def _panel_section(ctx: Context, view: str, dpi: int, look: dict, stem: str) -> None:
    """Per-panel export: one map of the chosen figure, on A or on B, as a file of its own."""
    render = render_api()
    try:
        options = dict(render.panel_choices(ctx.expl, view, figure_settings(ctx, view, dpi, **look)))
    except ValueError as exc:
        st.info(" ".join(str(exc).split()))
        return
    left, right = st.columns([3, 1])
    key = left.selectbox("Map", list(options), format_func=options.get, key="export_panel")
    image = right.radio("Image", [1, 2], format_func=lambda i: "AB"[i - 1], key="export_panel_image",
                        horizontal=True)
    cols = st.columns(len(FORMATS))
    name = _slug(f"{stem}_{view}_{key}_{'AB'[image - 1]}")
    for col, (fmt, mime) in zip(cols, FORMATS):
        col.download_button(f"Map · {fmt.upper()}",
                            data=lambda fmt=fmt: panel_bytes(ctx, view, key, image, fmt, dpi, **look),
                            file_name=f"{name}.{fmt}", mime=mime, key=f"dl_panel_{fmt}", on_click="ignore",
                            icon=":material/download:", width="stretch")
