"""Drive the real app in Debian Chromium: pick a pair, change a control, upload, download a figure.

The server (``streamlit run streamlit_app.py`` on a free localhost port against tiny randomly
initialised checkpoints, see ``tests/app_checkpoints.py``; no demo checkpoints, no network), the
Chromium and the screenshot folder are the session fixtures of ``tests/e2e/conftest.py``, shared with
the other browser modules. Screenshots go to a temporary folder, or to ``$APINET_SCREENSHOTS`` when
set. Skipped only when no ``chromium`` is on PATH (Playwright's own browsers are never downloaded).
"""

from __future__ import annotations

import io
import re
import shutil
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
READY = ".apinet-ready"
WIDE = {"width": 1400, "height": 1000}
NARROW = {"width": 430, "height": 900}


def _run_id(page) -> int:
    marker = page.locator(READY)
    if marker.count() == 0:
        return -1
    return int(marker.first.get_attribute("data-run") or -1)


def wait_ready(page, after: int = -1, timeout: float = 90) -> int:
    """Wait until a script run newer than ``after`` has finished (marker updated, no running status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        run = _run_id(page)
        if not running and run > after:
            page.wait_for_timeout(300)  # let the last deltas paint
            if page.locator('[data-testid="stStatusWidget"]').count() == 0 and _run_id(page) == run:
                return run
        page.wait_for_timeout(200)
    raise AssertionError(f"the app did not finish a run after #{after} within {timeout}s")


BACKGROUND = "() => getComputedStyle(document.querySelector('.stApp')).backgroundColor"


def switch_theme(page, scheme: str) -> str:
    """Switch the browser's colour scheme (the app follows it live, without a run) and return the
    page's background once it has followed."""
    page.emulate_media(color_scheme=scheme)
    page.wait_for_function(f"""() => {{
        const [r, g, b] = getComputedStyle(document.querySelector('.stApp')).backgroundColor.match(/\\d+/g).map(Number);
        return {'r + g + b < 150' if scheme == 'dark' else 'r + g + b > 700'}; }}""", timeout=10_000)
    return page.evaluate(BACKGROUND)


def shoot_both_themes(page, path: str, full_page: bool = False) -> None:
    """Photograph the page in the light and the dark theme (``path`` holds ``{scheme}``), then back to
    light: the layout is the same in both, and the page follows the browser's theme without a run."""
    for scheme in ("light", "dark"):
        switch_theme(page, scheme)
        page.screenshot(path=path.format(scheme=scheme), full_page=full_page)
    switch_theme(page, "light")


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()


def _png(width: int = 96, colour=(40, 120, 200)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, width), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def click_plotly_point(page, selector: str, index: int) -> None:
    """Hover, then click the centre of marker ``index`` of the Plotly chart under ``selector`` (Plotly
    picks the point it hovers)."""
    point = page.locator(f"{selector} .scatterlayer path.point").nth(index)
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    assert box is not None, "cell marker not drawn"
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)


def _choose(page, key: str, option: str) -> None:
    """Pick ``option`` in the selectbox with widget key ``key`` (Streamlit adds the class st-key-KEY)."""
    page.locator(f".st-key-{key} [role=combobox]").first.click()
    page.locator('[role="option"]').filter(has_text=re.compile(rf"^{re.escape(option)}$")).first.click()


def test_pick_pair_change_control_upload_and_download(app_url, browser, shots):
    page = browser.new_page(viewport=WIDE)
    page.goto(app_url)
    run = wait_ready(page, timeout=120)
    _no_exception(page)
    assert page.get_by_text("How API-Net compares this pair, step by step").count() == 1
    page.screenshot(path=str(shots / "01_first_run_wide.png"), full_page=False)

    # Pick a pair: the paper's inter pair for A, then swap.
    page.get_by_role("button", name=re.compile("Other-class B")).click()
    run = wait_ready(page, run)
    assert page.get_by_text("nearest other-class (inter) partner").count() == 1
    b_before = re.search(r"[?&]b=([^&]+)", page.url).group(1)
    page.get_by_role("button", name=re.compile("Swap A")).click()
    run = wait_ready(page, run)
    assert re.search(r"[?&]a=([^&]+)", page.url).group(1) == b_before
    _no_exception(page)

    # Change a display control: the colormap (URL follows, no exception).
    _choose(page, "cmap", "inferno")
    run = wait_ready(page, run)
    assert "cmap=inferno" in page.url
    page.get_by_role("tab", name="Top-k channels").click()
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "02_channels_wide.png"), full_page=False)

    # Upload two images of our own.
    page.get_by_text("Upload your own two images").click()
    inputs = page.locator('[data-testid="stFileUploader"] input[type="file"]')
    inputs.nth(0).set_input_files({"name": "blue.png", "mimeType": "image/png", "buffer": _png()})
    run = wait_ready(page, run)
    inputs.nth(1).set_input_files({"name": "orange.png", "mimeType": "image/png", "buffer": _png(colour=(230, 120, 20))})
    run = wait_ready(page, run)
    assert page.locator(".st-key-a [role=combobox]").input_value() == "Uploaded: blue.png"
    assert page.locator(".st-key-b [role=combobox]").input_value() == "Uploaded: orange.png"
    assert "&a=" not in page.url  # uploads stay in the session, never in the URL
    _no_exception(page)

    # A broken upload: one clear line, the app keeps running.
    inputs.nth(0).set_input_files({"name": "broken.png", "mimeType": "image/png", "buffer": b"\x89PNG not really"})
    run = wait_ready(page, run)
    alert = page.locator('[data-testid="stAlertContentError"]').filter(has_text="Upload refused")
    assert alert.count() == 1
    message = alert.first.locator('[data-testid="stMarkdownContainer"]').inner_text().strip()
    assert message.startswith("Upload refused — broken.png:") and "\n" not in message
    _no_exception(page)

    # Download the figure (PNG and PDF) from the Export tab and check the bytes.
    page.get_by_role("tab", name="Export").click()
    for fmt, magic in (("PNG", b"\x89PNG\r\n\x1a\n"), ("PDF", b"%PDF")):
        with page.expect_download(timeout=60_000) as info:
            page.get_by_role("button", name=re.compile(f"Figure · {fmt}")).click()
        path = info.value.path()
        data = Path(path).read_bytes()
        assert data.startswith(magic) and len(data) > 2000, (fmt, len(data))
    page.screenshot(path=str(shots / "03_export_wide.png"), full_page=False)
    page.close()


def test_url_restores_state_and_narrow_layout(app_url, browser, shots):
    a, b = "test_0005_streaked-warbler", "test_0000_red-crowned-finch"
    shared = f"{app_url}/?a={a}&b={b}&cmap=turbo&k=3&scope=models"
    shared += "&tab=channels"  # the link names its tab (only the open tab is drawn)
    narrow = browser.new_page(viewport=NARROW)
    narrow.goto(shared)
    wait_ready(narrow, timeout=120)
    _no_exception(narrow)
    assert "cmap=turbo" in narrow.url and "k=3" in narrow.url and f"a={a}" in narrow.url and f"b={b}" in narrow.url
    assert narrow.locator(".st-key-a [role=combobox]").input_value().endswith("Streaked Warbler")
    assert narrow.get_by_text("Top-3 channels", exact=False).count() >= 1
    narrow.screenshot(path=str(shots / "04_narrow.png"), full_page=False)
    narrow.close()
