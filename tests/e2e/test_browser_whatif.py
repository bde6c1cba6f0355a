"""The What if? tab in Debian Chromium: click a cell of A's occlusion grid, watch the link and the numbers
follow, undo it; photographs in the light and the dark theme. The session's server and fixtures
(tests/e2e/conftest.py: tiny random checkpoints, a 4 x 4 grid)."""

from __future__ import annotations

import re
import urllib.parse

import pytest

from tests.e2e.test_browser import WIDE, _no_exception, click_plotly_point, shoot_both_themes, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


PAIR = "?a=test_0000_red-crowned-finch&b=test_0005_streaked-warbler&tab=whatif"


def _whatif(page) -> str:
    query = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    return query.get("whatif", [""])[0]


def _click_cell(page, image: int, index: int) -> None:
    """Click cell marker ``index`` of image ``image``'s grid."""
    click_plotly_point(page, f"[class*='st-key-whatif_grid{image}_']", index)


def _wait_for(page, predicate, timeout_ms: int = 30_000) -> None:
    for _ in range(timeout_ms // 200):
        if predicate():
            return
        page.wait_for_timeout(200)
    raise AssertionError("the page did not change in time")


def test_click_a_cell_to_occlude_it_and_undo(app_url, browser, shots):
    page = browser.new_page(viewport={**WIDE, "height": 2200})
    page.goto(app_url + PAIR)
    wait_ready(page, timeout=120)
    _no_exception(page)
    assert page.get_by_text("What if? Change the pair, and API-Net recomputes").count() == 1
    page.locator("[class*='st-key-whatif_grid1_'] .main-svg").first.wait_for(timeout=30_000)
    assert page.get_by_text("A: 0 of 16 cells hidden").count() >= 1
    _click_cell(page, 1, 5)  # row 1, column 1 of the 4 x 4 grid
    _wait_for(page, lambda: _whatif(page).startswith("o1:4x4:"))
    cells = int(_whatif(page).split(":")[2], 16)
    assert cells == 1 << (16 - 1 - 5)  # exactly cell 5 (row-major, first cell = highest bit)
    _wait_for(page, lambda: page.get_by_text("A: 1 of 16 cells hidden").count() >= 1)
    # one backbone pass for A, or none when this server already saw these cells (the pair's cache)
    assert page.get_by_text(re.compile(r"with 1 backbone pass|occluded images' features are reused")).count() >= 1
    _no_exception(page)
    page.get_by_role("heading", name=re.compile("What if")).first.evaluate("e => e.scrollIntoView()")
    page.wait_for_timeout(500)
    shoot_both_themes(page, str(shots / "whatif_{scheme}.png"))
    page.get_by_role("button", name=re.compile("Undo last change")).click()
    _wait_for(page, lambda: _whatif(page) == "")
    _wait_for(page, lambda: page.get_by_text("A: 0 of 16 cells hidden").count() >= 1)
    _no_exception(page)
    page.close()
