"""Labeler speed in a real browser (JupyterLab + headless Chromium).

1. Redraw time with 200 shapes (100 boxes, 100 eight-vertex polygons) on a 640x480 JPEG,
   against the same image with no shapes (the baseline, same run): each draw is the labeler's
   own ``draw()`` followed by a one-pixel read, which forces the software rasteriser to finish.
2. Python -> browser latency of an image switch (``session.step()`` in the kernel until the new
   image is decoded and drawn), against a plain ipywidgets Label change (the baseline).

    .venv/bin/python bench/labeler_redraw.py [--draws 300] [--switches 20]

Prints a JSON summary and a markdown table (docs/benchmarks.md).  Needs Chromium
(/usr/bin/chromium) and the notebook extra; takes about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))

from _harness import ARTIFACTS, JupyterServer, KernelProbe, launch_chromium, open_and_run, write_notebook  # noqa: E402

CELLS = [
    """import math, random
from pathlib import Path
from PIL import Image, ImageDraw
import ipywidgets as widgets
from tango_core.data import Box, Dataset, Polygon
from tango_widgets import Labeler
random.seed(0)

def store(name, shapes):
    ds = Dataset.create(Path(name), task="detection", classes=[f"c{i}" for i in range(8)])
    for k in range(2):
        im = Image.new("RGB", (640, 480))
        d = ImageDraw.Draw(im)
        for _ in range(60):  # a busy picture
            x, y = random.randrange(640), random.randrange(480)
            d.ellipse([x, y, x + random.randrange(20, 120), y + random.randrange(20, 120)],
                      fill=tuple(random.randrange(256) for _ in range(3)))
        rec = ds.add_image(_jpeg(im), name=f"img{k}.jpg")
        for i in range(shapes // 2):
            x, y = random.uniform(0, 560), random.uniform(0, 400)
            ds.add_box(rec.id, Box(i % 8, x, y, x + random.uniform(10, 80), y + random.uniform(10, 80)))
            cx, cy, r = random.uniform(40, 600), random.uniform(40, 440), random.uniform(8, 40)
            ds.add_polygon(rec.id, Polygon(i % 8, [(cx + r * math.cos(a * math.pi / 4), cy + r * math.sin(a * math.pi / 4))
                                                   for a in range(8)]))
    ds.save()
    return ds

def _jpeg(im):
    # camera-like: grain on top of the shapes, so the file has a photo's size
    import io
    import numpy as np
    arr = np.asarray(im, dtype=np.int16) + np.random.default_rng(0).integers(-40, 40, (480, 640, 3))
    buf = io.BytesIO()
    Image.fromarray(arr.clip(0, 255).astype("uint8")).save(buf, "JPEG", quality=90)
    return buf.getvalue()

lab0 = Labeler(store("empty", 0), height=480)
lab0.add_class("bench-0")
lab200 = Labeler(store("busy", 200), height=480)
lab200.add_class("bench-200")
label = widgets.Label("0")
label.add_class("bench-label")
display(lab0, lab200, label)""",
]

DRAW_JS = """([css, n, full]) => {
  const root = document.querySelector(css + ' .tango-labeler-root');
  const c = root.tangoLabeler.canvas, ctx = c.getContext('2d');
  const times = [];
  for (let i = 0; i < n + 20; i++) {
    if (full) root.tangoLabeler.invalidate();
    const t0 = performance.now();
    root.tangoLabeler.draw();
    ctx.getImageData(0, 0, 1, 1);
    if (i >= 20) times.push(performance.now() - t0);
  }
  return times;
}"""


def summary(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"median": round(statistics.median(values), 3), "p95": round(values[int(0.95 * (len(values) - 1))], 3),
            "mean": round(statistics.fmean(values), 3), "n": len(values)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--switches", type=int, default=20)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("TMPDIR", str(ARTIFACTS / "tmp"))
    (ARTIFACTS / "tmp").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tango-bench-"))
    server = JupyterServer(work, "lab")
    write_notebook(server.root / "bench.ipynb", CELLS)
    server.start()
    result: dict = {}
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            open_and_run(page, server, "bench.ipynb")
            page.wait_for_function("() => document.querySelectorAll('.tango-labeler-wrap[data-image-id]').length === 2")
            probe = KernelProbe(server.kernel_connection_file("bench.ipynb"))
            try:
                base = page.evaluate(DRAW_JS, [".bench-0", args.draws, True])
                full = page.evaluate(DRAW_JS, [".bench-200", args.draws, True])
                # a drag: the selected shape moves, the other 199 come from the cached layer
                page.locator(".bench-200 .tango-labeler-wrap").evaluate("el => el.scrollIntoView()")
                chosen = probe.eval("lab200.session.record.boxes[0].id")
                probe.eval(f"lab200.session.select({chosen!r})")
                page.wait_for_function("id => document.querySelector('.bench-200 .tango-labeler-wrap').dataset.selected === id",
                                       arg=chosen)
                busy = page.evaluate(DRAW_JS, [".bench-200", args.draws, False])
                result["redraw_ms"] = {"no_shapes": summary(base), "200_shapes_full": summary(full),
                                       "200_shapes_interactive": summary(busy)}
                result["redraw_ratio_full_vs_none"] = round(statistics.median(full) / statistics.median(base), 2)
                result["redraw_ratio_interactive_vs_none"] = round(statistics.median(busy) / statistics.median(base), 2)
                page.locator(".bench-200").screenshot(path=str(ARTIFACTS / "bench_labeler_200.png"))

                switch, trait = [], []
                for i in range(args.switches):
                    target = probe.eval(f"lab200.session.ds.records[{(i + 1) % 2}].id")
                    t0 = time.perf_counter()
                    probe.eval(f"lab200.session.step({1 if i % 2 == 0 else -1})")
                    page.wait_for_function(
                        "id => document.querySelector('.bench-200 .tango-labeler-wrap').dataset.imageId === id",
                        arg=target, polling="raf")
                    page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")  # drawn
                    switch.append((time.perf_counter() - t0) * 1000)
                    t0 = time.perf_counter()
                    probe.eval(f"setattr(label, 'value', 'v{i}')")
                    page.wait_for_function("v => document.querySelector('.bench-label').textContent === v",
                                           arg=f"v{i}", polling="raf")
                    trait.append((time.perf_counter() - t0) * 1000)
                result["image_bytes"] = probe.eval("len(lab200.canvas.image)")
                result["image_switch_ms"] = summary(switch)
                result["label_change_ms"] = summary(trait)
                result["switch_ratio_vs_label"] = round(statistics.median(switch) / statistics.median(trait), 2)
            finally:
                probe.close()
            browser.close()
    finally:
        left = server.stop()
        assert not left, left
    print(json.dumps(result, indent=2))
    r = result
    print("\n| measure | median ms | p95 ms | baseline median ms | ratio |\n|---|---|---|---|---|")
    for kind in ("full", "interactive"):
        m = r["redraw_ms"][f"200_shapes_{kind}"]
        print(f"| redraw, 200 shapes on 640x480, {kind} | {m['median']} | {m['p95']} | "
              f"{r['redraw_ms']['no_shapes']['median']} (image only) | {r[f'redraw_ratio_{kind}_vs_none']} |")
    print(f"| image switch, Python -> drawn ({r['image_bytes'] / 1024:.0f} KiB JPEG) | {r['image_switch_ms']['median']} | "
          f"{r['image_switch_ms']['p95']} | {r['label_change_ms']['median']} (Label change) | "
          f"{r['switch_ratio_vs_label']} |")


if __name__ == "__main__":
    main()
