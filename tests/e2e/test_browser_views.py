"""The views in Debian Chromium: click a channel, light and dark themes, equations on a phone, large maps.

The session's server and fixtures (``tests/e2e/conftest.py``: tiny random checkpoints, no network). With
``$APINET_SCREENSHOTS=DIR`` every tab is photographed whole in the light and the dark theme at 1440 px
into DIR, so a person can look at them (skipped otherwise: they take seconds each and assert nothing).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app import tabs as app_tabs
from tests.e2e.server import keep_screenshots
from tests.e2e.test_browser import BACKGROUND, _no_exception, _run_id, switch_theme, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TABS = [(tab.slug, tab.label) for tab in app_tabs.TABS]  # every tab the app registers
WIDE = {"width": 1440, "height": 1000}


def _open_tab(page, label: str, run: int) -> int:
    page.get_by_role("tab", name=label).click()
    run = wait_ready(page, run)
    _no_exception(page)
    return run


def _shoot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to its height
    (only when the screenshots are kept: ``$APINET_SCREENSHOTS``)."""
    if not keep_screenshots():
        return
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], "
                           "[data-testid=stAppViewContainer]')].map(el => el.scrollHeight))")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(int(height), 8000)})
    page.wait_for_timeout(700)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)


def _luminance(css: str) -> float:
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+(?:\.\d+)?", css)[:3])
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(fg: str, bg: str) -> float:
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


_STYLE = "(sel) => { const el = document.querySelector(sel); return el ? getComputedStyle(el).color : null; }"


def test_clicking_a_dot_inspects_that_channel_and_the_inspector_reruns_alone(app_url, browser):
    page = browser.new_page(viewport=WIDE)
    page.goto(app_url)
    run = wait_ready(page, timeout=120)
    run = _open_tab(page, "Mutual & gates", run)
    combo = page.locator(".st-key-channel [role=combobox]")
    before = combo.input_value()
    # Click a highlighted (top-k) dot of the scatter that is not the inspected channel.
    chart = page.locator(".st-key-chart_scatter")
    chart.scroll_into_view_if_needed()
    points = chart.locator(".scatterlayer .trace").nth(1).locator(".points path")
    points.first.wait_for(timeout=30_000)  # Plotly draws its SVG after the run's last delta
    for index in range(points.count()):
        box = points.nth(index).bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        hover = page.locator(".st-key-chart_scatter .hoverlayer .hovertext").first
        hover.wait_for(timeout=5_000)
        channel = int(re.search(r"channel (\d+)", hover.text_content()).group(1))
        if not before.startswith(f"#{channel} "):
            break
    page.mouse.click(x, y)
    run = wait_ready(page, run)
    _no_exception(page)
    assert combo.input_value().startswith(f"#{channel} "), (combo.input_value(), channel)
    assert f"channel={channel}" in page.url
    inspector = page.locator('[data-testid="stMarkdownContainer"]').filter(has_text="z₁ = x_m·x₁").first.inner_text()

    # The selectbox is the fallback; choosing there reruns the inspector fragment only (no page run).
    combo.scroll_into_view_if_needed()
    combo.click()
    page.wait_for_timeout(300)
    page.keyboard.type(before.split()[0] + " ")  # back to the first channel, by its label
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")
    page.wait_for_function("(before) => !location.search.includes(before)", arg=f"channel={channel}",
                           timeout=30_000)
    page.wait_for_timeout(500)
    assert _run_id(page) == run  # the page's end-of-run marker did not move: only the fragment ran
    assert combo.input_value() == before
    assert page.locator('[data-testid="stMarkdownContainer"]').filter(has_text="z₁ = x_m·x₁").first.inner_text() != inspector
    _no_exception(page)
    page.close()


