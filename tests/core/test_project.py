import os
import signal
import subprocess
import sys
import textwrap

import pytest
import yaml

from tango_core import targets as T
from tango_core._io import atomic_write_text
from tango_core.errors import ConfigError, TangoError
from tango_core.events import STAGE_STATUS, Recorder
from tango_core.project import CONFIG_NAME, STAGES, Project, ProjectConfig, StageStatus


def test_create_and_reopen_restores_everything(tmp_path):
    p = Project.create(tmp_path / "proj", task="detection", target="jetson-nano", classes=["cat", "dog"])
    p.set(model="yolov7-tiny", hyp={"lr0": 0.01})
    p.mark("data", "completed", images=40)
    p.mark("labels", "completed")
    again = Project.open(tmp_path / "proj")
    assert again.config == p.config
    assert again.summary() == p.summary()
    assert again.stages["data"].info == {"images": 40}
    assert again.resume_point() == "model_selection"
    assert set(again.stages) == set(STAGES)


def test_config_is_human_readable_yaml(tmp_path):
    Project.create(tmp_path / "p", name="My project")
    raw = yaml.safe_load((tmp_path / "p" / CONFIG_NAME).read_text())
    assert raw["project"]["name"] == "My project"
    assert raw["stages"]["training"]["status"] == "ready"


def test_create_twice_refuses_but_exist_ok_reopens(tmp_path):
    Project.create(tmp_path / "p")
    with pytest.raises(TangoError, match="exists already"):
        Project.create(tmp_path / "p")
    assert Project.create(tmp_path / "p", exist_ok=True).name == "p"


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["project"].update(task="regression"), "project.task"),
    (lambda d: d["project"].update(learning_type="continual"), "project.learning_type"),
    (lambda d: d["project"].update(classes=["a", "a"]), "project.classes"),
    (lambda d: d["project"].update(colour="blue"), "project.colour"),
    (lambda d: d["project"].pop("name"), "project.name"),
    (lambda d: d["stages"]["training"].update(status="halfway"), "stages.training.status"),
    (lambda d: d["stages"].update(painting={}), "stages.painting"),
    (lambda d: d.update(version=99), "version"),
    (lambda d: d.update(version=True), "version"),
    # the audit's hand edits: each opened without an error, or with a raw TypeError
    (lambda d: d["stages"]["data"].update(info=[1]), "stages.data.info"),
    (lambda d: d["stages"]["data"].update(started=5), "stages.data.started"),
    (lambda d: d["stages"]["training"].update(pid="abc"), "stages.training.pid"),
    (lambda d: d["stages"]["training"].update(status="running", pid="abc"), "stages.training.pid"),
    (lambda d: d["project"].update(dataset=[1]), "project.dataset"),
    (lambda d: d["project"].update(model=3), "project.model"),
    (lambda d: d["project"].update(target="no-such-target"), "project.target"),
    # and the other fields
    (lambda d: d["project"].update(name=3), "project.name"),
    (lambda d: d["project"].update(weights={"a": 1}), "project.weights"),
    (lambda d: d["project"].update(model=""), "project.model"),
    (lambda d: d["project"].update(hyp=[1]), "project.hyp"),
    (lambda d: d["project"].update(hyp={1: 0.5}), "project.hyp.1"),
    (lambda d: d["project"].update(classes="cat"), "project.classes"),
    (lambda d: d["project"].update(created="last tuesday"), "project.created"),
    (lambda d: d["project"].update(target=["jetson-nano"]), "project.target"),
    (lambda d: d["stages"]["export"].update(finished="soon"), "stages.export.finished"),
    (lambda d: d["stages"]["export"].update(last_error=["boom"]), "stages.export.last_error"),
    (lambda d: d["stages"]["training"].update(pid=True), "stages.training.pid"),
    (lambda d: d["stages"]["training"].update(pid=-3), "stages.training.pid"),
    (lambda d: d["stages"]["data"].update(status=["ready"]), "stages.data.status"),
])
def test_hand_edited_config_errors_name_the_field(tmp_path, edit, field):
    p = Project.create(tmp_path / "p")
    data = yaml.safe_load(p.config_path.read_text())
    edit(data)
    p.config_path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        Project.open(tmp_path / "p")
    assert err.value.field == field
    assert str(p.config_path) in str(err.value)


