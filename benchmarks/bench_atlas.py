"""Scale of the pair atlas (issue #23): a synthetic 100,000-image atlas, and builds of real ones.

    python benchmarks/bench_atlas.py synth --out /tmp/atlas100k [--images 100000]   # write the synthetic atlas
    python benchmarks/bench_atlas.py server --atlas /tmp/atlas100k                   # memory, partners, click (server)
    python benchmarks/bench_atlas.py browser --atlas /tmp/atlas100k [--repeats 3]    # map drawn in Chromium, click to new A
    python benchmarks/bench_atlas.py build [--images 256] [--threads 1]              # build vs plain forward throughput

The synthetic atlas has random features (float16, D = 320 like the demo's EfficientNet-Lite0) and
a random layout of 200 clusters labelled with the demo's 20 classes; each row's image is a real
SynthBirds test render of its class (its path renders it again; its WebP thumbnail is real), with
random predictions, partners and mechanism columns, and the demo checkpoints' SHA-256 in its
manifest, so ``APINET_ATLAS_DIR=/tmp/atlas100k streamlit run streamlit_app.py`` opens and explains it
with the demo models (``browser --modes app``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO = ROOT / "assets" / "checkpoints"


# ------------------------------------------------------------------------------------------ synth


def make_synthetic_atlas(out: Path, images: int, *, dim: int = 320, classes: int = 200, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from apinet.atlas.build import thumbnail_bytes
    from apinet.atlas.store import ATLAS_FORMAT, MODELS, ROW_GROUP, features_file, synth_path
    from apinet.data import SynthBirds

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    birds = SynthBirds(split="test", image_size=128)
    thumbs = [thumbnail_bytes(birds.load_pil(i), 64) for i in range(100)]
    clusters = rng.integers(0, classes, images)
    labels = (clusters % len(SynthBirds.CLASSES)).astype(np.int32)  # the demo's classes: the app can explain any row
    centres = rng.normal(size=(classes, 2)) * 4
    xy = (centres[clusters] + rng.normal(size=(images, 2))).astype(np.float32)
    # each row's image is a real SynthBirds test render of its class (test image k has class k % 20)
    source = ((np.arange(images) // len(SynthBirds.CLASSES)) % 40) * len(SynthBirds.CLASSES) + labels
    xy /= np.abs(xy).max()
    for m in MODELS:
        feats = np.lib.format.open_memmap(out / features_file(m), mode="w+", dtype=np.float16, shape=(images, dim))
        for s in range(0, images, 10_000):
            e = min(images, s + 10_000)
            feats[s:e] = (rng.normal(size=(e - s, dim)) + clusters[s:e, None] % 7).astype(np.float16)
        feats.flush()
        del feats

    def pred(ok_rate):
        wrong = rng.random(images) > ok_rate
        return np.where(wrong, rng.integers(0, len(SynthBirds.CLASSES), images), labels).astype(np.int32)

    preds = {"apinet": pred(0.85), "baseline": pred(0.8)}
    names = list(SynthBirds.CLASSES)
    writer = None
    for s in range(0, images, 8192):
        e = min(images, s + 8192)
        n = e - s
        cols = {"id": pa.array([f"cluster_{clusters[i]:03d}/img_{i:06d}" for i in range(s, e)]),
                "path": pa.array([synth_path(0, "test", int(source[i]), 224) for i in range(s, e)]),
                "class_name": pa.array([names[labels[i]] for i in range(s, e)]),
                "label": pa.array(labels[s:e])}
        for m in MODELS:
            top = np.concatenate([preds[m][s:e, None], rng.integers(0, len(names), (n, 4))], 1).astype(np.int32)
            cols[f"{m}_top5"] = pa.FixedSizeListArray.from_arrays(pa.array(top.ravel()), 5)
            cols[f"{m}_top5_prob"] = pa.FixedSizeListArray.from_arrays(pa.array(np.sort(rng.random((n, 5)), 1)[:, ::-1].astype(np.float32).ravel()), 5)
        cols["thumbnail"] = pa.array([thumbs[int(source[i]) % len(thumbs)] for i in range(s, e)], pa.binary())
        for m in MODELS:
            cols[f"{m}_pred"] = pa.array(preds[m][s:e])
            cols[f"{m}_prob"] = pa.array(rng.random(n).astype(np.float32))
        cols["ood"] = pa.array(rng.random(n).astype(np.float32))
        cols["x"], cols["y"] = pa.array(xy[s:e, 0]), pa.array(xy[s:e, 1])
        for kind in ("intra", "inter"):
            cols[kind] = pa.array(rng.integers(0, images, n).astype(np.int32))
            cols[f"{kind}_distance"] = pa.array(rng.random(n).astype(np.float32))
        for kind in ("intra", "inter"):
            for k in ("gate_gap", "logit_gap", "self_minus_other"):
                cols[f"{kind}_{k}"] = pa.array(rng.random(n).astype(np.float32))
        table = pa.table(cols)
        writer = writer or pq.ParquetWriter(out / "atlas.parquet", table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP)
    writer.close()
    cards = {m: json.loads((DEMO / f"{m}_synthbirds.json").read_text()) for m in MODELS}
    manifest = {"format": ATLAS_FORMAT, "images": images, "bad_images": 0, "class_names": names,
                "data": {"spec": "synthetic (benchmarks/bench_atlas.py)", "split": "test"},
                "checkpoints": {m: {"sha256": cards[m]["weights_sha256"]} for m in MODELS},
                "layout": {"method": "random clusters"}, "ood": None}
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "bad_images.json").write_text("[]")


# ------------------------------------------------------------------------------------------ server


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def server(atlas_dir: Path, repeats: int) -> None:
    import json

    from apinet.atlas import Atlas, nearest_partners
    from app.atlas_map import hover_card, map_click, marks_of, points_payload
    from app.atlas_source import AtlasGallery

    base = _rss_mb()
    t = time.perf_counter()
    atlas = Atlas.open(atlas_dir)
    gallery = AtlasGallery(atlas)
    _ = gallery.items, atlas.index_of, atlas.xy, atlas.bank()
    open_s = time.perf_counter() - t
    t = time.perf_counter()
    payload = points_payload(atlas, "class")
    pack_s = time.perf_counter() - t
    size = len(json.dumps(payload["points"]))
    print(f"atlas {atlas_dir}: {len(atlas):,} images; open + picker items + index + partner bank {open_s:.2f} s; "
          f"map points packed once in {pack_s:.2f} s: {size / 1e6:.2f} MB for {len(atlas):,} points")
    rng = np.random.default_rng(1)
    partner, click, hover = [], [], []
    for _ in range(repeats):
        row = int(rng.integers(len(atlas)))
        t = time.perf_counter()
        nearest_partners(atlas, row)
        partner.append(time.perf_counter() - t)
        t = time.perf_counter()  # a click: the event -> new A -> the marks the map's rerun sends, partner thumbnails
        slot, new_a = map_click({"row": row, "slot": "a"}, atlas)
        json.dumps({**{k: v for k, v in points_payload(atlas, "class").items() if k != "points"},
                    "marks": marks_of(atlas, {slot: new_a})})
        atlas.thumbnails([new_a, int(atlas.column("intra")[new_a]), int(atlas.column("inter")[new_a])])
        click.append(time.perf_counter() - t)
        t = time.perf_counter()
        json.dumps(hover_card(atlas, row))
        hover.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"nearest partners (live, all {len(atlas):,}): median {statistics.median(partner):.3f} s, "
          f"max {max(partner):.3f} s over {repeats}")
    print(f"click to new A on the server (event, the marks, partner thumbnails): median "
          f"{statistics.median(click):.3f} s, max {max(click):.3f} s")
    print(f"hover card (thumbnail, id, predictions): median {statistics.median(hover):.3f} s, max {max(hover):.3f} s")
    print(f"memory: {base:.0f} MB before, {_rss_mb():.0f} MB with the atlas open and its map packed "
          f"(+{_rss_mb() - base:.0f} MB), peak {peak:.0f} MB")


# ------------------------------------------------------------------------------------------ browser


_DRAWN = """() => { const d = document.querySelector('.js-plotly-plot');
  return !!(d && d._fullData && d._fullData.length && d.querySelector('canvas') && d._fullLayout); }"""


def browser(atlas_dir: Path, repeats: int, modes: list[str]) -> None:
    import shutil

    from playwright.sync_api import sync_playwright

    from tests.e2e.server import streamlit_app

    env = {**os.environ, "ATLAS": str(atlas_dir)}
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    with sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=shutil.which("chromium"))
        for mode in modes:
            if mode == "app":  # the whole app on this atlas, opened on its Dataset tab
                server = streamlit_app({**env, "APINET_ATLAS_DIR": str(atlas_dir)}, timeout=120)
            else:
                server = streamlit_app({**env, "MAP_MODE": mode}, timeout=120, script="benchmarks/atlas_map_page.py")
            with server as url:
                if mode in ("component", "app"):
                    _component(chrome, url, repeats, atlas_dir, app=mode == "app")
                    continue
                drawn, clicks = [], []
                for _ in range(repeats):
                    page = chrome.new_page(viewport={"width": 1400, "height": 900})
                    t = time.perf_counter()
                    page.goto(url)
                    if mode == "bare":  # the page alone: the floor under any map
                        page.wait_for_selector(".map-ready", state="attached", timeout=120_000)
                        drawn.append(time.perf_counter() - t)
                        page.close()
                        continue
                    page.wait_for_function(_DRAWN, timeout=120_000, polling=20)
                    drawn.append(time.perf_counter() - t)
                    page.wait_for_selector(".map-ready", state="attached", timeout=60_000)
                    page.wait_for_timeout(500)
                    # click the first point of the points trace, at its pixel position
                    xy = page.evaluate("""() => { const d = document.querySelector('.js-plotly-plot');
                        const i = d._fullData.findIndex(t => t.type === 'scattergl'); const tr = d._fullData[i];
                        const L = d._fullLayout, xa = L.xaxis, ya = L.yaxis, r = d.getBoundingClientRect();
                        return [r.left + L._size.l + xa.l2p(tr.x[0]), r.top + L._size.t + ya.l2p(tr.y[0])]; }""")
                    t = time.perf_counter()
                    page.mouse.click(xy[0], xy[1])
                    try:
                        page.wait_for_function("() => { const e = document.querySelector('.map-ready');"
                                               " return e && e.dataset.a !== '-1'; }", timeout=30_000, polling=20)
                        page.wait_for_function(_DRAWN, timeout=30_000, polling=20)
                        clicks.append(time.perf_counter() - t)
                    except Exception:  # noqa: BLE001 - a click that hit no point is reported, not fatal
                        clicks.append(float("nan"))
                    page.close()
                print(f"{mode}: map drawn {statistics.median(drawn):.2f} s median (all: "
                      f"{', '.join(f'{d:.2f}' for d in drawn)}); click to new A drawn "
                      f"{', '.join(f'{c:.2f}' for c in clicks) or '-'} s")
        chrome.close()


_APP_RUN = """() => { const m = document.querySelector('.apinet-ready');
  return m && !document.querySelector('[data-testid="stStatusWidget"]') ? Number(m.dataset.run) : -1; }"""


def _component(chrome, url: str, repeats: int, atlas_dir: Path, app: bool = False) -> None:
    """The app's map (a canvas component): page load until every point is drawn; then clicks on
    random visible points (setting A, B, A in turn) until the mark is drawn in the browser, confirmed
    by the server's run (with A's mined partners), and the run over."""
    from apinet.atlas import Atlas

    atlas = Atlas.open(atlas_dir)
    rng = np.random.default_rng(0)
    drawn, local, confirmed, ended = [], [], [], []
    for _ in range(repeats):
        page = chrome.new_page(viewport={"width": 1400, "height": 900})
        t = time.perf_counter()
        page.goto(url + ("/?tab=dataset" if app else ""))
        page.wait_for_selector(f".atlas-map[data-drawn='{len(atlas)}']", state="attached", timeout=300_000)
        drawn.append(time.perf_counter() - t)
        page.wait_for_selector(".apinet-ready" if app else ".map-ready", state="attached", timeout=300_000)
        page.wait_for_timeout(500)
        themap = page.locator(".atlas-map canvas").first
        themap.scroll_into_view_if_needed()
        box = themap.bounding_box()
        themap = page.locator(".atlas-map").first
        for _ in range(3):
            while True:  # a random image drawn inside the visible part of the map, not A already
                row = int(rng.integers(len(atlas)))
                x, y = themap.evaluate("(el, i) => el.screenOf(i)", row)
                hit = themap.evaluate("(el, xy) => el.rowAt(xy[0], xy[1])", [x, y])  # another point may lie on top
                inside = box["x"] + 5 < x < box["x"] + box["width"] - 5 and 5 < y < min(900, box["y"] + box["height"]) - 5
                slot = themap.get_attribute("data-next")  # clicks set A, then B, then A...
                if inside and str(hit) != themap.get_attribute(f"data-{slot}"):
                    break
            before = page.evaluate(_APP_RUN) if app else None
            t = time.perf_counter()
            page.mouse.click(x, y)
            page.wait_for_selector(f".atlas-map[data-{slot}='{hit}']", state="attached", timeout=30_000)
            local.append(time.perf_counter() - t)
            page.wait_for_selector(f".atlas-map[data-confirmed-{slot}='{hit}']", state="attached", timeout=30_000)
            confirmed.append(time.perf_counter() - t)
            if app:  # the page's run: the new pair explained (a model run) and every card drawn
                page.wait_for_function(f"() => ({_APP_RUN})() > {before}", timeout=300_000, polling=20)
            else:
                page.wait_for_selector(f".map-ready[data-{slot}='{hit}']", state="attached", timeout=30_000)
            ended.append(time.perf_counter() - t)
            page.wait_for_timeout(300)
        page.close()

    def fmt(values):
        return f"median {statistics.median(values):.3f} s (all: {', '.join(f'{v:.3f}' for v in values)})"

    name = "app" if app else "component"
    print(f"{name}: {len(atlas):,} points drawn {fmt(drawn)}")
    print(f"{name}: click to A or B drawn in the browser {fmt(local)}")
    print(f"{name}: click to A or B confirmed by the server's run (with A's partners) {fmt(confirmed)}")
    print(f"{name}: click to the run's end{' (the new pair explained)' if app else ''} {fmt(ended)}")


# ------------------------------------------------------------------------------------------ build


def build(images: int, threads: int, workers: int, batch_size: int) -> None:
    import tempfile

    import torch

    from apinet.atlas import build as build_module
    from apinet.atlas import build_atlas
    from apinet.checkpoint import load_model
    from apinet.data import Preprocess, SynthBirds

    torch.set_num_threads(threads)
    models = [load_model(DEMO / f"{m}_synthbirds.safetensors") for m in ("apinet", "baseline")]
    pre = Preprocess.from_card(models[0][1])
    data = SynthBirds(split="test", image_size=224)
    x = torch.stack([pre(data.load_pil(i)) for i in range(batch_size)])
    with torch.inference_mode():
        for m, _ in models:  # warm-up
            m.forward_head(m.pool_features(m.forward_features(x)))
        t = time.perf_counter()
        done = 0
        while done < images:
            for m, _ in models:
                m.forward_head(m.pool_features(m.forward_features(x)))
            done += batch_size
        forward = done / (time.perf_counter() - t)
    finish = []
    real = build_module._finish

    def timed(*a, **k):
        t0 = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            finish.append(time.perf_counter() - t0)

    build_module._finish = timed
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        build_atlas("synthbirds", DEMO / "apinet_synthbirds.safetensors", DEMO / "baseline_synthbirds.safetensors",
                    Path(tmp) / "a", limit=images, workers=workers, batch_size=batch_size, threads=threads,
                    progress=False)
        total = time.perf_counter() - t
    chunks = images / (total - finish[0])
    print(f"plain forward of both models (decoded tensors in memory, batch {batch_size}): {forward:.1f} img/s")
    print(f"atlas build, {images} images, workers {workers}: {total:.1f} s in all, of which joining / layout / "
          f"partners / manifest {finish[0]:.1f} s; chunk phase {chunks:.1f} img/s = "
          f"{100 * chunks / forward:.0f} % of plain forward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("synth")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--images", type=int, default=100_000)
    p = sub.add_parser("server")
    p.add_argument("--atlas", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=10)
    p = sub.add_parser("browser")
    p.add_argument("--atlas", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--modes", default="bare,component,tiny,plain",
                   help="bare page, the app's map alone (a canvas component), the whole app on its Dataset tab, a ten-point Plotly "
                        "chart, one plain scattergl trace of every image")
    p = sub.add_parser("build")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if args.cmd == "synth":
        t = time.perf_counter()
        make_synthetic_atlas(args.out, args.images)
        print(f"wrote {args.out} ({args.images:,} images) in {time.perf_counter() - t:.1f} s")
    elif args.cmd == "server":
        server(args.atlas, args.repeats)
    elif args.cmd == "browser":
        browser(args.atlas, args.repeats, args.modes.split(","))
    else:
        build(args.images, args.threads, args.workers, args.batch_size)


if __name__ == "__main__":
    main()
