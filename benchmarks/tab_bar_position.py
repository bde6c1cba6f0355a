"""Where the tab bar starts on the first page (issue #24): desktop 1440 x 900 and phone 390 x 844.

    python benchmarks/tab_bar_position.py

Starts `streamlit run streamlit_app.py` on the shipped demo, opens it in Debian's Chromium through
Playwright (light and dark), waits for the first run to finish and prints the top of the tab bar
(`[role=tablist]`) in CSS pixels. The tab bar is on the first screen when top + its height <= 900.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.e2e.server import streamlit_app  # noqa: E402
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, wait_ready  # noqa: E402

VIEWPORTS = {"desktop 1440x900": {"width": 1440, "height": 900}, "phone 390x844": {"width": 390, "height": 844}}
_BAR = "() => { const r = document.querySelector('[role=tablist]').getBoundingClientRect(); return [r.top, r.height]; }"


def main() -> None:
    if CHROMIUM is None:
        raise SystemExit("no `chromium` on PATH (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with streamlit_app(os.environ.copy(), timeout=120) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for name, viewport in VIEWPORTS.items():
            for scheme in ("light", "dark"):
                page = browser.new_page(viewport=viewport, color_scheme=scheme)
                page.goto(url)
                wait_ready(page, timeout=240)
                top, height = page.evaluate(_BAR)
                print(f"{name} ({scheme}): tab bar top {top:.0f} px, bottom {top + height:.0f} px "
                      f"({(top + height) / viewport['height']:.2f} screens)")
                page.close()
        browser.close()


if __name__ == "__main__":
    main()
