"""``%load_ext tango_widgets`` and the ``%tango`` magics, in a real IPython shell."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from tango_core.project import Project
from tango_widgets import GraphViewer, Labeler, PipelineApp
from tango_widgets._magics import state_file

pytestmark = pytest.mark.unit


@pytest.fixture
def shell(tmp_path, monkeypatch, frontend):
    monkeypatch.setenv("TANGO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    sh = InteractiveShell.instance()
    sh.user_ns["__session__"] = str(tmp_path / "notebooks" / "a.ipynb")
    sh.run_line_magic("load_ext", "tango_widgets")
    yield sh
    sh.run_line_magic("unload_ext", "tango_widgets")
    sh.user_ns.pop("__session__", None)


def test_project_is_created_remembered_and_reopened_after_a_restart(shell, tmp_path):
    project = shell.run_line_magic("tango", f"project {tmp_path / 'p'} --create --task detection --target jetson-nano")
    assert isinstance(project, Project) and project.task == "detection" and project.config.target == "jetson-nano"
    assert state_file().exists()
    # a kernel restart: the extension is loaded again, nothing is in memory
    shell.run_line_magic("unload_ext", "tango_widgets")
    shell.run_line_magic("load_ext", "tango_widgets")
    app = shell.run_line_magic("tango", "app")
    assert isinstance(app, PipelineApp) and app.project.root.resolve() == (tmp_path / "p").resolve()
    # another notebook does not see it
    shell.user_ns["__session__"] = str(tmp_path / "notebooks" / "b.ipynb")
    shell.run_line_magic("unload_ext", "tango_widgets")
    shell.run_line_magic("load_ext", "tango_widgets")
    with pytest.raises(UsageError, match="no tango project for this notebook yet"):
        shell.run_line_magic("tango", "app")


def test_widgets_open_on_the_current_project(shell, tmp_path):
    shell.run_line_magic("tango", f"project {tmp_path / 'p'} --create")
    assert shell.run_line_magic("tango", "app model").step == "model"
    assert isinstance(shell.run_line_magic("tango", "train"), PipelineApp)
    with pytest.raises(UsageError, match="no classes yet"):
        shell.run_line_magic("tango", "model")
    with pytest.raises(UsageError, match="has no dataset yet"):
        shell.run_line_magic("tango", "label")
    viewer = shell.run_line_magic("tango", "graph resnet-cifar20 --size 32")
    assert isinstance(viewer, GraphViewer) and viewer.graph["input_shape"] == [1, 3, 32, 32]
    with capture_output() as out:
        shell.run_line_magic("tango", "status")
    assert "model_selection" in out.stdout and "ready" in out.stdout


def test_label_a_raw_image_folder_imports_it_into_the_project(shell, tmp_path):
    from PIL import Image

    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (i * 50, 0, 0)).save(raw / f"photo{i}.png")
    project = shell.run_line_magic("tango", f"project {tmp_path / 'p'} --create --task detection")
    lab = shell.run_line_magic("tango", f"label {raw}")
    assert isinstance(lab, Labeler) and len(lab.dataset) == 3
    assert project.config.dataset == "data" and project.stages["data"].status == "completed"
    again = shell.run_line_magic("tango", "label")                  # the project's dataset from now on
    assert again.dataset.root == lab.dataset.root
    shell.user_ns["__session__"] = str(tmp_path / "other.ipynb")      # a notebook without a project
    shell.run_line_magic("unload_ext", "tango_widgets")
    shell.run_line_magic("load_ext", "tango_widgets")
    store = shell.run_line_magic("tango", f"label {lab.dataset.root}")  # a dataset store opens as is
    assert len(store.dataset) == 3
    with pytest.raises(UsageError, match="no tango project"):
        shell.run_line_magic("tango", f"label {raw}")                  # raw images need a project


def test_label_offers_pre_labels_from_the_projects_trained_model(shell, tmp_path, frontend):
    from PIL import Image

    from tango_core.models import create_model
    from tango_core.models.weights import save_weights

    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(2):
        Image.new("RGB", (48, 32), (i * 80, 40, 0)).save(raw / f"photo{i}.png")
    project = shell.run_line_magic("tango", f"project {tmp_path / 'p'} --create --task detection")
    lab = shell.run_line_magic("tango", f"label {raw}")
    assert lab.model is None                                         # nothing trained yet
    assert project.stages["labels"].status == "ready"                 # raw images still need labels
    lab.session.add_class("cat")
    best = save_weights(create_model("yolov9-t", num_classes=1), project.path("runs", "train", "1", "best.pt"),
                        task="detection", classes=["cat"], imgsz=64, in_channels=3)
    project.mark("training", "completed", best_model=str(best))       # what engine.train records
    lab = shell.run_line_magic("tango", "label")
    assert lab.model == best
    assert lab.prelabel(min_score=0.0005) == 2                        # untrained: scores near the prior
    assert all(s["kind"] == "box" and s["suggestion"] for s in lab.canvas.shapes)


def test_bad_commands_get_a_usage_message(shell, tmp_path):
    with pytest.raises(UsageError, match="unknown command 'lable'. Did you mean 'label'"):
        shell.run_line_magic("tango", "lable")
    with pytest.raises(UsageError, match="is not a tango project: add --create"):
        shell.run_line_magic("tango", f"project {tmp_path / 'nothing'}")
    with pytest.raises(UsageError, match="usage: %tango graph"):
        shell.run_line_magic("tango", "graph resnet-cifar20 --size big")


def test_cwd_project_is_used_without_picking_one(shell, tmp_path, monkeypatch):
    Project.create(tmp_path / "here", task="classification")
    monkeypatch.chdir(tmp_path / "here")
    assert shell.run_line_magic("tango", "app").project.name == "here"


def test_widgets_display_themselves_with_a_static_form(shell, tmp_path):
    shell.run_line_magic("tango", f"project {tmp_path / 'p'} --create")
    with capture_output() as out:
        shell.run_cell("%tango app")
    bundles = [o.data for o in out.outputs]
    assert len(bundles) == 1
    assert {"application/vnd.jupyter.widget-view+json", "text/html"} <= set(bundles[0])
