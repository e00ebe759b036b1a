"""The widgets in JupyterLab 4 and Notebook 7, driven by headless Chromium.

A notebook shows the labeler, the dashboard (fed live from a bus) and the graph viewer; the
test draws a box and a polygon with the mouse, uses a class hotkey and undo, and checks the
annotation store on disk after each step; then it checks the dashboard and the graph render
(and a node pop-up opens).  Screenshots go to artifacts/browser/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _harness import ARTIFACTS, KernelProbe, open_and_run, write_notebook
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "widgets.ipynb"
CELLS = [
    # the labeler on a two-image detection store
    """from pathlib import Path
from PIL import Image, ImageDraw
from tango_core.data import Dataset
from tango_widgets import Labeler
ds = Dataset.create(Path("labels"), task="detection", classes=["cat", "dog"])
for i in range(2):
    im = Image.new("RGB", (320, 240), (30 + 60 * i, 90, 140))
    ImageDraw.Draw(im).ellipse([60, 50, 150, 130], fill=(240, 220, 90))
    im.save(f"photo{i}.png")
    ds.add_image(f"photo{i}.png")
ds.save()
lab = Labeler(ds, height=360)
lab""",
    # the dashboard, shown first, then fed by events (the live path)
    """from tango_core import events as ev
from tango_widgets import Dashboard
bus = ev.EventBus()
board = Dashboard(bus, title="browser run")
board""",
    """bus.emit(ev.SYSTEM_INFO, torch="2", device="cpu", cpu_count=2, cuda=None)
bus.emit(ev.TRAIN_START, epochs=3, batch_size=8, device="cpu", run_dir="runs/train/1", start_epoch=0)
for e in range(3):
    for s in range(1, 11):
        bus.emit(ev.TRAIN_BATCH, epoch=e, total_epochs=3, step=s, total_step=10, loss=2 / (1 + 10 * e + s),
                 losses={"cls": 1 / (1 + 10 * e + s)}, lr=0.1 * (1 - e / 3), time=0.1)
    bus.emit(ev.VAL_END, epoch=e, metrics={"top1": 0.5 + 0.1 * e}, fitness=0.5 + 0.1 * e, time=1.0)
    bus.emit(ev.EPOCH_END, epoch=e, train_loss=0.1, metrics={"top1": 0.5 + 0.1 * e}, fitness=0.5 + 0.1 * e,
             epoch_time=1.0, total_time=e + 1.0)
bus.emit(ev.VAL_PLOTS, epoch=2, class_names=["a", "b"], confusion_matrix=[[5, 1], [2, 6]])
bus.emit(ev.TRAIN_END, best_model="runs/train/1/weights/best.pt", size_bytes=1000, best_fitness=0.7,
         epochs_run=3, time=3.0)""",
    # the graph viewer
    """from tango_widgets import GraphViewer
graph = GraphViewer("resnet-cifar20", depth=3, height=420)
graph""",
    # the largest detection model: 69 layers in four lanes, fitted to the width
    """big = GraphViewer("yolov7-e6e", input_size=1280, depth=2, height=360)
