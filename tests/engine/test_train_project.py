"""train(project): the project's dataset, model and settings; stage status; numbered run folders."""

from __future__ import annotations

import pytest
from engine_data import make_image_dataset

from tango_core.engine import train
from tango_core.errors import ConfigError, DataError
from tango_core.project import Project


def test_training_a_project_marks_the_stage_and_numbers_runs(project_factory):
    project = project_factory("p")
    make_image_dataset(project.path("data"))
    project.set(dataset="data", hyp={"fliplr": 0.0})
    statuses = []
    project.events.subscribe("stage_status", lambda e: statuses.append((e["stage"], e["status"])))
    result = train(project, epochs=1, batch_size=4, imgsz=16, amp="off")
    assert statuses == [("training", "running"), ("training", "completed")]
    assert result.run_dir == project.path("runs", "train", "1")
    reopened = Project.open(project.root)
    st = reopened.stages["training"]
    assert st.status == "completed" and st.info["best_model"] == str(result.best)
    assert reopened.config.model == "resnet-cifar20"  # recommended by the selection table: 3 classes, CPU target
    assert reopened.config.classes == ["top-left", "top-right", "bottom-left"]
    second = train(project, epochs=1, batch_size=4, imgsz=16, amp="off")
    assert second.run_dir == project.path("runs", "train", "2")
    # hyper-parameters of the project reach the run
    assert "fliplr: 0.0" in (second.run_dir / "hyp.yaml").read_text()


def test_a_failed_training_marks_the_stage_failed_with_the_error(project_factory):
    project = project_factory("q")
    with pytest.raises(ConfigError, match="project.dataset"):
        train(project, epochs=1)
    ds = make_image_dataset(project.path("data"))
    project.set(dataset="data")
    ds.image_path(ds.records[0]).write_bytes(b"not a png")
    with pytest.raises(DataError):
        train(project, epochs=1, batch_size=4, imgsz=16)
    st = Project.open(project.root).stages["training"]
    assert st.status == "failed" and "img_000.png" in st.last_error


def test_resume_a_project_run(project_factory):
    project = project_factory("r")
    make_image_dataset(project.path("data"))
    project.set(dataset="data")
    first = train(project, epochs=1, batch_size=4, imgsz=16, amp="off")
    # pretend the process died after the first epoch of a two-epoch run: resume extends nothing,
    # it continues the same run folder from its last.pt
    resumed = train(project, resume=True)
    assert resumed.run_dir == first.run_dir and resumed.epochs_run == 1


def test_only_rank_0_writes_the_project_under_torchrun(project_factory, monkeypatch):
    # every torchrun process runs train(project); the others must leave the project file alone
    project = project_factory("r")
    make_image_dataset(project.path("data"))
    project.set(dataset="data", hyp={"fliplr": 0.0})
    before = project.config_path.read_bytes()
    monkeypatch.setenv("RANK", "1")  # a second process's view (WORLD_SIZE unset: it trains alone here)
    statuses = []
    project.events.subscribe("stage_status", lambda e: statuses.append(e["status"]))
    result = train(project, epochs=1, batch_size=4, imgsz=16, amp="off", distributed=False)
    assert result.best.is_file()
    assert statuses == [] and project.config_path.read_bytes() == before
    assert Project.open(project.root).stages["training"].status == "ready"
