"""The pipeline app: stage status from the project, navigation, resuming, and real stage actions."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

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
    # the sample came labelled: the project's attach_dataset completed the labels stage too
    assert project.stages["labels"].status == "completed" and project.stages["labels"].info == {"labelled": 20}
    assert app._buttons["labels"].button_style == "success"
    assert "20 images" in panel.children[0].value
    frontend.click(panel.children[4])                               # analyse
    assert "<pre>" in panel.children[5].value
    frontend.click(app._buttons["labels"])
    labels = app._body.children[0]
    labeler, done, model_info = labels.children
    assert isinstance(labeler, Labeler) and labeler.model is None
    assert "train a model" in model_info.value
    frontend.click(done)
    st = Project.open(project.root).stages["labels"]
    assert st.status == "completed" and st.info == {"labelled": 20, "images": 20}
    assert app._buttons["labels"].button_style == "success"


def test_data_step_uses_the_projects_attach_dataset(project_factory, frontend, tmp_path):
    """An import of unlabelled images completes data only; a labelled one completes labels too; a
    later unlabelled dataset sends labels back to ready (its images still need labels)."""
    from PIL import Image

    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (i * 60, 0, 0)).save(raw / f"photo{i}.png")
    project = project_factory(task="detection")
    app = PipelineApp(project, background=False)
    panel = app.panel("data")
    source, fmt, do_import = panel.children[1].children
    frontend.set(source, value=str(raw))
    frontend.click(do_import)
    assert project.stages["data"].status == "completed", app._message.value
    assert project.stages["data"].info["images"] == 3 and project.config.dataset == "data"
    assert project.stages["labels"].status == "ready" and app.resume_step() == "labels"
    sample, size, make = panel.children[3].children
    frontend.set(size, value=4)
    frontend.click(make)                                            # shapes: every image has its boxes
    assert project.config.dataset == "data-2" and project.stages["labels"].status == "completed"
    assert project.stages["labels"].info["labelled"] == 4 and app.resume_step() == "model"
    frontend.click(do_import)                                       # unlabelled images again
    assert project.config.dataset == "data-3" and project.stages["labels"].status == "ready"
    assert project.stages["labels"].info["labelled"] == 0 and app.resume_step() == "labels"
    reopened = Project.open(project.root)
    assert reopened.stages["data"].status == "completed" and reopened.stages["labels"].status == "ready"


@pytest.mark.slow
def test_labels_step_prelabels_with_the_projects_trained_model(project_factory, frontend):
    """data (shapes) -> labels (no model yet) -> train 1 epoch -> labels: "suggest" runs the new
    best.pt on the images added since, and the suggestions are accepted into the store."""
    import io

    from PIL import Image

    from tango_core.detection import DetectionPredictor

    project = project_factory(task="detection")
    app = PipelineApp(project, background=False)
    sample, size, make = app.panel("data").children[3].children
    frontend.set(sample, value="shapes")
    frontend.set(size, value=10)
    frontend.click(make)
    ds = load_dataset(project.path("data"))
    for i in range(2):                                              # new photos nobody labelled yet
        buf = io.BytesIO()
        Image.new("RGB", (96, 64), (30 + 40 * i, 90, 160)).save(buf, "PNG")
        ds.add_image(buf.getvalue(), name=f"new{i}.png")
    ds.save()
    frontend.click(app._buttons["labels"])
    labeler, done, model_info = app._body.children[0].children
    assert labeler.model is None and "train a model" in model_info.value
    project.set(model="yolov9-t")
    project.mark("model_selection", "completed")
    frontend.click(app._buttons["train"])
    controls, board = app._body.children[0].children
    epochs, batch, imgsz, start, resume = controls.children
    frontend.set(epochs, value=1)
    frontend.set(batch, value="8")
    frontend.set(imgsz, value=64)
    frontend.click(start)
    assert project.stages["training"].status == "completed", app._message.value
    best = project.trained_weights()
    assert best is not None and best.is_file()
    frontend.click(app._buttons["labels"])
    assert app._body.children[0].children[0] is labeler              # the open labeler got the new model
    assert labeler.model == best and str(best) in model_info.value
    frontend.send(labeler.canvas, {"op": "key", "key": "u"})        # only the unlabeled images
    frontend.set(labeler._min_score, value=0.0005)                   # one epoch: scores near the prior
    frontend.click(labeler._suggest)
    assert "suggestions on 2 of 2 images" in labeler._status.value, labeler._status.value
    rec = labeler.session.record
    assert rec.file.endswith("new0.png")
    expected = DetectionPredictor(best, conf=0.0005, agnostic=True, max_det=100)([ds.image_path(rec)])[0]
    sugg = [s for s in labeler.canvas.shapes if s["suggestion"]]
    assert [s["box"] for s in sugg] == [list(d.box) for d in expected.detections]
    assert all(s["box"][2] <= 96 and s["box"][3] <= 64 for s in sugg)  # the photo's own pixels
    frontend.send(labeler.canvas, {"op": "key", "key": "a"})        # accept them all
    stored = load_dataset(project.path("data")).get(rec.id)
    assert [list(b.xyxy) for b in stored.boxes] == [s["box"] for s in sugg]


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
    assert get_target("x86-cpu").select and formats.value == ("auto",)  # the target's select rule
    frontend.click(side.children[1])
    assert project.stages["export"].status == "completed", app._message.value
    chosen = project.stages["export"].info["selected"]["export"]       # the fastest candidate measured here
    assert chosen in project.stages["export"].info["exports"]
    assert chosen in app._body.children[0].children[1].value and "fastest measured" in app._body.children[0].children[1].value
    frontend.click(app._buttons["deploy"])
    info, go, result = app._body.children[0].children
    frontend.click(go)
    assert project.stages["deploy"].status == "completed", app._message.value
    assert str(project.path("deploy", "x86-cpu")) in result.value
    assert (project.path("deploy", "x86-cpu") / "Dockerfile").exists()
    # the sample came labelled, so the data step completed labels too: nothing is left to resume
    assert project.resume_point() is None and app.resume_step() == "deploy"
    assert all(b.button_style == "success" for b in app._buttons.values()), _descriptions(app)
    assert PipelineApp(str(project.root), background=False).step == "deploy"  # a new kernel: still done


@pytest.mark.slow
def test_resume_from_last_pt_after_a_crash(project_factory, frontend):
    """Training crashes after its first epoch: the train step offers "Resume" at once, and after a
    kernel restart (the stage left running by a dead process); clicking it continues the same run
    from last.pt instead of starting again."""
    from tango_core import events as ev

    project = project_factory(task="classification")
    app = PipelineApp(project, background=False)
    sample, size, make = app.panel("data").children[3].children
    frontend.set(size, value=2)
    frontend.click(make)
    project.set(model="resnet-cifar20")
    project.mark("model_selection", "completed")

    def crash(event) -> None:  # the machine goes down right after epoch 0's last.pt is written
        if event["kind"] == "last" and event["epoch"] == 0:
            raise RuntimeError("simulated crash")

    off = project.events.subscribe(ev.CHECKPOINT, crash)
    frontend.click(app._buttons["train"])
    controls, board = app._body.children[0].children
    epochs, batch, imgsz, start, resume = controls.children
    assert resume.disabled                                          # nothing to resume yet
    frontend.set(epochs, value=3)
    frontend.set(batch, value="8")
    frontend.set(imgsz, value=16)
    frontend.click(start)
    off()
    st = project.stages["training"]
    assert st.status == "failed" and "simulated crash" in st.last_error and "simulated crash" in app._message.value
    run_dir = Path(st.info["run_dir"])
    assert (run_dir / "weights" / "last.pt").is_file()
    assert not resume.disabled                                      # offered at once, in the same app
    # the kernel dies instead: the stage is left running, by a process that no longer exists
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    project.mark("training", "running", run_dir=str(run_dir))
    project.stages["training"].pid = int(dead.stdout)
    project.save()
    app2 = PipelineApp(str(project.root), background=False)         # a new kernel opens the folder
    assert app2.step == "train" and "interrupted" in app2._buttons["train"].tooltip
    controls, board = app2._body.children[0].children
    resume = controls.children[4]
    assert resume.description == "Resume" and not resume.disabled
    starts = []
    app2.project.events.subscribe(ev.TRAIN_START, starts.append)
    frontend.click(resume)
    st = app2.project.stages["training"]
    assert st.status == "completed", app2._message.value
    assert [(e["start_epoch"], e["epochs"], e["run_dir"], e["resumed"]) for e in starts] == [
        (1, 3, str(run_dir), True)]                                  # continued at epoch 1 of the same run
    assert st.info["epochs_run"] == 3 and Path(st.info["best_model"]).parent == run_dir / "weights"
    assert resume.disabled and "training done" in app2._message.value
