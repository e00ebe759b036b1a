"""The pipeline app: stage status from the project, navigation, resuming, and real stage actions."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from tango_core.data import load_dataset
from tango_core.project import Project
from tango_core.targets import get_target
from tango_widgets import Dashboard, Labeler, ModelPicker, PipelineApp

pytestmark = pytest.mark.unit


def _descriptions(app):
    return {name: b.description for name, b in app._buttons.items()}


def test_fresh_project_opens_at_the_data_step(project_factory, frontend):
    project = project_factory(task="classification")
    app = PipelineApp(project, background=False)
    assert app.step == "data"
    d = _descriptions(app)
    assert d["project"] == "✔ project" and d["data"] == "○ data" and d["deploy"] == "○ deploy"
    assert "tango-app-current" in app._buttons["data"]._dom_classes
    assert "no dataset yet" in app._body.children[0].children[0].value


def test_step_buttons_switch_panels(project_factory, frontend):
    project = project_factory(task="classification", classes=["a", "b"])
    app = PipelineApp(project, background=False)
    frontend.click(app._buttons["model"])
    assert app.step == "model" and isinstance(app._body.children[0], ModelPicker)
    frontend.click(app._buttons["train"])
    panel = app._body.children[0]
    assert any(isinstance(c, Dashboard) for c in panel.children)
    frontend.click(app._buttons["project"])
    assert "classification" in app._body.children[0].children[0].value


def test_a_panel_that_cannot_open_says_why(project_factory, frontend):
    project = project_factory(task="classification")  # no classes: no recommendation possible
    app = PipelineApp(project, background=False)
    frontend.click(app._buttons["model"])
    assert app._body.children == () or app._body.children == []
    assert "no classes yet" in app._message.value


def test_stage_events_update_the_buttons_live(project_factory, frontend):
    project = project_factory(task="classification")
    app = PipelineApp(project, background=False)
    project.mark("training", "running")
    assert _descriptions(app)["train"] == "◔ train" and app._buttons["train"].button_style == "info"
    project.mark("training", "failed", error="DataError: bad.png: truncated")
    assert app._buttons["train"].button_style == "danger"
    assert "truncated" in app._message.value and "truncated" in app._buttons["train"].tooltip


def test_resumes_after_a_kernel_restart(project_factory, frontend):
    project = project_factory(task="classification", classes=["a", "b"])
    for stage in ("data", "labels", "model_selection"):
        project.mark(stage, "completed")
    project.mark("training", "running")
    # the kernel that was training dies: its pid in tango.yaml is no longer alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    project.stages["training"].pid = int(dead.stdout)
    project.save()
    app = PipelineApp(str(project.root), background=False)        # a new kernel opens the folder
    assert app.step == "train"
    assert app._buttons["train"].button_style == "danger"
    assert "interrupted" in app._buttons["train"].tooltip
    assert _descriptions(app)["data"] == "✔ data"


def test_data_step_makes_a_sample_and_labels_step_finishes(project_factory, frontend):
    project = project_factory(task="classification")
    app = PipelineApp(project, background=False)
    panel = app.panel("data")
    sample_row = panel.children[3]
    sample, size, make = sample_row.children
    assert sample.value == "digits"
    frontend.set(size, value=2)
    frontend.click(make)
    assert project.stages["data"].status == "completed" and project.config.dataset == "data"
    ds = load_dataset(project.path("data"))
    assert len(ds) == 20 and project.config.classes == ds.classes
    assert "20 images" in panel.children[0].value
    frontend.click(panel.children[4])                               # analyse
    assert "<pre>" in panel.children[5].value
    frontend.click(app._buttons["labels"])
    labels = app._body.children[0]
    labeler, done = labels.children
    assert isinstance(labeler, Labeler)
    frontend.click(done)
    st = Project.open(project.root).stages["labels"]
    assert st.status == "completed" and st.info == {"labelled": 20, "images": 20}
    assert app._buttons["labels"].button_style == "success"


def test_import_errors_are_shown_not_raised(project_factory, frontend, tmp_path):
    project = project_factory(task="detection")
    app = PipelineApp(project, background=False)
    panel = app.panel("data")
    source, fmt, do_import = panel.children[1].children
    frontend.set(source, value=str(tmp_path / "missing"))
    frontend.click(do_import)
    assert "import" in app._message.value and "failed" in app._message.value
    assert project.stages["data"].status == "failed"
    assert app.last_error and "Traceback" in app.last_error


def test_one_action_at_a_time(project_factory, frontend):
    project = project_factory(task="classification")
    app = PipelineApp(project, background=True)
    release = threading.Event()
    app.run("slow", release.wait)
    assert app.busy
    app.run("second", lambda: None)
    assert "wait until the running step finishes" in app._message.value
    release.set()
    app.wait(10)
    assert not app.busy and "slow: done" in app._message.value


def test_static_html_lists_stage_status(project_factory, frontend):
    project = project_factory(task="classification")
    project.mark("data", "completed")
    project.mark("labels", "failed", error="no labels")
    page = PipelineApp(project, background=False)._repr_mimebundle_()["text/html"]
    assert "✔ completed" in page and "✖ failed" in page and "no labels" in page


@pytest.mark.slow
def test_whole_pipeline_train_and_export(project_factory, frontend):
    """data -> model -> train (1 epoch, 16 px) -> export (ONNX) -> deploy, all through the app."""
    project = project_factory(task="classification", target="x86-cpu")
    app = PipelineApp(project, background=False)
    sample, size, make = app.panel("data").children[3].children
    frontend.set(size, value=4)
    frontend.click(make)
    frontend.click(app._buttons["model"])
    frontend.click(app._body.children[0]._use)
    assert project.stages["model_selection"].status == "completed"
    frontend.click(app._buttons["train"])
    controls, board = app._body.children[0].children
    epochs, batch, imgsz, start, resume = controls.children
    frontend.set(epochs, value=1)
    frontend.set(batch, value="8")
    frontend.set(imgsz, value=16)
    frontend.click(start)
    assert project.stages["training"].status == "completed", app._message.value
    assert board.history.end is not None and board._progress.value == 1.0
    assert board._eval.children == (board._confusion, board._samples)  # from the engine's val_plots
    assert "torch" in board._info.value and "resnet-cifar" in board._info.value
    assert "training done" in app._message.value and resume.disabled
    frontend.click(app._buttons["export"])
    formats, side = app._body.children[0].children[0].children
    first = get_target("x86-cpu").runtimes[0]
    assert formats.value == (first,)                                 # the target's first runtime
    frontend.click(side.children[1])
    assert project.stages["export"].status == "completed", app._message.value
    assert first in project.stages["export"].info["exports"]
    assert first in app._body.children[0].children[1].value
    frontend.click(app._buttons["deploy"])
    info, go, result = app._body.children[0].children
    frontend.click(go)
    assert project.stages["deploy"].status == "completed", app._message.value
    assert str(project.path("deploy", "x86-cpu")) in result.value
    assert (project.path("deploy", "x86-cpu") / "Dockerfile").exists()
    assert app.resume_step() == "labels" and all(  # the sample came labelled; the step was skipped
        b.button_style == "success" for name, b in app._buttons.items() if name not in ("labels",))
