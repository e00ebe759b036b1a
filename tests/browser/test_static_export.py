"""Static forms: a papermill-executed notebook turned into the HTML report shows every widget
offline (no CDN, no widget state), as pictures and tables."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from _harness import ARTIFACTS, REPO, SENTINEL, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.notebook, pytest.mark.slow]

CELLS = [
    """from pathlib import Path
from PIL import Image
from tango_core import events as ev
from tango_core.data import Box, Dataset
from tango_core.project import Project
from tango_widgets import Dashboard, GraphViewer, Labeler, ModelPicker, PipelineApp, StudyView
ds = Dataset.create(Path("labels"), task="detection", classes=["cat", "dog"])
Image.new("RGB", (96, 64), (20, 90, 160)).save("a.png")
rec = ds.add_image("a.png")
ds.add_box(rec.id, Box(1, 10, 10, 60, 50))
ds.save()
Labeler(ds)""",
    """events = [ev.Event(ev.TRAIN_START, dict(epochs=2, batch_size=4, device="cpu", run_dir="r", start_epoch=0))]
events += [ev.Event(ev.TRAIN_BATCH, dict(epoch=e, total_epochs=2, step=s, total_step=5, loss=1 / (1 + 5 * e + s),
                                         losses={}, lr=0.01, time=0.1)) for e in range(2) for s in range(1, 6)]
events += [ev.Event(ev.TRAIN_END, dict(best_model="best.pt", size_bytes=10, best_fitness=0.9, epochs_run=2, time=1.0))]
Dashboard.from_events(events, title="report run")""",
    """GraphViewer("resnet-cifar20", depth=2)""",
    """study = StudyView(directions=["maximize"], objectives=["top1"])
bus = ev.EventBus()
study.attach(bus)
for n, v in enumerate([0.5, 0.7, 0.6]):
    bus.emit(ev.TRIAL_START, study="hpo", trial=n, params={"lr0": 0.1 / (n + 1)})
    bus.emit(ev.TRIAL_COMPLETE, study="hpo", trial=n, values=[v], params={"lr0": 0.1 / (n + 1)}, state="complete")
study""",
    """project = Project.create("proj", task="classification", classes=["a", "b"])
ModelPicker(project)""",
    """PipelineApp(project)""",
]

OFFLINE_JS = """() => ({
  imgs: Array.from(document.querySelectorAll('.jp-OutputArea-output img')).map(i => ({
      alt: i.getAttribute('alt'), w: i.naturalWidth, ok: i.complete && i.naturalWidth > 0})),
  text: Array.from(document.querySelectorAll('.jp-OutputArea-output')).map(o => o.innerText).join(' | '),
  widget_scripts: document.querySelectorAll('script[type^="application/vnd.jupyter.widget"]').length,
})"""


def test_report_html_shows_every_widget_offline(tmp_path, monkeypatch, browser):
    import papermill

    from tango_core.demo import write_html_report

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("TANGO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    source = write_notebook(tmp_path / "widgets.ipynb", CELLS)
    executed = tmp_path / "out" / "widgets.ipynb"
    executed.parent.mkdir()
    papermill.execute_notebook(str(source), str(executed), cwd=str(tmp_path), kernel_name="python3",
                               progress_bar=False, execution_timeout=300)
    html = write_html_report(executed)

    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    blocked = []

    def offline(route):
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", offline)
    page.goto(html.as_uri(), wait_until="load")
    page.locator(".jp-Notebook").first.wait_for()
    info = page.evaluate(OFFLINE_JS)
    page.screenshot(path=str(ARTIFACTS / "static_report.png"), full_page=True)
    page.close()

    assert info["widget_scripts"] == 0                    # no widget state: nothing waits for a CDN
    assert all(i["ok"] for i in info["imgs"]), info["imgs"]
    alts = [i["alt"] for i in info["imgs"]]
    assert len(alts) == 4                                 # the labeler's PNG, the curves, the graph, the study
    assert "training curves" in alts and "resnet-cifar20" in alts and "study" in alts
    text = info["text"]
    assert "done: 2 epochs" in text                       # the dashboard's HTML form
    assert "Recommended base model: resnet-cifar20" in text   # the picker's cards
    assert "✔ completed" in text and "○ ready" in text   # the app's stage table
    assert SENTINEL in text
