"""Time from `streamlit run` to the first finished page a visitor sees, on the shipped demo.

    python benchmarks/app_first_render.py [--screenshots DIR]

Starts a fresh `streamlit run streamlit_app.py` on a loopback port (empty caches: the models load,
grad-cam is imported, the gallery's feature bank and the default pair's explanation are computed),
opens it in Debian's Chromium through Playwright and waits until the first script run has finished
(the app's ready marker, no running status). Prints the seconds to the server's health check and to
the finished page. Optionally saves light- and dark-theme screenshots of that page.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.e2e.server import streamlit_app  # noqa: E402
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, WIDE, wait_ready  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--screenshots", type=Path, help="save light and dark screenshots of the first page here")
    args = p.parse_args()
    if CHROMIUM is None:
        raise SystemExit("no `chromium` on PATH (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    start = time.monotonic()
    with streamlit_app(os.environ.copy(), timeout=120) as url:
        healthy = time.monotonic() - start
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=WIDE)
            page.goto(url)
            wait_ready(page, timeout=180)
            finished = time.monotonic() - start
            print(f"server healthy after {healthy:.1f} s; first page finished after {finished:.1f} s "
                  f"(target 60 s)")
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.screenshots / "first_light.png"), full_page=True)
                dark = browser.new_page(viewport=WIDE, color_scheme="dark")
                dark.goto(url)
                wait_ready(dark, timeout=180)
                dark.screenshot(path=str(args.screenshots / "first_dark.png"), full_page=True)
            browser.close()

if __name__ == "__main__":
    main()
