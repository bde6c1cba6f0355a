"""A shared link in Debian Chromium: it opens on its tab with its settings; the reference class works.

The session's server (tests/e2e/conftest.py) and the helpers of tests/e2e/test_browser.py (tiny random
checkpoints, no network).
Where the tab bar starts on a phone and a 900 px desktop: tests/e2e/test_browser_defects.py.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_browser import _choose, _no_exception, wait_ready


pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DESKTOP = {"width": 1440, "height": 900}


def _params(url: str) -> dict[str, str]:
    return dict(re.findall(r"([a-z]+)=([^&]+)", url.split("?", 1)[1]))


def _selected(scope, key: str) -> str:
    """The shown value of the selectbox with widget key ``key``."""
    return scope.locator(f".st-key-{key} input[role=combobox]").first.input_value()


def _selected_tab(page) -> str:
    return page.locator('[role="tab"][aria-selected="true"]').first.inner_text().strip()


def test_shared_link_opens_its_tab_with_its_settings(app_url, browser, shots):
    from apinet.data import SynthBirds

    names = list(SynthBirds.CLASSES)
    a, b = "test_0005_streaked-warbler", "test_0000_red-crowned-finch"
    # two reference classes that are not A's own (its own is marked "✓" in the selector)
    target, other = [c for c in (7, 12, 13) if names[c] != "Streaked Warbler"][:2]
    link = f"{app_url}/?a={a}&b={b}&tab=ltpa&cmap=magma&k=3&scope=map&ta={target}&clip=98"
    page = browser.new_page(viewport=DESKTOP)
    page.goto(link)
    run = wait_ready(page, timeout=120)
    _no_exception(page)
    assert _selected_tab(page) == "LTPA attention"
    assert page.get_by_text("LTPA: where the global descriptor looks", exact=False).count() >= 1
    assert page.get_by_text("How API-Net compares this pair", exact=False).count() == 0
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert _selected(sidebar, "cmap") == "magma"
    assert sidebar.locator('.st-key-k [data-testid="stSliderThumbValue"]').first.inner_text().strip() == "3"
    assert sidebar.locator(".st-key-scope input[type=radio]:checked").count() == 1
    assert "per map" in sidebar.locator(".st-key-scope label:has(input:checked)").inner_text()
    assert _selected(page, "_explain_as_a") == names[target]
    assert page.get_by_text("clipped at the 2nd / 98th percentiles", exact=False).count() >= 1
    for key, value in {"tab": "ltpa", "cmap": "magma", "k": "3", "scope": "map", "ta": str(target)}.items():
        assert _params(page.url)[key] == value, key
    page.screenshot(path=str(shots / "link_01_ltpa.png"), full_page=False)

    # the walk-through and the pair summary name the chosen reference class; changing it changes them
    page.get_by_role("tab", name="Walk-through").click()
    run = wait_ready(page, run, timeout=120)
    assert page.get_by_text(f"A → {names[target]}", exact=False).count() >= 1
    _choose(page, "_explain_as_a", names[other])
    run = wait_ready(page, run, timeout=120)
    _no_exception(page)
    assert page.get_by_text(f"A → {names[other]}", exact=False).count() >= 1
    assert page.get_by_text(f"A → {names[target]}", exact=False).count() == 0
    # the walk-through's scores name the reference class (KaTeX keeps its TeX source in an annotation)
    equations = page.locator(".katex annotation").all_text_contents()
    assert any(names[other] in eq for eq in equations) and not any(names[target] in eq for eq in equations)
    assert _params(page.url)["ta"] == str(other) and _params(page.url)["tab"] == "walkthrough"
    page.screenshot(path=str(shots / "link_02_walkthrough.png"), full_page=False)
    page.close()
