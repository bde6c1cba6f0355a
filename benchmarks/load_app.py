"""A classroom at once: N concurrent sessions against one `streamlit run` (issue #16).

    python benchmarks/load_app.py [--driver ws|browser] [--sessions 10 20 30] [--seconds 120] [--json OUT]

For each N: a fresh app server on a loopback port (the shipped demo) and N sessions, each of which
opens the app and then, for ``--seconds``, repeats random actions with a person's think time
(0.3-1.5 s): pick a new pair (the paper's suggestion buttons, "Random pair", "Swap"), open one of
six pairs the teacher named (both selectors at once; ws driver), open another tab
(``st.tabs(on_change="rerun")`` reruns the script) or change a display setting (the colormap). Each
action is timed until its script run has finished. After every run the session reads its image
cards' class names and checks them against its own URL's pair in gallery.json: a mismatch would be
another session's pair (cross-talk). Errors are Streamlit exception boxes, a run that does not finish
within 90 s, a script that does not finish successfully (ws) or a client failure. Peak server memory is
the process tree's VmHWM; server CPU per action is the tree's user + system time over the actions.
Pair changes are split by whether any session had explained that pair before (a cache hit, issue #16's
"gallery pair already explained by any session") or not (a model run, queued behind the others).

Drivers:

* ``ws`` (default): each session is a :class:`benchmarks.st_protocol.StreamlitClient`, which speaks
  Streamlit's own websocket protocol like a browser tab (the same BackMsgs for the same clicks, the
  frontend's ForwardMsg cache, images fetched from /media/) but renders nothing, so on a small machine
  the clients do not take the CPU the server needs. An action is timed from its rerun BackMsg to the
  run's ``script_finished``; cards are read from the run's Markdown deltas, the pair from the query
  string the server sends (``page_info_changed``).
* ``browser``: one headless Debian Chromium with N pages; an action is timed from the click to the
  app's ready marker (which adds the browser's own work and a polling step). Each page's websocket is
  also watched, so the same rerun-to-``script_finished`` time is reported (``wire_*``) for comparison.

Loopback only; bounded in sessions and time.
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
PAIR_KEYS = ("btn_random", "btn_intra", "btn_inter", "btn_swap")  # the same buttons' widget keys (app/picker.py)
TAB_KEY = "tab_label"  # st.tabs(key=...) in app/tabs/__init__.py
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
    wire: list[float] = []  # this page's rerun-to-script_finished times, read off its own websocket
    page.on("websocket", lambda ws: _watch_socket(ws, wire))
    try:
        start = time.monotonic()
        try:
            await page.goto(url, timeout=180_000)
            run = await _ready(page, -1, timeout=180)
        except Exception as exc:  # the first page never finished: an error, the session ends
            stats["errors"].append(f"first page: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            return
        stats["first_page"].append(time.monotonic() - start)
        _mark_loop_start(stats)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            kind = rng.choice(("pair", "pair", "view", "setting"))
            try:
                closed = page.locator('[role="tab"][aria-selected="false"]')
                t0 = time.monotonic()
                if kind == "view":  # another tab than the open one: st.tabs(on_change="rerun") reruns
                    await closed.nth(rng.randrange(await closed.count())).click()
                elif kind == "pair":
                    await page.get_by_role("button", name=re.compile(rng.choice(PAIR_BUTTONS))).first.click()
                else:  # another colormap than the current one (choosing the same one reruns nothing)
                    box = page.locator(".st-key-cmap [role=combobox]").first
                    current = await box.input_value()
                    await box.click()
                    option = page.locator('[role="option"]').filter(
                        has_text=re.compile(rf"^{rng.choice([c for c in CMAPS if c != current])}$")).first
                    await option.wait_for()
                    t0 = time.monotonic()  # the choice is made by the option's click, not by opening the list
                    await option.click()
                run = await _ready(page, run)
                stats["latency"][kind].append(time.monotonic() - t0)
                if wire:
                    stats["wire"][kind].append(wire[-1])
                    wire.clear()
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


async def _ws_session(url: str, seconds: float, seed: int, labels: dict[str, str], stats: dict) -> None:
    """The same person as :func:`_session`, speaking Streamlit's websocket protocol (no rendering)."""
    from benchmarks.st_protocol import ProtocolError, StreamlitClient, button_press, string_choice

    rng = random.Random(seed)
    client = StreamlitClient(url)
    start = time.monotonic()
    try:
        try:
            await client.connect()
            result = await client.rerun(timeout=180)  # the first page load: no widget states yet
            _ws_check(client, result, "first page", labels, stats)
            stats["explained"].add((client.query("a"), client.query("b")))
        except Exception as exc:  # the first page never finished: an error, the session ends
            stats["errors"].append(f"first page: {type(exc).__name__}: {str(exc)[:120]}")
            return
        stats["first_page"].append(time.monotonic() - start)
        _mark_loop_start(stats)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            kind = rng.choice(("pair", "known", "view", "setting"))
            before = (client.query("a"), client.query("b"))
            try:
                if kind == "pair":
                    widgets = [button_press(_need(client.widget_id(rng.choice(PAIR_KEYS))))]
                elif kind == "known":  # one of the pairs the teacher named: both selectors at once
                    box_a, box_b = _need(client.element("a")), _need(client.element("b"))
                    i, j = rng.choice(stats["known_pairs"])
                    widgets = [string_choice(box_a.id, box_a.options[i % len(box_a.options)]),
                               string_choice(box_b.id, box_b.options[j % len(box_b.options)])]
                elif kind == "view":  # another tab than the open one: st.tabs(on_change="rerun") reruns
                    tabs = client.element(TAB_KEY)
                    current = (client.tab_labels[tabs.default_tab_index]
                               if tabs is not None and tabs.default_tab_index < len(client.tab_labels) else None)
                    choices = [t for t in client.tab_labels if t != current]
                    widgets = [string_choice(_need(client.widget_id(TAB_KEY)), rng.choice(_need(choices)))]
                else:  # another colormap than the current one (the same one reruns nothing in a browser)
                    box = _need(client.element("cmap"))
                    current = box.raw_value if box.HasField("raw_value") else client.query("cmap")
                    widgets = [string_choice(box.id, rng.choice([c for c in box.options if c != current]))]
                result = await client.rerun(widgets, timeout=90)
                stats["latency"][kind].append(result.seconds)
                stats["wire"][kind].append(result.seconds)  # the same thing here: send to script_finished
                after = (client.query("a"), client.query("b"))
                if kind in ("pair", "known") and after != before:  # a pair change: explained before or new?
                    group = "explained_pair" if after in stats["explained"] else "new_pair"
                    stats["by_pair"][group].append(result.seconds)
                stats["explained"].add(after)
                _ws_check(client, result, kind, labels, stats)
            except Exception as exc:  # a timeout or a protocol failure counts as an error
                stats["errors"].append(f"{kind}: {type(exc).__name__}: {str(exc)[:120]}")
                if isinstance(exc, ProtocolError) and str(exc).startswith("websocket"):
                    return  # the socket is gone: this session is over
            await asyncio.sleep(rng.uniform(0.3, 1.5))  # a person reads before the next click
    finally:
        stats["media_bytes"] += client.media_bytes
        if client.media_failures:  # a broken image in a browser
            stats["errors"].append(f"media: {client.media_failures} image(s) not served")
        stats["cache_hits"] += client.cache_hits
        await client.close()


