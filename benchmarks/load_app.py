"""A classroom at once: N concurrent browser sessions against one `streamlit run` (issue #16).

    python benchmarks/load_app.py [--sessions 10 20 30] [--seconds 120] [--json OUT]

For each N: a fresh app server on a loopback port (the shipped demo), one headless Debian Chromium
with N pages, each a session that opens the app and then, for ``--seconds``, repeats random actions:
pick a pair (the paper's suggestion buttons, "Random pair", "Swap"), switch the view (a tab) and change
a display setting (the colormap). Each action that reruns the script is timed from the click to the
end of the run (the app's ready marker advances, no running status). After every run the session reads
its images' class names from the page and checks them against its own URL's pair in gallery.json:
a mismatch would be another session's pair (cross-talk). Errors are Streamlit exception boxes, a page
that never finishes a run (90 s) or a Playwright failure. Peak server memory is the process tree's
VmHWM. Loopback only; bounded in sessions and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.e2e.server import streamlit_app  # noqa: E402
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

READY_JS = """() => {
    const marker = document.querySelector('.apinet-ready');
    const running = document.querySelector('[data-testid="stStatusWidget"]') !== null;
    return marker && !running ? Number(marker.getAttribute('data-run')) : -1;
}"""
PAIR_BUTTONS = ("Random pair", "Same-class B", "Other-class B", "Swap A")
TABS = ("Walk-through", "Mutual & gates", "Top-k channels", "LTPA attention", "Grad-CAM", "Predictions")
CMAPS = ("viridis", "inferno", "magma", "plasma", "cividis")


async def _ready(page, after: int, timeout: float = 90.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = await page.evaluate(READY_JS)
        if run > after:
            await page.wait_for_timeout(150)
            if await page.evaluate(READY_JS) == run:
                return run
        await page.wait_for_timeout(100)
    raise TimeoutError(f"no finished run after #{after} within {timeout:.0f} s")


def _query(url: str, key: str) -> str | None:
    match = re.search(rf"[?&]{key}=([^&]+)", url)
    return match.group(1) if match else None


async def _session(browser, url: str, seconds: float, seed: int, labels: dict[str, str], stats: dict) -> None:
    rng = random.Random(seed)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    try:
        start = time.monotonic()
        try:
            await page.goto(url, timeout=180_000)
            run = await _ready(page, -1, timeout=180)
        except Exception as exc:  # the first page never finished: an error, the session ends
            stats["errors"].append(f"first page: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            return
        stats["first_page"].append(time.monotonic() - start)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            kind = rng.choice(("pair", "pair", "view", "setting"))
            try:
                if kind == "view":
                    await page.get_by_role("tab", name=rng.choice(TABS)).click()
                    await page.wait_for_timeout(300)
                    continue  # tabs switch in the browser: no rerun to time
                t0 = time.monotonic()
                if kind == "pair":
                    await page.get_by_role("button", name=re.compile(rng.choice(PAIR_BUTTONS))).first.click()
                else:  # another colormap than the current one (choosing the same one reruns nothing)
                    box = page.locator(".st-key-cmap [role=combobox]").first
                    current = await box.input_value()
                    await box.click()
                    await page.locator('[role="option"]').filter(
                        has_text=re.compile(rf"^{rng.choice([c for c in CMAPS if c != current])}$")).first.click()
                run = await _ready(page, run)
                stats["latency"][kind].append(time.monotonic() - t0)
                if await page.locator('[data-testid="stException"]').count():
                    stats["errors"].append("exception box")
                # The browser updates its URL a moment after a run paints: compare the names shown with
                # the URL's pair only once the URL is the same before and after reading them.
                for _ in range(10):
                    before = page.url
                    shown = await page.locator(".apinet-tag + strong, .apinet-tag ~ strong").all_inner_texts()
                    if page.url == before:
                        break
                    await page.wait_for_timeout(300)
                a, b = _query(before, "a"), _query(before, "b")
                expected = [labels.get(a), labels.get(b)]
                if a and b and len(shown) >= 2:
                    stats["checked"] += 1
                    if [s.strip() for s in shown[:2]] != expected:
                        await page.wait_for_timeout(1000)  # still settling? read both once more
                        again = await page.locator(".apinet-tag + strong, .apinet-tag ~ strong").all_inner_texts()
                        a2, b2 = _query(page.url, "a"), _query(page.url, "b")
                        if [t.strip() for t in again[:2]] != [labels.get(a2), labels.get(b2)]:
                            stats["crosstalk"].append({"url": page.url, "shown": again[:2],
                                                       "expected": [labels.get(a2), labels.get(b2)]})
            except Exception as exc:  # a timeout or a Playwright failure counts as an error
                stats["errors"].append(f"{kind}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
                run = await page.evaluate(READY_JS)
            await page.wait_for_timeout(rng.randint(300, 1500))  # a person reads before the next click
    finally:
        await context.close()


def _tree_peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a process and its children, in MB."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = int(re.search(r"PPid:\s+(\d+)", status).group(1))
        if int(entry.name) == pid or ppid == pid:
            hwm = re.search(r"VmHWM:\s+(\d+) kB", status)
            total += int(hwm.group(1)) if hwm else 0
    return total / 1024


async def _run(n: int, seconds: float) -> dict:
    from playwright.async_api import async_playwright

    gallery = json.loads((ROOT / "assets" / "gallery" / "gallery.json").read_text())
    labels = {Path(e["file"]).stem: gallery["classes"][e["label"]] for e in gallery["images"]}
    stats = {"first_page": [], "latency": {"pair": [], "setting": []}, "errors": [], "crosstalk": [], "checked": 0}
    with streamlit_app(os.environ.copy(), timeout=120) as url:
        server_pid = _server_pid(url)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            await asyncio.gather(*(_session(browser, url, seconds, i, labels, stats) for i in range(n)))
            await browser.close()
        peak = _tree_peak_rss_mb(server_pid) if server_pid else float("nan")
    times = sorted(stats["latency"]["pair"] + stats["latency"]["setting"])

    def pct(values, q):
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    return {"sessions": n, "seconds": seconds, "actions_timed": len(times), "errors": len(stats["errors"]),
            "error_examples": stats["errors"][:5], "crosstalk": len(stats["crosstalk"]),
            "crosstalk_checks": stats["checked"], "crosstalk_examples": stats["crosstalk"][:3],
            "median_s": statistics.median(times) if times else float("nan"), "p95_s": pct(times, 0.95),
            "pair_median_s": statistics.median(stats["latency"]["pair"]) if stats["latency"]["pair"] else float("nan"),
            "pair_p95_s": pct(stats["latency"]["pair"], 0.95),
            "setting_p95_s": pct(stats["latency"]["setting"], 0.95),
            "first_page_max_s": max(stats["first_page"]) if stats["first_page"] else float("nan"),
            "server_peak_rss_mb": peak}


def _server_pid(url: str) -> int | None:
    port = url.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"streamlit" in b" ".join(cmd) and port.encode() in cmd:
                return int(entry.name)
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, nargs="+", default=[10, 20, 30])
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if CHROMIUM is None:
        raise SystemExit("no `chromium` on PATH (apt-get install chromium)")
    if max(args.sessions) > 50 or args.seconds > 600:
        raise SystemExit("bounded: at most 50 sessions and 600 s")
    rows = []
    for n in args.sessions:
        row = asyncio.run(_run(n, args.seconds))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| sessions | actions timed | errors | cross-talk (checks) | median | p95 | new pair p95 | setting p95 | "
          "slowest first page | server peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sessions']} | {r['actions_timed']} | {r['errors']} | {r['crosstalk']} ({r['crosstalk_checks']}) | {r['median_s']:.1f} s | "
              f"{r['p95_s']:.1f} s | {r['pair_p95_s']:.1f} s | {r['setting_p95_s']:.1f} s | "
              f"{r['first_page_max_s']:.0f} s | {r['server_peak_rss_mb']:.0f} MB |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
