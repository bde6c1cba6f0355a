"""Refresh docs/screenshots/: the app on the shipped demo, as a visitor sees it in Chromium.

    python scripts/screenshots.py [--out docs/screenshots] [--theme light|dark]

Starts the app on the demo checkpoints and gallery, waits for each run to finish, and saves the first
screen (`app_overview.webp`), every tab of the app's registry `app.tabs.TABS` (`app_<slug>.webp`, the
tab's panel; the contrast tab with the differing part outlined) and the first screen at phone width
(`app_narrow.webp`); `--theme dark` writes the same with the browser in dark mode (`*_dark.webp`).

Screenshots are stored as WebP (lossy, quality 85) no wider than the docs site shows them
(`MAX_WIDTH`), so every tab in both themes stays well under 2.5 MB in all (tests/test_docs_site.py
checks the total). `python scripts/screenshots.py --convert FILE.png ...` converts existing PNGs the
same way, without a browser.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

#: Widest screenshot kept, in px: the docs site's content column is narrower, so wider images are
#: only scaled down by the browser (the first screen is taken at 1400 px).
MAX_WIDTH = 1000
WEBP_QUALITY = 85



def save_screenshot(png: bytes, path: Path, max_width: int = MAX_WIDTH) -> Path:
    """Write a PNG screenshot as WebP at most ``max_width`` px wide (aspect kept); returns the path."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
    path = Path(path).with_suffix(".webp")
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, "WEBP", quality=WEBP_QUALITY, method=6)
    os.replace(tmp, path)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    p.add_argument("--theme", choices=("light", "dark"), default="light")
    p.add_argument("--convert", nargs="+", type=Path, metavar="PNG",
                   help="convert these PNG screenshots to WebP beside them (no browser) and exit")
    args = p.parse_args()
    if args.convert:
        for png in args.convert:
            print(save_screenshot(png.read_bytes(), png))
        return
    sys.path.insert(0, str(ROOT))
    from app.tabs import TABS
    from tests.e2e.server import streamlit_app
    from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, NARROW, WIDE, wait_ready

    if CHROMIUM is None:
        raise SystemExit("no `chromium` on PATH (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.theme == "light" else "_dark"
    with streamlit_app(os.environ.copy(), timeout=120) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=WIDE, color_scheme=args.theme)
        page.goto(url)
        run = wait_ready(page, timeout=180)
        save_screenshot(page.screenshot(), args.out / f"app_overview{suffix}.webp")
        page.set_viewport_size({"width": WIDE["width"], "height": 3000})  # lazy images paint only in view
        for name, label in ((tab.slug, tab.label) for tab in TABS):
            tab = page.get_by_role("tab", name=label)
            if tab.get_attribute("aria-selected") != "true":
                tab.click()
                run = wait_ready(page, run, timeout=120)  # only the open tab runs: wait for its run
            if name == "contrast":  # the differing part's outline, with hit / miss
                toggle = page.get_by_text("Outline the part that differs").first
                if toggle.count():
                    toggle.click()
                    run = wait_ready(page, run, timeout=120)
            panel = page.locator('[role="tabpanel"]:visible').first
            # images load lazily: scroll through the panel so every one is fetched and painted
            for fraction in (0.25, 0.5, 0.75, 1.0, 0.0):
                page.evaluate(f"window.scrollTo(0, document.body.scrollHeight * {fraction})")
                page.mouse.wheel(0, 0)
                page.wait_for_timeout(600)
            save_screenshot(panel.screenshot(), args.out / f"app_{name}{suffix}.webp")
        narrow = browser.new_page(viewport=NARROW, color_scheme=args.theme)
        narrow.goto(url)
        wait_ready(narrow, timeout=180)
        save_screenshot(narrow.screenshot(), args.out / f"app_narrow{suffix}.webp")
        browser.close()
    print(f"wrote {len(TABS) + 2} screenshots to {args.out}")


if __name__ == "__main__":
    main()