def test_corrupt_yaml_names_the_position(tmp_path):
    p = Project.create(tmp_path / "p")
    p.config_path.write_text("project: {name: [unclosed\n")
    with pytest.raises(ConfigError, match="line"):
        Project.open(tmp_path / "p")


def test_set_rejects_bad_values_and_keeps_old(tmp_path):
    p = Project.create(tmp_path / "p")
    with pytest.raises(ConfigError):
        p.set(task="painting")
    assert Project.open(tmp_path / "p").task == "classification"
    assert p.task == "classification"


def test_stage_context_marks_running_completed_failed_and_emits(tmp_path):
    p = Project.create(tmp_path / "p")
    rec = Recorder(p.events, STAGE_STATUS)
    with p.stage("data"):
        assert Project.open(tmp_path / "p").stages["data"].status == "running"
    with pytest.raises(RuntimeError):
        with p.stage("training"):
            raise RuntimeError("boom")
    again = Project.open(tmp_path / "p")
    assert again.stages["data"].status == "completed"
    assert again.stages["training"].status == "failed"
    assert "boom" in again.stages["training"].last_error
    assert [(e["stage"], e["status"]) for e in rec.events] == [
        ("data", "running"), ("data", "completed"), ("training", "running"), ("training", "failed")]


def test_stage_of_a_dead_process_is_reported_interrupted(tmp_path):
    code = textwrap.dedent(f"""
        import sys, os; sys.path.insert(0, {str(os.getcwd())!r})
        from tango_core.project import Project
        p = Project.open({str(tmp_path / 'p')!r}); p.mark('training', 'running')
        os.kill(os.getpid(), 9)
    """)
    Project.create(tmp_path / "p")
    subprocess.run([sys.executable, "-c", code], check=False)
    p = Project.open(tmp_path / "p")
    assert p.stages["training"].status == "failed"
    assert "interrupted" in p.stages["training"].last_error
    assert p.resume_point() == "data"