big.add_class("big-graph")
big""",
]

TO_PAGE_JS = """(pts) => {
  const el = document.querySelector('.tango-labeler-root');
  const r = el.tangoLabeler.canvas.getBoundingClientRect();
  return pts.map(([x, y]) => { const [sx, sy] = el.tangoLabeler.toScreen(x, y); return [r.left + sx, r.top + sy]; });
}"""


def wait_store(path: Path, predicate, timeout: float = 30.0):
    """Poll the annotation store on disk until ``predicate(images)`` holds."""
    deadline = time.monotonic() + timeout
    images = None
    while time.monotonic() < deadline:
        try:
            images = json.loads(path.read_text())["images"]
        except (OSError, ValueError):
            images = None
        if images is not None and predicate(images):
            return images
        time.sleep(0.1)
    raise AssertionError(f"the store never reached the expected state; last: {images}")


def label_with_the_mouse(page, store: Path, prefix: str) -> None:
    page.locator(".tango-labeler-wrap[data-image-id]").wait_for()
    page.locator(".tango-labeler-wrap").scroll_into_view_if_needed()
    # a box: drag from (40, 40) to (140, 120) in image pixels
    (x0, y0), (x1, y1) = page.evaluate(TO_PAGE_JS, [[40, 40], [140, 120]])
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    page.mouse.up()
    images = wait_store(store, lambda im: len(im[0]["boxes"]) == 1)
    box = images[0]["boxes"][0]
    assert box["cls"] == 0 and box["bbox"] == pytest.approx([40, 40, 140, 120], abs=1.5), box
    # a class hotkey: the new box becomes a dog
    page.keyboard.press("2")
    wait_store(store, lambda im: im[0]["boxes"][0]["cls"] == 1)
    # a polygon: g, four clicks, Enter
    page.keyboard.press("g")
    expect(page.locator(".tango-labeler-tool button.mod-active")).to_have_text("polygon")
    expect(page.locator(".tango-labeler-hud")).to_contain_text("polygon")  # the canvas got the tool too
    corners = [[200, 40], [300, 40], [300, 150], [200, 150]]
    for x, y in page.evaluate(TO_PAGE_JS, corners):
        page.mouse.click(x, y)
    page.keyboard.press("Enter")
    images = wait_store(store, lambda im: len(im[0]["polygons"]) == 1)
    points = images[0]["polygons"][0]["points"]
    assert len(points) == 4 and all(p == pytest.approx(c, abs=1.5) for p, c in zip(points, corners, strict=False)), points
    assert images[0]["polygons"][0]["cls"] == 1        # new shapes take the current class
    expect(page.locator(".tango-labeler-progress")).to_have_text("1 of 2 labeled")
    page.locator(".tango-labeler").screenshot(path=str(ARTIFACTS / f"{prefix}_labeler.png"))
    # undo removes the polygon again; the box stays
    page.keyboard.press("Control+z")
    images = wait_store(store, lambda im: im[0]["polygons"] == [])
    assert len(images[0]["boxes"]) == 1
    # the box is drawn in the browser: its edge has the dog colour (#3cb44b)
    (ex, ey), = page.evaluate(TO_PAGE_JS, [[40, 80]])
    strip = page.evaluate("""([x, y]) => {
      const c = document.querySelector('.tango-labeler-surface'), r = c.getBoundingClientRect();
      const d = c.getContext('2d').getImageData(Math.round(x - r.left) - 3, Math.round(y - r.top), 7, 1).data;
      return Array.from({length: 7}, (_, i) => Array.from(d.slice(4 * i, 4 * i + 3)));
    }""", [ex, ey])
    assert any(g > 150 and r < 120 and b < 120 for r, g, b in strip), strip


def wait_kernel_value(probe: KernelProbe, expr: str, predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = probe.eval(expr)
        if predicate(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def zoom_with_the_wheel(page, probe: KernelProbe) -> None:
    fitted = probe.eval("lab.canvas.zoom")
    (cx, cy), = page.evaluate(TO_PAGE_JS, [[160, 120]])
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -400)                                  # zoom in at the cursor
    zoomed = wait_kernel_value(probe, "lab.canvas.zoom", lambda z: z > fitted * 1.5)
    assert zoomed > fitted * 1.5
    # the image point under the cursor stays under it
    (x, y), = page.evaluate(TO_PAGE_JS, [[160, 120]])
    assert abs(x - cx) < 1.5 and abs(y - cy) < 1.5
    page.keyboard.press("f")                                   # fit again
    assert wait_kernel_value(probe, "lab.canvas.zoom", lambda z: abs(z - fitted) < 1e-6) == pytest.approx(fitted)


def check_dashboard(page, prefix: str) -> None:
    board = page.locator(".tango-dashboard")
    board.scroll_into_view_if_needed()
    expect(page.locator(".tango-dashboard-status")).to_contain_text("done: 3 epochs")
    page.wait_for_function("""() => {
      const lines = document.querySelectorAll('.tango-dashboard-plot .scatterlayer .trace path.js-line');
      return lines.length >= 4 && Array.from(lines).every(l => (l.getAttribute('d') || '').length > 20);
    }""")
    expect(board.locator("img")).to_have_count(1)      # the confusion matrix
    board.screenshot(path=str(ARTIFACTS / f"{prefix}_dashboard.png"))


def check_graph(page, probe: KernelProbe, prefix: str) -> None:
    view = page.locator(".tango-graph").first
    view.scroll_into_view_if_needed()
    page.wait_for_function("""() => document.querySelector('.tango-graph')
        .querySelectorAll('.tango-graph-view .tango-graph-node').length >= 10""")
    view.locator(".tango-graph-view .tango-graph-node[data-id='layer1']").click()
    popup = view.locator(".tango-graph-popup")
    expect(popup).to_be_visible()
    expect(popup).to_contain_text("Sequential")
    expect(popup.locator(".tango-graph-node")).not_to_have_count(0)
    assert wait_kernel_value(probe, "graph.selected", lambda v: v == "layer1") == "layer1"  # the click reached Python
    view.screenshot(path=str(ARTIFACTS / f"{prefix}_graph.png"))
    # YOLOv7-E6E: four lanes, fitted to the width, zoomable, its blocks open
    big = page.locator(".big-graph")
    big.scroll_into_view_if_needed()
    page.wait_for_function("""() => document.querySelectorAll('.big-graph .tango-graph-view .tango-graph-node').length >= 60
        && document.querySelectorAll('.big-graph .tango-graph-lane').length === 4""")
    fitted = wait_kernel_value(probe, "big.zoom", lambda z: z > 0)  # fitted on first display
    assert 0 < fitted < 1
    big.locator(".tango-graph-view .tango-graph-node[data-id='3']").click()
    expect(big.locator(".tango-graph-popup")).to_contain_text("ELAN")
    assert wait_kernel_value(probe, "big.selected", lambda v: v == "3") == "3"
    big.screenshot(path=str(ARTIFACTS / f"{prefix}_graph_e6e.png"))
    big.locator(".tango-graph-zoom-in").click()
    assert wait_kernel_value(probe, "big.zoom", lambda z: z > fitted) == pytest.approx(fitted * 1.25)


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_widgets_in_a_real_frontend(app, server_factory, page):
    server = server_factory(app)
    write_notebook(server.root / NOTEBOOK, CELLS)
    server.start()
    open_and_run(page, server, NOTEBOOK)
    assert page.get_by_text("Error displaying widget").count() == 0
    prefix = "lab" if app == "lab" else "notebook7"
    page.screenshot(path=str(ARTIFACTS / f"{prefix}_01_rendered.png"))
    probe = KernelProbe(server.kernel_connection_file(NOTEBOOK))
    try:
        label_with_the_mouse(page, server.root / "labels" / "dataset.json", prefix)
        assert probe.eval("lab.session.progress") == [1, 2]
        zoom_with_the_wheel(page, probe)
        check_dashboard(page, prefix)
        check_graph(page, probe, prefix)
    finally:
        probe.close()
    assert not page.errors, page.errors
