"""Issue #24 in Chromium: the tab bar on a 900 px screen, the phone layout at 390 px (equations, chart
toolbar, A and B level, tabs sooner), selectors that show their whole text, and no stale card after an
upload. The session's server and fixtures (``tests/e2e/conftest.py``: tiny checkpoints, no network)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser import _no_exception, shoot_both_themes, wait_ready


pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
LONGEST = "test_0003_golden-double-barred-finch"  # the longest class name of SynthBirds

_TAB_Y = "() => document.querySelector('[role=tablist]').getBoundingClientRect().top"
_BOX = "(el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }"


def _page(browser, url: str, viewport: dict, query: str = "", scheme: str = "light"):
    page = browser.new_page(viewport=viewport, color_scheme=scheme)
    page.goto(url + query)
    run = wait_ready(page, timeout=180)
    _no_exception(page)
    return page, run


def test_tab_bar_shows_on_a_900px_desktop_screen(app_url, browser, shots):
    page, _ = _page(browser, app_url, DESKTOP)
    top = page.evaluate(_TAB_Y)
    height = page.evaluate("() => document.querySelector('[role=tablist]').getBoundingClientRect().height")
    page.screenshot(path=str(shots / "24_desktop_900.png"))
    print(f"\ntab bar top at 1440x900: {top:.0f} px")
    assert top + height <= DESKTOP["height"], top
    page.close()


def _overflowing(page, selector: str) -> list[str]:
    return page.evaluate("""(sel) => [...document.querySelectorAll(sel)]
        .filter(el => el.scrollWidth > el.clientWidth + 1).map(el => el.value || el.textContent)""", selector)


def test_selectors_show_their_whole_text_and_ids_on_a_phone(app_url, browser, shots):
    query = f"?a={LONGEST}&b=test_0001_golden-crowned-finch"
    page, _ = _page(browser, app_url, DESKTOP, query)
    boxes = ".st-key-pair_ab [role=combobox]"
    # Image A / B, Explain A / B as (a widget's code may still be loading when the run has ended)
    expect(page.locator(boxes)).to_have_count(4)
    assert _overflowing(page, boxes) == []
    page.close()
    page, _ = _page(browser, app_url, PHONE, query)
    page.screenshot(path=str(shots / "24_phone_selectors.png"))
    for slot in ("a", "b"):  # the image id leads the label and fits the box
        box = page.locator(f".st-key-{slot} [role=combobox]")
        value = box.input_value()
        assert value.split(" · ")[0] in ("0003", "0001"), value  # the id, less the "test_" all ids share
        fits = page.evaluate("""(el) => { const c = document.createElement('canvas').getContext('2d');
            const s = getComputedStyle(el); c.font = `${s.fontSize} ${s.fontFamily}`;
            const id = el.value.split(' · ')[0];
            return c.measureText(id).width <= el.clientWidth - parseFloat(s.paddingLeft); }""",
                             box.element_handle())
        assert fits, value
    page.close()


def test_phone_layout_at_390px(app_url, browser, shots):
    """At 390 x 844: the tabs within 1.5 screens, A and B level, the equations within the screen, the
    chart's toolbar off its legend; photographed in both themes."""
    page, run = _page(browser, app_url, PHONE, f"?a={LONGEST}&b=test_0001_golden-crowned-finch")
    # the tabs start within one and a half screens (the pair's buttons and metrics sit side by side)
    top = page.evaluate(_TAB_Y)
    print(f"\ntab bar top at 390x844: {top:.0f} px")
    assert top < 1.5 * PHONE["height"], top
    # A and B level even when B's heading wraps (the longest class name is on A here)
    expect(page.locator(".st-key-pair_ab [data-testid=stImage] img")).to_have_count(2)
    tops = page.evaluate("() => [...document.querySelectorAll('.st-key-pair_ab [data-testid=stImage] img')]"
                         ".map(i => i.getBoundingClientRect().top)")
    assert len(tops) == 2 and abs(tops[0] - tops[1]) <= 2, tops
    shoot_both_themes(page, str(shots / "24_phone_first_{scheme}.png"), full_page=True)
    # the walk-through's equations fit the screen: they wrap at relations and operators (they were cut
    # off at the screen's edge, ‖x₂‖₂ out of sight)
    displays = page.locator(".katex-display")
    displays.nth(8).wait_for(timeout=30_000)  # the equations may still be typesetting when the run has ended
    assert displays.count() >= 9
    widths = displays.evaluate_all(
        "els => els.map(d => [d.scrollWidth, d.clientWidth, d.querySelector('.katex-html').getBoundingClientRect().right,"
        " d.querySelector('.katex-html').getBoundingClientRect().height])")
    for scroll, client, right, _ in widths:
        assert scroll <= client + 1 and right <= PHONE["width"] + 1, widths
    assert any(height > 40 for *_, height in widths)  # some equations took two lines to fit
    # the gates chart: no toolbar over its legend, even while touched / hovered
    page.get_by_role("tab", name="Mutual & gates").click()
    run = wait_ready(page, run)
    chart = page.locator(".js-plotly-plot").first
    chart.hover()
    page.wait_for_timeout(400)
    legend = chart.locator(".legend").first.evaluate(_BOX)
    for bar in page.locator(".js-plotly-plot .modebar").all():
        if bar.is_visible():
            left, top_, right, bottom = bar.evaluate(_BOX)
            assert right <= legend[0] or left >= legend[2] or bottom <= legend[1] or top_ >= legend[3]
    shoot_both_themes(page, str(shots / "24_phone_gates_{scheme}.png"))
    _no_exception(page)
    page.close()


def _slow_jpeg() -> bytes:
    """A large noisy photo: decoding it takes long enough (three times: validation, prediction,
    explanation) for the page to show its state between the new name and the new explanation."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (2800, 2800, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_an_upload_never_shows_the_old_picture_under_the_new_name(app_url, browser):
    page, run = _page(browser, app_url, DESKTOP)
    caption = page.locator(".st-key-pair_ab [data-testid=stCaptionContainer]").first
    expect(caption).to_have_text(re.compile(r"^API-Net predicts"), timeout=60_000)
    run = wait_ready(page, timeout=60)  # the run that drew it (an interrupted run may have come first)
    _no_exception(page)
    old = caption.inner_text()
    page.get_by_text("Upload your own two images").click()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').nth(0).set_input_files(
        {"name": "fresh.jpg", "mimeType": "image/jpeg", "buffer": _slow_jpeg()})
    seen_new_name, stale = False, []
    for _ in range(200):  # watch the page while the new pair is explained
        state = page.evaluate("""() => {
            const box = document.querySelector('.st-key-a [role=combobox]');
            const cards = [...document.querySelectorAll('.st-key-pair_ab [data-testid=stElementContainer]')]
              .filter(el => el.querySelector('img, [data-testid=stCaptionContainer]'));
            return [box ? box.value : '', cards.filter(el => parseFloat(getComputedStyle(el).opacity) > 0.5)
              .map(el => el.innerText.slice(0, 60))]; }""")
        if state[0] == "Uploaded: fresh.jpg":
            seen_new_name = True
            shown = [t for t in state[1] if t == old[:60]]
            if shown:
                stale.append(shown)
        if page.locator(".apinet-ready").first.get_attribute("data-run") not in (None, str(run)) and seen_new_name \
                and page.locator('[data-testid="stStatusWidget"]').count() == 0:
            break
        page.wait_for_timeout(25)
    assert seen_new_name
    assert stale == [], stale  # A's old prediction never stood, undimmed, under the new file name
    wait_ready(page, run)
    _no_exception(page)
    page.close()