def test_kill_during_write_leaves_old_file_intact(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old content\n")
    ready = tmp_path / "ready"
    code = textwrap.dedent(f"""
        import os, sys, time; sys.path.insert(0, {str(os.getcwd())!r})
        from tango_core import _io
        real_fsync = os.fsync
        def slow_fsync(fd):
            open({str(ready)!r}, 'w').close()
            time.sleep(60)
        os.fsync = slow_fsync
        _io.atomic_write_text({str(target)!r}, 'new ' * 1_000_000)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(600):
            if ready.exists() or proc.poll() is not None:
                break
            import time

            time.sleep(0.05)
        assert ready.exists(), "the writer never reached fsync"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert target.read_text() == "old content\n"


def test_attach_dataset_records_relative_path_classes_and_stage(tmp_path):
    from tango_core.data import make_sample

    p = Project.create(tmp_path / "p", task="detection")
    ds = make_sample("shapes", p.path("data"), n=6, size=32, task="detection")
    p.attach_dataset(ds)
    again = Project.open(tmp_path / "p")
    assert again.config.dataset == "data"
    assert again.config.classes == list(ds.classes)
    assert again.stages["data"].status == "completed" and again.stages["data"].info["images"] == 6
    assert len(again.dataset()) == 6


def test_attach_dataset_of_another_task_names_the_field(tmp_path):
    from tango_core.data import make_sample

    p = Project.create(tmp_path / "p", task="classification")
    ds = make_sample("shapes", tmp_path / "d", n=4, size=32, task="detection")
    with pytest.raises(ConfigError) as err:
        p.attach_dataset(ds)
    assert err.value.field == "project.task"


def test_trained_weights_come_from_the_completed_training_stage(tmp_path):
    p = Project.create(tmp_path / "p", weights="start.pt")
    assert p.trained_weights() is None  # config.weights are starting weights, not trained ones
    p.mark("training", "completed", best_model="runs/train/1/weights/best.pt")
    assert p.trained_weights() == tmp_path / "p" / "runs/train/1/weights/best.pt"
    p.mark("training", "running")
    assert p.trained_weights() is None


@pytest.mark.parametrize("section, field_name", [("project", f) for f in ProjectConfig.__dataclass_fields__]
                         + [("stage", f) for f in StageStatus.__dataclass_fields__])
@pytest.mark.parametrize("bad", [[1], 3.5])
def test_every_config_field_is_type_checked(tmp_path, section, field_name, bad):
    """Whatever the field, a value of the wrong type gives a ConfigError naming it (never a raw
    TypeError, never a project that opens)."""
    p = Project.create(tmp_path / "p")
    data = yaml.safe_load(p.config_path.read_text())
    where = data["project"] if section == "project" else data["stages"]["training"]
    where[field_name] = bad
    p.config_path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        Project.open(tmp_path / "p")
    assert err.value.field == (f"project.{field_name}" if section == "project" else f"stages.training.{field_name}")


def test_unknown_target_suggests_close_catalog_ids(tmp_path):
    p = Project.create(tmp_path / "p")
    data = yaml.safe_load(p.config_path.read_text())
    data["project"]["target"] = "jetson-nan"
    p.config_path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        Project.open(tmp_path / "p")
    assert err.value.field == "project.target"
    assert "Did you mean 'jetson-nano'" in str(err.value) and "register_target" in str(err.value)


def test_create_and_set_refuse_an_unknown_target(tmp_path):
    with pytest.raises(ConfigError) as err:
        Project.create(tmp_path / "p", target="galaxy-s24")
    assert err.value.field == "project.target" and "galaxy-s23" in str(err.value)
    assert not (tmp_path / "p" / CONFIG_NAME).exists()
    p = Project.create(tmp_path / "q", target="jetson-nano")
    with pytest.raises(ConfigError, match="project.target"):
        p.set(target="jetson-nan")
    assert p.config.target == "jetson-nano" and Project.open(tmp_path / "q").config.target == "jetson-nano"


def _my_target(tid):
    data = T.get_target("odroid-n2").to_dict()
    data.update(id=tid, name="My board")
    return data


def test_custom_targets_still_validate(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("TANGO_TARGETS_PATH", raising=False)
    T.reload_catalog()
    try:
        T.register_target(_my_target("my-registered-board"))
        p = Project.create(tmp_path / "a", target="my-registered-board")
        assert Project.open(tmp_path / "a").config.target == "my-registered-board"

        folder = tmp_path / "mine"
        folder.mkdir()
        (folder / "my-file-board.yaml").write_text(yaml.safe_dump(_my_target("my-file-board")))
        monkeypatch.setenv("TANGO_TARGETS_PATH", str(folder))
        T.reload_catalog()
        Project.create(tmp_path / "b", target="my-file-board")
        assert Project.open(tmp_path / "b").target().name == "My board"

        # a process that no longer knows the target refuses it, naming the field
        monkeypatch.delenv("TANGO_TARGETS_PATH")
        T.reload_catalog()
        with pytest.raises(ConfigError) as err:
            Project.open(tmp_path / "b")
        assert err.value.field == "project.target" and "TANGO_TARGETS_PATH" in str(err.value)
        assert p.config.target == "my-registered-board"
    finally:
        T.reload_catalog()


def test_unquoted_yaml_timestamps_are_read_as_the_strings_tango_writes(tmp_path):
    p = Project.create(tmp_path / "p")
    text = p.config_path.read_text().replace(f"created: '{p.config.created}'", "created: 2026-11-25T18:40:00+00:00")
    assert "created: 2026-11-25T18:40:00+00:00" in text
    p.config_path.write_text(text)
    again = Project.open(tmp_path / "p")
    assert again.config.created == "2026-11-25T18:40:00+00:00"
    again.mark("data", "completed")
    assert yaml.safe_load(p.config_path.read_text())["project"]["created"] == "2026-11-25T18:40:00+00:00"


def test_a_project_made_from_a_relative_path_keeps_working_from_anywhere(tmp_path, monkeypatch):
    # paths the project records (run folders, best weights) must not be relative to where it was made
    monkeypatch.chdir(tmp_path)
    project = Project.create("p", name="p", task="classification", target="x86-cpu")
    assert project.root == tmp_path / "p" and project.path("runs") == tmp_path / "p" / "runs"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert Project.open(tmp_path / "p").path("data") == tmp_path / "p" / "data"
    assert Project.open("../p").root == tmp_path / "elsewhere" / ".." / "p"
    assert Project.open("../p").path("data").resolve() == tmp_path / "p" / "data"
