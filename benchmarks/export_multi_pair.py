"""Seconds from clicking "Make the multi-pair figure" (Export tab) to its download buttons, in Chromium.

    python benchmarks/export_multi_pair.py [--repeats 3] [--demo]

Starts `streamlit run streamlit_app.py` on a loopback port, on the tests' tiny checkpoints and gallery
(``tests/app_checkpoints.py``) or, with ``--demo``, on the shipped demo; opens the Export tab in Debian's
Chromium, opens "Several pairs in one figure" (the current pair plus the two default pairs: three rows,
summary view, one column, 300 dpi) and clicks the button, once per repeat in a fresh page. The first
click also explains the two extra pairs; the later ones find them cached. Then downloads the PDF, SVG
and PNG of the last figure and prints their sizes and how long each download took.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.e2e.server import streamlit_app  # noqa: E402
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, wait_ready  # noqa: E402


def _click(page, url: str) -> float:
    page.goto(url + "/?tab=export")
    wait_ready(page, timeout=180)
    page.locator('[data-testid="stExpander"]').filter(has_text="Several pairs in one figure").first.locator(
        "summary").click()
    button = page.get_by_role("button", name=re.compile("Make the multi-pair figure"))
    button.wait_for(timeout=30_000)
    start = time.monotonic()
    button.click()
    page.get_by_role("button", name=re.compile(r"pairs · PDF")).wait_for(timeout=120_000)
    return time.monotonic() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--demo", action="store_true",
                   help="the shipped demo instead of the tests' tiny checkpoints")
    args = p.parse_args()
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if CHROMIUM is None:
        raise SystemExit("no `chromium` on PATH (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    env = os.environ.copy()
    if not args.demo:
        from tests.app_checkpoints import make_app_assets

        assets = make_app_assets(Path(tempfile.mkdtemp(prefix="apinet-export-bench-")))
        env.update(APINET_CHECKPOINT_DIR=str(assets["checkpoints"]), APINET_RUNS_DIR=str(assets["runs"]),
                   APINET_GALLERY_DIR=str(assets["gallery"]))
    with streamlit_app(env, timeout=120) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for i in range(args.repeats):
            page = browser.new_page(viewport={"width": 1400, "height": 1400}, accept_downloads=True)
            print(f"click {i + 1}: download buttons after {_click(page, url):.1f} s", flush=True)
            if i < args.repeats - 1:
                page.close()
        page.wait_for_timeout(1000)
        for fmt in ("PDF", "SVG", "PNG"):
            start = time.monotonic()
            with page.expect_download(timeout=120_000) as info:
                page.get_by_role("button", name=re.compile(f"pairs · {fmt}")).click()
            size = len(Path(info.value.path()).read_bytes())
            print(f"{info.value.suggested_filename}: {size / 1e3:.0f} kB in {time.monotonic() - start:.1f} s")
        browser.close()


if __name__ == "__main__":
    main()