def _check_theme(page, label: str, slug: str, background: str) -> None:
    """The open tab's text, captions, chart ticks and dimmed notes are readable on ``background``."""
    text = page.evaluate(_STYLE, '[role="tabpanel"]:not([hidden]) [data-testid="stMarkdownContainer"] :is(p, h4)')
    assert text and _contrast(text, background) >= 7, (label, text, background)
    caption = page.evaluate(_STYLE, '[role="tabpanel"]:not([hidden]) [data-testid="stCaptionContainer"]')
    if caption:
        assert _contrast(caption, background) >= 4.5, (label, caption, background)
    if slug == "gates":  # the chart's own text (axis labels) follows the theme too
        tick = page.evaluate("() => getComputedStyle(document.querySelector("
                             "'.st-key-chart_gates .ytick text')).fill")
        assert _contrast(tick, background) >= 3, (tick, background)
    if slug == "channels":  # the dimmed ranking note stays readable
        muted = page.locator(".apinet-muted").first
        colour = muted.evaluate("el => getComputedStyle(el).color")
        opacity = float(muted.evaluate("el => getComputedStyle(el).opacity"))
        assert opacity >= 0.6 and _contrast(colour, background) >= 7


def test_every_view_in_the_browsers_theme(app_url, browser, shots):
    """The page opens in the browser's theme (dark here) and follows it when it changes: every tab is
    read in the dark and in the light theme (one walk; the switch re-themes the page without a run)."""
    page = browser.new_page(viewport=WIDE, color_scheme="dark")
    page.goto(app_url)
    run = wait_ready(page, timeout=120)
    assert _luminance(page.evaluate(BACKGROUND)) < 0.05  # dark on arrival, before any switch
    for i, (slug, label) in enumerate(TABS):
        if i:  # the walk-through is open on arrival (clicking an open tab runs nothing)
            run = _open_tab(page, label, run)
        if slug == "gates":  # Plotly draws its SVG after the run's last delta
            page.locator(".st-key-chart_gates .main-svg").first.wait_for(timeout=30_000)
        for scheme in ("dark", "light") if i % 2 == 0 else ("light", "dark"):
            background = switch_theme(page, scheme)
            assert _luminance(background) < 0.05 if scheme == "dark" else _luminance(background) > 0.9, background
            _shoot(page, shots / f"{scheme}_{slug}.png")
            _check_theme(page, label, slug, background)
        assert _run_id(page) == run  # the theme switches ran nothing
    page.close()


def test_large_maps_draw_maps_about_twice_as_wide(app_url, browser, shots):
    page = browser.new_page(viewport=WIDE)
    page.goto(app_url)
    run = wait_ready(page, timeout=120)
    run = _open_tab(page, "LTPA attention", run)
    maps = page.locator('[role="tabpanel"]:not([hidden]) [data-testid="stImage"]').filter(
        has=page.locator('[data-testid="stImageCaption"]', has_text=re.compile("^A$"))).locator("img")
    small = maps.first.bounding_box()["width"]
    page.locator(".st-key-large_maps label").first.click()
    run = wait_ready(page, run)
    large = maps.first.bounding_box()["width"]
    assert large >= 1.4 * small, (small, large)
    _shoot(page, shots / "light_ltpa_large.png")
    page.close()


def test_export_choices_rerun_the_export_tab_alone(app_url, browser):
    """The Export tab's choices are a fragment: a new paper width redraws the tab, not the page."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(app_url)
    run = wait_ready(page, timeout=180)
    run = _open_tab(page, "Export", run)
    settings = page.locator('[data-testid="stExpander"]').filter(has_text="Figure settings as JSON")
    settings.first.click()
    page.wait_for_timeout(300)
    assert '"width": "single"' in settings.first.inner_text()  # the default: one column
    page.get_by_text("two columns", exact=False).first.click()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stExpander]')]"
                           ".some(e => e.innerText.includes('\"width\": \"double\"'))", timeout=30_000)
    page.wait_for_timeout(500)
    assert _run_id(page) == run  # the page's end-of-run marker did not move: only the fragment ran
    _no_exception(page)
    page.close()
