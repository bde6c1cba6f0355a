"""Hostile class names (a model card's and a gallery.json's) in the real app in Debian Chromium:
shown as literal text, never turned into <img>, <iframe>, links or math, and no request leaves for
the addresses they name. Skipped only when no ``chromium`` is on PATH."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.server import serve_assets
from tests.e2e.test_browser import CHROMIUM, WIDE, _no_exception

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hostile_url(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no `chromium` on PATH (install Debian's chromium to run the browser test)")
    from tests.test_untrusted_text import make_hostile_assets

    assets = make_hostile_assets(tmp_path_factory.mktemp("hostile-assets"))
    yield from serve_assets(tmp_path_factory, assets)


def _wait_idle(page, timeout: float) -> None:
    """Until a finished run is painted: the ready marker exists and no run is in progress (read in one
    page.evaluate, so an element replaced between two calls cannot stall it)."""
    deadline = time.monotonic() + timeout
    state = """() => {
        const marker = document.querySelector('.apinet-ready');
        const running = document.querySelector('[data-testid="stStatusWidget"]') !== null;
        return marker && !running ? Number(marker.getAttribute('data-run')) : -1;
    }"""
    while time.monotonic() < deadline:
        run = page.evaluate(state)
        if run >= 1:
            page.wait_for_timeout(500)
            if page.evaluate(state) == run:
                return
        page.wait_for_timeout(300)
    raise AssertionError(f"the app did not finish a run within {timeout}s")


def test_hostile_names_render_as_literal_text_in_chromium(hostile_url, browser):
    from tests.test_untrusted_text import HOSTILE

    page = browser.new_page(viewport=WIDE)
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(hostile_url)
    _wait_idle(page, timeout=300)
    _no_exception(page)
    page.get_by_text("Browse the gallery by class").first.click()  # thumbnails captioned by class
    page.wait_for_timeout(1000)
    _wait_idle(page, timeout=120)
    found = page.evaluate("""() => {
        const main = document.querySelector('[data-testid="stAppViewContainer"]') || document.body;
        const text = main.textContent;
        return {
            text,
            imgs: [...document.querySelectorAll('img')].map(i => i.getAttribute('src') || ''),
            iframes: document.querySelectorAll('iframe').length,
            links: [...document.querySelectorAll('a')].map(a => a.getAttribute('href') || ''),
            mathSource: [...document.querySelectorAll('.katex annotation')].map(k => k.textContent),
            strong: [...document.querySelectorAll('strong')].map(s => s.textContent),
        };
    }""")
    page.close()
    text = found["text"].replace("\u2060", "")  # app.text.md's invisible word joiner in bare URLs
    for name in HOSTILE:  # every hostile name appears as the literal characters somewhere on the page
        assert name in text, name
    assert found["iframes"] == 0
    assert not [src for src in found["imgs"] if src == "x" or "evil" in src], found["imgs"]
    assert not [href for href in found["links"] if "evil" in href], found["links"]
    # $q^{99}$ was not typeset as math: no TeX source on the page holds the superscript (the walk-through
    # may name the class, as plain \text{...} with TeX's special characters removed)
    assert not [tex for tex in found["mathSource"] if "q^{99}" in tex.replace(" ", "")], found["mathSource"]
    assert "bold" not in found["strong"]  # **bold** inside a name is not bold
    assert not [url for url in requests if "evil.example" in url or url.endswith("/x")], requests
    assert dialogs == []
