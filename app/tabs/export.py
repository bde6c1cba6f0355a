"""Export: publication figures (PDF, SVG, PNG), the raw arrays (NPZ) and the summary (JSON)."""

from __future__ import annotations

import streamlit as st

from app.tabs.common import Context, render_api

__all__ = ["draw"]


_FIGURE_VIEWS = {"summary": "Summary (images, top channels, gates, scores)", "channels": "Top-k channels",
                 "ltpa": "LTPA maps (current stage)", "cams": "CAMs (current method)", "a2": "A² maps"}


def figure_settings(ctx: Context, view: str, dpi: int):
    """The :class:`apinet.render.FigureSettings` of the current display settings."""
    e, s = ctx.expl, ctx.settings
    return render_api().FigureSettings(
        view=view, cmap=s.cmap, alpha=s.alpha, scope=s.scope, k=s.k, dpi=dpi,
        channel_sets=[c for c in ("apinet_gate1", "apinet_gate2", "baseline_top") if c in e.channels],
        ltpa_keys=[k for k in e.ltpa if k.endswith("/" + s.stage)] or None,
        cam_keys=[k for k in e.cams if k.endswith("/" + s.cam)] or None,
    )


def figure_bytes(ctx: Context, view: str, fmt: str, dpi: int) -> bytes:
    """The figure of ``view`` as PDF / SVG / PNG bytes (drawn by apinet.render; no model runs)."""
    import tempfile

    import matplotlib.pyplot as plt

    render = render_api()
    settings = figure_settings(ctx, view, dpi)
    fig = render.pair_figure(ctx.expl, view, settings)
    try:
        with tempfile.TemporaryDirectory(prefix="apinet-fig-") as tmp:
            path = render.save_figure(fig, f"{tmp}/figure.{fmt}", dpi=dpi)
            return path.read_bytes()
    finally:
        plt.close(fig)


def npz_bytes(expl) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="apinet-npz-") as tmp:
        return expl.to_npz(f"{tmp}/explanation.npz").read_bytes()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:60]


def draw(ctx: Context) -> None:
    e = ctx.expl
    st.markdown("#### Export")
    st.caption("Publication figures are drawn by `apinet.render` with the current display settings (k, "
               "colormap, opacity, normalisation scope, CAM method, LTPA stage); PDF and SVG keep editable "
               "text. Arrays are the raw explanation (NPZ) and its scalars and settings (JSON).")
    views = [v for v in _FIGURE_VIEWS if v != "a2" or e.a2]
    left, right = st.columns([2, 1])
    view = left.selectbox("Figure", views, key="export_view", format_func=_FIGURE_VIEWS.get)
    dpi = right.select_slider("PNG resolution (dpi)", [150, 200, 300, 600], value=300, key="export_dpi")
    stem = _slug(f"apinet_{ctx.image_a.name}_vs_{ctx.image_b.name}")
    cols = st.columns(5)
    for col, fmt, mime in ((cols[0], "pdf", "application/pdf"), (cols[1], "svg", "image/svg+xml"),
                           (cols[2], "png", "image/png")):
        col.download_button(f"Figure · {fmt.upper()}", data=lambda fmt=fmt: figure_bytes(ctx, view, fmt, dpi),
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
            st.image(figure_bytes(ctx, view, "png", 100), width="stretch")
        except ValueError as exc:
            st.info(" ".join(str(exc).split()))
    with st.expander("Figure settings as JSON (to remake it with apinet.render)", icon=":material/tune:"):
        st.code(figure_settings(ctx, view, dpi).to_json(), language="json")