def _watch_socket(ws, wire: list[float]) -> None:
    """Time the browser's own protocol exchange: its rerun_script BackMsg to the run's script_finished
    (the ws driver's definition of an action's latency, so the two drivers compare like for like)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    sent: list[float] = []

    def on_sent(payload) -> None:
        if isinstance(payload, bytes):
            msg = BackMsg()
            msg.ParseFromString(payload)
            if msg.WhichOneof("type") == "rerun_script":
                sent[:] = [time.monotonic()]

    def on_received(payload) -> None:
        if isinstance(payload, bytes) and len(payload) < 512 and sent:  # script_finished is a few bytes
            msg = ForwardMsg()
            msg.ParseFromString(payload)
            if msg.WhichOneof("type") == "script_finished" and msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                wire.append(time.monotonic() - sent.pop())

    ws.on("framesent", on_sent)
    ws.on("framereceived", on_received)


def _need(value):
    if not value:
        raise LookupError("the page lacks a widget this session needs")
    return value


def _ws_check(client, result, kind: str, labels: dict[str, str], stats: dict) -> None:
    """Errors on the page and the cross-talk check: the cards' class names against this session's URL pair."""
    from benchmarks.st_protocol import card_names

    if result.status != 0:
        stats["errors"].append(f"{kind}: script finished with status {result.status}")
    stats["errors"].extend(f"{kind}: exception box: {e}" for e in result.exceptions)
    stats["error_alerts"].extend(result.error_alerts)
    stats["received_bytes"] += result.bytes
    shown = card_names(result.markdown)
    a, b = client.query("a"), client.query("b")
    if a and b and "a" in shown and "b" in shown:
        stats["checked"] += 1
        expected = [labels.get(a), labels.get(b)]
        if [shown["a"], shown["b"]] != expected:
            stats["crosstalk"].append({"url": client.query_string, "shown": [shown["a"], shown["b"]],
                                       "expected": expected})



def _mark_loop_start(stats: dict) -> None:
    """Server CPU time when the first session starts its actions (the cold first run is excluded)."""
    if stats["cpu_at_loop_start"] is None and stats["server_pid"]:
        stats["cpu_at_loop_start"] = _tree_cpu_s(stats["server_pid"])
        stats["actions_at_loop_start"] = sum(len(v) for v in stats["latency"].values())


def _tree_procs(pid: int):
    """``/proc/<pid>`` of a process and its children."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = int(re.search(r"PPid:\s+(\d+)", status).group(1))
        if int(entry.name) == pid or ppid == pid:
            yield entry, status


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (``/proc/<pid>/stat``, fields 14-15)."""
    total = 0
    for entry, _ in _tree_procs(pid):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def _sample_client_cpu(server_pid: int | None, seen: dict[int, float]) -> None:
    """Every 0.5 s, the CPU seconds of this process and all its descendants but the app server (the
    load generator: Chromium and its renderers, or the protocol clients); a process that exits keeps
    its last sample."""
    tick = os.sysconf("SC_CLK_TCK")
    while True:
        parents, cpu = {}, {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                parents[int(entry.name)] = int(fields[1])
                cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
        for pid in cpu:
            up, chain = pid, set()
            while up and up not in chain:
                chain.add(up)
                if up == server_pid:
                    break
                if up == os.getpid():
                    seen[pid] = max(seen.get(pid, 0.0), cpu[pid])
                    break
                up = parents.get(up, 0)
        await asyncio.sleep(0.5)


def _pair_labels() -> dict[str, str]:
    """Image id -> class name of what the app picks pairs from: the shipped atlas (issue #23) when it
    is of the shipped checkpoints, else the gallery. Ids are also listed URL-encoded (``test%2F000001``)."""
    from urllib.parse import quote

    manifest = ROOT / "assets" / "atlas" / "manifest.json"
    card = ROOT / "assets" / "checkpoints" / "apinet_synthbirds.json"
    if manifest.is_file() and card.is_file() and json.loads(manifest.read_text())["checkpoints"]["apinet"]["sha256"] \
            == json.loads(card.read_text())["weights_sha256"]:
        from apinet.atlas import Atlas

        atlas = Atlas.open(manifest.parent)
        labels = {str(i): str(atlas.class_names[c]) for i, c in zip(atlas.column("id"), atlas.labels)}
        return {**labels, **{quote(k, safe=""): v for k, v in labels.items()}}
    gallery = json.loads((ROOT / "assets" / "gallery" / "gallery.json").read_text())
    return {Path(e["file"]).stem: gallery["classes"][e["label"]] for e in gallery["images"]}


def _tree_peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a process and its children, in MB."""
    total = 0
    for _, status in _tree_procs(pid):
        hwm = re.search(r"VmHWM:\s+(\d+) kB", status)
        total += int(hwm.group(1)) if hwm else 0
    return total / 1024


async def _run(n: int, seconds: float, driver: str) -> dict:
    labels = _pair_labels()
    pair_rng = random.Random(12345)  # the same six "pairs the teacher named" for every session
    stats = {"first_page": [], "latency": {"pair": [], "known": [], "view": [], "setting": []},
             "wire": {"pair": [], "known": [], "view": [], "setting": []},
             "known_pairs": [tuple(pair_rng.sample(range(40), 2)) for _ in range(6)],
             "explained": set(), "by_pair": {"explained_pair": [], "new_pair": []}, "errors": [], "crosstalk": [],
             "checked": 0, "error_alerts": [], "media_bytes": 0, "received_bytes": 0,
             "cache_hits": 0, "cpu_at_loop_start": None, "server_pid": None}
    with streamlit_app(os.environ.copy(), timeout=120) as url:
        server_pid = stats["server_pid"] = _server_pid(url)
        server_cpu_start = _tree_cpu_s(server_pid) if server_pid else float("nan")
        client_cpu: dict[int, float] = {}
        sampler = asyncio.create_task(_sample_client_cpu(server_pid, client_cpu))
        await asyncio.sleep(0.6)  # one sample first: the load generator's CPU before the sessions
        client_cpu_start = sum(client_cpu.values())
        if driver == "ws":
            await asyncio.gather(*(_ws_session(url, seconds, i, labels, stats) for i in range(n)))
        else:
            from playwright.async_api import async_playwright

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                await asyncio.gather(*(_session(browser, url, seconds, i, labels, stats) for i in range(n)))
                await browser.close()
        peak = _tree_peak_rss_mb(server_pid) if server_pid else float("nan")
        cpu_end = _tree_cpu_s(server_pid) if server_pid else float("nan")
        sampler.cancel()
    times = sorted(t for kind in stats["latency"].values() for t in kind)

    def pct(values, q):
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    def median(values):
        return statistics.median(values) if values else float("nan")

    lat = stats["latency"]
    return {"driver": driver, "sessions": n, "seconds": seconds, "actions_timed": len(times), "errors": len(stats["errors"]),
            "error_examples": stats["errors"][:5], "crosstalk": len(stats["crosstalk"]),
            "crosstalk_checks": stats["checked"], "crosstalk_examples": stats["crosstalk"][:3],
            "median_s": median(times), "p95_s": pct(times, 0.95),
            "pair_n": len(lat["pair"]), "pair_median_s": median(lat["pair"]), "pair_p95_s": pct(lat["pair"], 0.95),
            "known_n": len(lat["known"]), "known_p95_s": pct(lat["known"], 0.95),
            "explained_pair_n": len(stats["by_pair"]["explained_pair"]),
            "explained_pair_median_s": median(stats["by_pair"]["explained_pair"]),
            "explained_pair_p95_s": pct(stats["by_pair"]["explained_pair"], 0.95),
            "new_pair_n": len(stats["by_pair"]["new_pair"]),
            "new_pair_median_s": median(stats["by_pair"]["new_pair"]),
            "new_pair_p95_s": pct(stats["by_pair"]["new_pair"], 0.95),
            "view_n": len(lat["view"]), "view_median_s": median(lat["view"]), "view_p95_s": pct(lat["view"], 0.95),
            "setting_n": len(lat["setting"]), "setting_median_s": median(lat["setting"]),
            "setting_p95_s": pct(lat["setting"], 0.95),
            "wire_median_all_s": median([t for v in stats["wire"].values() for t in v]),
            "wire_n": {k: len(v) for k, v in stats["wire"].items()},
            "wire_median_s": {k: median(v) for k, v in stats["wire"].items()},
            "wire_p95_s": {k: pct(v, 0.95) for k, v in stats["wire"].items()},
            "error_alerts": len(stats["error_alerts"]), "error_alert_examples": stats["error_alerts"][:3],
            "media_mb": stats["media_bytes"] / 1e6, "ws_received_mb": stats["received_bytes"] / 1e6,
            "ws_cache_hits": stats["cache_hits"],
            "first_page_max_s": max(stats["first_page"]) if stats["first_page"] else float("nan"),
            "server_peak_rss_mb": peak, "server_cpu_per_action_s": _cpu_per_action(stats, cpu_end),
            "server_cpu_s": cpu_end - server_cpu_start, "client_cpu_s": sum(client_cpu.values()) - client_cpu_start}


def _cpu_per_action(stats: dict, cpu_end: float) -> float:
    """Server CPU seconds per timed action after the first session's first page (both drivers ask the
    server for the same work: this should agree between them at one session)."""
    if stats["cpu_at_loop_start"] is None:
        return float("nan")
    actions = sum(len(v) for v in stats["latency"].values()) - stats["actions_at_loop_start"]
    return (cpu_end - stats["cpu_at_loop_start"]) / actions if actions else float("nan")


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
    p.add_argument("--driver", choices=("ws", "browser"), default="ws",
                   help="ws: Streamlit's websocket protocol, no rendering (benchmarks/st_protocol.py); "
                        "browser: headless Chromium pages (the client's CPU competes with the server's)")
    args = p.parse_args()
    if args.driver == "browser" and CHROMIUM is None:
        raise SystemExit("no `chromium` on PATH (apt-get install chromium)")
    if max(args.sessions) > 50 or args.seconds > 600:
        raise SystemExit("bounded: at most 50 sessions and 600 s")
    rows = []
    for n in args.sessions:
        row = asyncio.run(_run(n, args.seconds, args.driver))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| driver | sessions | actions timed | errors | cross-talk (checks) | median | p95 | protocol median | "
          "pair already explained: n, p95 | new pair: n, median, p95 | tab p95 | setting p95 | slowest first page | server peak RSS | server CPU / action | server CPU | load generator CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['driver']} | {r['sessions']} | {r['actions_timed']} | {r['errors']} | {r['crosstalk']} "
              f"({r['crosstalk_checks']}) | {r['median_s']:.2f} s | {r['p95_s']:.2f} s | {r['wire_median_all_s']:.2f} s | "
              f"{r['explained_pair_n']}, {r['explained_pair_p95_s']:.2f} s | "
              f"{r['new_pair_n']}, {r['new_pair_median_s']:.2f} s, {r['new_pair_p95_s']:.2f} s | "
              f"{r['view_p95_s']:.2f} s | {r['setting_p95_s']:.2f} s | {r['first_page_max_s']:.0f} s | "
              f"{r['server_peak_rss_mb']:.0f} MB | {r['server_cpu_per_action_s']:.2f} s | {r['server_cpu_s']:.1f} s | "
              f"{r['client_cpu_s']:.1f} s |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
