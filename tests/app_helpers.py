"""What the AppTest modules share: the app under test, the no-exception check, opening a tab, and
the explanation of the app's current pair (the same cached call the page made)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")


def app_test(timeout: float = 120, **query):
    """``AppTest`` of ``streamlit_app.py``; ``query`` fills the link's query parameters (``a=..., b=...``)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=timeout)
    if query:
        at.query_params.update(query)
    return at


def ok(at) -> None:
    """No exception box on the page (its messages and stack traces, when there is one)."""
    assert not at.exception, [e.message + "\n" + "\n".join(e.stack_trace or []) for e in at.exception]


def send_label(element, text: str) -> None:
    """Make a selectbox send ``text`` on the next run, as the browser does: it sends the label it shows,
    and a label from an earlier run (its options' labels changed since) is not one of the options."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    class SentByTheBrowser(type(element)):
        @property
        def _widget_state(self):
            ws = WidgetState()
            ws.id = self.id
            ws.string_value = text
            return ws

    element.__class__ = SentByTheBrowser


def open_tab(at, label: str):
    """Open one tab (only the open tab runs) and run the script."""
    from app.tabs import TAB_KEY

    at.session_state[TAB_KEY] = label
    at.run()
    ok(at)
    return at


def current_pair(env, at):
    """``(gallery, apinet checkpoint, baseline or None, image A, image B)`` as the app has them."""
    from app import picker, resources

    gallery = resources.load_gallery(env["gallery"].as_posix())
    found, _ = resources.discover_checkpoints(env["checkpoints"].as_posix(), env["runs"].as_posix())
    ckpt = next(c for c in found if c.label == at.session_state.ckpt)
    base = next((c for c in found if c.label == at.session_state.base), None)
    a, b = (picker.resolve(at.session_state[s], gallery) for s in ("a", "b"))
    return gallery, ckpt, base, a, b


def explanation(env, at, *, baseline: bool = True):
    """The explanation of the app's current pair (``baseline=False``: without the baseline)."""
    from app import resources

    _, ckpt, base, a, b = current_pair(env, at)
    base = base if baseline else None
    request = resources.ExplainRequest(ckpt.path, ckpt.sha256, base.path if base else None,
                                       base.sha256 if base else None, a.sha256, b.sha256, (a.label, b.label),
                                       at.session_state.rank)
    return resources.explain(request, a.data, b.data)


def tab_context(env, at, expl):
    """The ``app.tabs.Context`` a tab draws with for the app's current pair (API-Net alone; k = 3,
    viridis, alpha 0.5, per-pair scale, layer4, Grad-CAM), for the export functions."""
    from app.tabs import common

    _, ckpt, _, a, b = current_pair(env, at)
    settings = common.DisplaySettings(3, "viridis", 0.5, "pair", "layer4", "gradcam")
    return common.Context(expl, settings, a, b, ckpt, None)
