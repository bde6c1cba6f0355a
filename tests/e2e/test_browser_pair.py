"""The pair-native tabs in Debian Chromium: click positions on A in "Where does it match?" and watch
B's similarity map follow; open "Why A, not B" (with the part outline) and "Exact maps" and take
screenshots. The session's server and fixtures
(tests/e2e/conftest.py: tiny random checkpoints)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.e2e.server import keep_screenshots
from tests.e2e.test_browser import WIDE, _no_exception, click_plotly_point, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


PAIR = "?a=test_0000_red-crowned-finch&b=test_0001_golden-crowned-finch"  # sibling classes: the crown differs


def _slider(page, key: str) -> int:
    return int(page.locator(f'.st-key-{key} [data-testid="stSliderThumbValue"]').first.inner_text())


def _best(page) -> str:
    return page.get_by_text(re.compile(r"^Best match on B")).first.inner_text()


def _map_src(page) -> str:
    return page.locator('.st-key-match_map [data-testid="stImage"] img').first.get_attribute("src") or ""


def _click_cell(page, index: int) -> None:
    click_plotly_point(page, ".st-key-match_click", index)


def _shoot(page, heading: str, path: Path) -> None:
    """A tall screenshot of the open tab from its heading down (the page scrolls inside Streamlit's main
    container, so full_page would show the top only); only when they are kept (``$APINET_SCREENSHOTS``)."""
    title = page.get_by_role("heading", name=heading).first
    title.wait_for(state="attached")  # the tab's heading is there either way
    if not keep_screenshots():
        return
    page.set_viewport_size({"width": WIDE["width"], "height": 2000})
    title.evaluate("e => e.scrollIntoView()")
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=False)
    page.set_viewport_size(WIDE)


def _wait_cell(page, cell: tuple[int, int], timeout: float = 30) -> float:
    """Seconds until the sliders show ``cell`` (a click reruns only the tab's fragment)."""
    tic = time.monotonic()
    while time.monotonic() - tic < timeout:
        if (_slider(page, "match_row"), _slider(page, "match_col")) == cell:
            return time.monotonic() - tic
        page.wait_for_timeout(50)
    raise AssertionError(f"the click did not pick cell {cell}: sliders at "
                         f"{(_slider(page, 'match_row'), _slider(page, 'match_col'))}")


def test_match_tab_follows_clicks_and_pair_tabs_render(app_url, browser, shots):
    page = browser.new_page(viewport=WIDE)
    page.goto(app_url + "/" + PAIR)
    run = wait_ready(page, timeout=120)
    _no_exception(page)

    page.get_by_role("tab", name="Where does it match?").click()
    run = wait_ready(page, run)
    _no_exception(page)
    points = page.locator(".st-key-match_click .scatterlayer path.point")
    points.first.wait_for(timeout=30_000)  # Plotly draws its SVG after the run's last delta
    n = points.count()
    side = int(round(n ** 0.5))
    assert side * side == n and n >= 4, n
    before = (_slider(page, "match_row"), _slider(page, "match_col"), _map_src(page))
    _click_cell(page, 0)
    first_wait = _wait_cell(page, (0, 0))
    page.wait_for_timeout(400)
    first = _map_src(page), _best(page)
    _click_cell(page, n - 1)
    second_wait = _wait_cell(page, (side - 1, side - 1))
    page.wait_for_timeout(400)
    second = _map_src(page), _best(page)
    _no_exception(page)
    assert before[:2] != (0, 0)
    assert first[0] != before[2] and second[0] != first[0]  # B's map was redrawn for each click
    assert "cell (0, 0)" in first[1] and f"cell ({side - 1}, {side - 1})" in second[1]
    page.screenshot(path=str(shots / "pair_01_match_light.png"), full_page=False)
    print(f"\nclick -> sliders moved: {first_wait * 1000:.0f} ms, {second_wait * 1000:.0f} ms (browser poll 50 ms)")

    page.get_by_role("tab", name="Why A, not B").click()
    run = wait_ready(page, run)
    page.get_by_text("Outline the part that differs").first.click()
    run = wait_ready(page, run)
    _no_exception(page)
    assert page.get_by_text(re.compile("Outlined: the crown")).count() == 1
    assert page.get_by_text(re.compile(r"· crown: (hit|miss)")).count() >= 8
    _shoot(page, "Why A, not B?", shots / "pair_02_contrast_light.png")

    page.get_by_role("tab", name="Exact maps").click()
    run = wait_ready(page, run)
    _no_exception(page)
    assert page.get_by_text(re.compile(r"logit_self\(c\) = -?\d+\.\d{3} \(model: ")).count() == 2
    _shoot(page, "Exact maps: where each pair-path logit comes from", shots / "pair_03_exact_light.png")
    page.close()

