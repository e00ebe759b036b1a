"""HPO: spaces as data, a study that writes the best hyp and retrains, pruning, resume after kill."""

from __future__ import annotations

import os
import signal

import pytest
from autonn_helpers import FAST_HYP, TRAIN, python, wait_for_line

from tango_core import events as ev
from tango_core.autonn._space import clip_into, load_space
from tango_core.errors import ConfigError, UnknownNameError

ORIGINAL = {"lr0": (1e-5, 0.1), "lrf": (0.01, 1.0), "momentum": (0.6, 0.98), "weight_decay": (0.0, 1e-3),
            "warmup_epochs": (0.0, 5.0), "warmup_momentum": (0.0, 0.95), "warmup_bias_lr": (0.0, 0.2)}


@pytest.mark.parametrize("task", ["classification", "detection", "segmentation"])
def test_builtin_spaces_start_from_the_original_ranges(task):
    space, source = load_space(None, task)
    assert source.endswith("hpo_spaces.yaml")
    for name, (low, high) in ORIGINAL.items():
        assert (space[name]["low"], space[name]["high"]) == (low, high)
    assert space["lr0"]["log"] is True
    if task == "detection":  # loss gains and augmentation that matter for detection
        assert {"box", "cls", "obj", "mosaic", "mixup", "hsv_s", "scale"} <= set(space)


def test_a_yolo_recipe_is_the_set_of_detection_hyper_parameters_and_reaches_loss_and_augmentation(shapes):
    from tango_core.autonn.hpo import _known_hyp
    from tango_core.engine._hyp import load_hyp
    from tango_core.engine.tasks import get_task

    # every name of the built-in space is one the model's training uses: nothing is skipped
    v7, _ = load_space(None, "detection", "yolov7-tiny")
    v9, _ = load_space(None, "detection", "yolov9-t")
    seg, _ = load_space(None, "segmentation", "yolov9-t-seg")
    assert set(v7) <= set(_known_hyp("yolov7-tiny")) and set(v9) <= set(_known_hyp("yolov9-t"))
    assert set(seg) <= set(_known_hyp("yolov9-t-seg"))
    assert "obj" in v7 and "dfl" not in v7 and "dfl" in v9 and "obj" not in v9  # anchor-based / anchor-free
    # each family's recipe lies inside its ranges: trial 0 runs the recipe itself, unclipped
    for space, model in ((v7, "yolov7-tiny"), (v7, "yolov7"), (v9, "yolov9-t"), (seg, "yolov9-t-seg")):
        defaults = load_hyp({}, model=model)
        assert clip_into(space, defaults) == {k: defaults[k] for k in space}, model
    with pytest.raises(UnknownNameError, match="'boxx'.*Did you mean 'box'"):
        load_hyp({"boxx": 1.0}, model="yolov7-tiny")
    # a value set is the value used, even one equal to the engine's default (momentum 0.9, lr0
    # 0.05, one warm-up epoch), and the recipe's names reach the loss and the augmentation
    given = {"box": 0.11, "obj": 2.0, "mosaic": 0.0, "hsv_s": 0.25, "scale": 0.3, "momentum": 0.9, "lr0": 0.05,
             "warmup_epochs": 1.0}
    task = get_task("detection")(shapes, imgsz=64, hyp=load_hyp(given, model="yolov7-tiny"))
    task.build_model("yolov7-tiny")
    reference = get_task("detection")(shapes, imgsz=64, hyp=load_hyp({}, model="yolov7-tiny"))
    reference.build_model("yolov7-tiny")
    assert {k: task.hyp[k] for k in given} == given
    assert reference.hyp["momentum"] == 0.937 and reference.hyp["lr0"] == 0.01  # the recipe's
    assert task._loss.gain_box == pytest.approx(reference._loss.gain_box * 0.11 / 0.05)
    assert task._loss.gain_obj == pytest.approx(reference._loss.gain_obj * 2.0 / 1.0)
    assert task._augment.hyp is task.recipe
    assert {k: task.recipe[k] for k in ("mosaic", "hsv_s", "scale")} == {"mosaic": 0.0, "hsv_s": 0.25, "scale": 0.3}
    v9task = get_task("detection")(shapes, imgsz=64, hyp=load_hyp({"dfl": 2.5, "box": 5.0}, model="yolov9-t"))
    v9task.build_model("yolov9-t")
    assert v9task._loss.hyp["dfl"] == 2.5 and v9task._loss.hyp["box"] == 5.0


@pytest.mark.parametrize("space, field, problem", [
    ({"lr0": {"low": 0.1, "high": 0.01}}, "lr0", "above high"),
    ({"lr0": {"low": 0.0, "high": 0.1, "log": True}}, "lr0.low", "log scale needs low > 0"),
    ({"lr0": {"low": "a", "high": 0.1}}, "lr0.low", "not a number"),
    ({"lr0": {"low": 0.0, "high": 0.1, "lgo": True}}, "lr0.lgo", "unknown key"),
    ({"lr0": {"choices": []}}, "lr0.choices", "non-empty list"),
    ({"lr0": 0.1}, "lr0", "is not a range"),
])
def test_a_bad_space_names_the_field(space, field, problem):
    with pytest.raises(ConfigError) as info:
        load_space(space, "classification")
    assert info.value.field == field and problem in info.value.problem


def test_space_file_per_task_and_clipping(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("classification:\n  lr0: {low: 0.001, high: 0.01, log: true}\n  batch: {choices: [16, 32]}\n")
    space, source = load_space(path, "classification")
    assert source == str(path) and space["batch"] == {"choices": [16, 32]}
    with pytest.raises(UnknownNameError, match="detection"):
        load_space(path, "detection")
    assert clip_into(space, {"lr0": 0.05, "batch": 64, "other": 1}) == {"lr0": 0.01}


def test_a_typo_in_your_own_space_is_an_error(digits, tmp_path):
    from tango_core.autonn import tune

    with pytest.raises(UnknownNameError, match="'lr'. Did you mean .*'lr0'"):
        tune(digits, "resnet-cifar20", space={"lr": {"low": 1e-4, "high": 0.1}}, storage=tmp_path / "s.db")
    with pytest.raises(UnknownNameError, match="'fliplrr'.*Did you mean 'fliplr'"):
        tune(digits, "resnet-cifar20", hyp={"fliplrr": 0}, storage=tmp_path / "s.db")
    assert not (tmp_path / "s.db").exists()  # nothing was started


def test_a_study_keeps_its_settings(tmp_path):
    from tango_core.autonn._storage import open_storage
    from tango_core.autonn._study import open_study

    storage = open_storage(tmp_path / "s.db")
    spec = {"kind": "hpo", "model": "resnet-cifar20", "task": "classification", "data": "/d", "space": {},
            "directions": ["maximize"], "sampler": "tpe", "pruner": "median", "epochs": 2}
    study, stored = open_study(storage, "s", spec)
    assert stored == spec and study.user_attrs["tango"] == spec
    with pytest.raises(ConfigError, match="the stored study has 'resnet-cifar20'.*resnet-cifar32"):
        open_study(storage, "s", dict(spec, model="resnet-cifar32"))
    with pytest.raises(ConfigError, match="no study 'other'"):
        open_study(storage, "other", None)


@pytest.mark.slow
def test_tune_writes_the_best_hyp_to_the_project_and_retrains(tmp_path, digits):
    import optuna

    from tango_core.autonn import tune
    from tango_core.engine._hyp import load_hyp
    from tango_core.project import Project

    project = Project.create(tmp_path / "p", dataset=str(digits), model="resnet-cifar20", hyp=dict(FAST_HYP))
    rec = ev.Recorder(project.events)
    result = tune(project, trials=3, epochs=2, retrain_epochs=1, **TRAIN)

    reopened = Project.open(project.root)
    assert reopened.config.hyp == result.best_hyp and result.best_hyp["nbs"] == 16
    assert reopened.stages["hpo"].status == "completed"
    assert reopened.stages["hpo"].info["best_trial"] == result.best_trial
    assert reopened.stages["training"].status == "completed"  # the final model, retrained with the best hyp
    assert result.retrained.best.is_file() and result.retrained.epochs_run == 1
    assert result.hyp_path.is_file()
    # trial 0 ran the engine's defaults; the best is at least as good
    defaults = load_hyp(FAST_HYP)
    first = result.trials[0]
    assert first["user_attrs"]["defaults"] is True
    assert first["params"]["lr0"] == defaults["lr0"] and first["params"]["momentum"] == defaults["momentum"]
    assert result.best_value >= result.default_value
    names = rec.names()
    assert names.count(ev.TRIAL_START) == 3 and names.count(ev.TRIAL_COMPLETE) == 3
    assert names.count(ev.TRIAL_REPORT) == 6 and names.count(ev.STUDY_END) == 1
    assert names.index(ev.STUDY_END) < names.index(ev.TRAIN_START)  # the retraining comes after the study
    # the same call again (a notebook run twice) resumes the finished study: nothing more to run
    again = tune(Project.open(project.root), trials=3, epochs=2, retrain=False, **TRAIN)
    assert again.best_trial == result.best_trial and len(again.trials) == 3
    # a plain Optuna storage: optuna-dashboard reads it unchanged
    study = optuna.load_study(study_name=result.study, storage=result.storage)
    assert len(study.trials) == 3 and study.best_trial.number == result.best_trial
    assert study.best_trial.intermediate_values == {0: pytest.approx(study.best_trial.intermediate_values[0]),
                                                    1: pytest.approx(study.best_trial.intermediate_values[1])}


@pytest.mark.slow
def test_pruning_stops_a_bad_and_a_diverging_trial(tmp_path, digits):
    import optuna

    from tango_core.autonn import tune

    bus = ev.EventBus()
    rec = ev.Recorder(bus)
    space = {"lr0": {"low": 1e-5, "high": 100.0, "log": True}}
    result = tune(digits, "resnet-cifar20", trials=5, epochs=3, space=space, hyp=FAST_HYP, events=bus,
                  storage=tmp_path / "s.db", retrain=False,
                  enqueue=[{"lr0": 0.1}, {"lr0": 0.02}, {"lr0": 1e-5}, {"lr0": 50.0}], **TRAIN)
    states = [t["state"] for t in result.trials]
    assert states == ["complete", "complete", "complete", "pruned", "pruned"]
    pruned = {e["trial"]: e.payload for e in rec.of(ev.TRIAL_PRUNED)}
    # the learning rate that learns nothing is stopped by the median pruner before the last epoch
    assert pruned[3]["reason"] == "pruner" and pruned[3]["step"] == 1
    # the one whose loss explodes is stopped in its first epoch, without waiting for validation
    assert pruned[4]["reason"] == "diverged" and pruned[4]["step"] == 0
    assert not [e for e in rec.of(ev.TRIAL_REPORT) if e["trial"] == 4]
    study = optuna.load_study(study_name=result.study, storage=result.storage)
    assert study.trials[4].user_attrs["diverged"]["epoch"] == 0
    assert result.best_trial in (0, 1, 2)


@pytest.mark.slow
def test_detection_tune_searches_the_whole_space_and_each_trial_runs_the_values_it_records(tmp_path, shapes):
    from tango_core._io import read_yaml
    from tango_core.autonn import tune
    from tango_core.engine._hyp import load_hyp

    result = tune(shapes, "yolov7-tiny", trials=2, epochs=1, imgsz=64, batch_size=8, threads=1, pruner="none",
                  storage=tmp_path / "s.db", retrain=False)
    space, _ = load_space(None, "detection", "yolov7-tiny")
    assert result.skipped == [] and len(result.trials) == 2
    for trial in result.trials:
        assert trial["state"] == "complete" and set(trial["params"]) == set(space)
        # what the trainer ran with (its run folder's hyp.yaml, written once the task set up the recipe)
        used = read_yaml(f"{trial['user_attrs']['run_dir']}/hyp.yaml")
        assert {k: used[k] for k in space} == trial["params"], trial["trial"]
    # trial 0 is the model's defaults: the engine's, with yolov7-tiny's recipe where it has one
    defaults = load_hyp({}, model="yolov7-tiny")
    assert result.trials[0]["user_attrs"]["defaults"] is True
    assert result.trials[0]["params"] == {k: defaults[k] for k in space}
    assert result.trials[0]["params"]["momentum"] == 0.937 and result.trials[0]["params"]["obj"] == 1.0
    assert result.trials[1]["params"] != result.trials[0]["params"]
    assert result.best_hyp == {**result.best_params}  # nothing fixed: the best trial's values


RESUME_SCRIPT = """
from tango_core import events as ev
from tango_core.autonn import tune
bus = ev.EventBus()
bus.subscribe(ev.TRIAL_REPORT, lambda e: print("REPORT", e["trial"], e["step"], flush=True))
bus.subscribe(ev.TRIAL_COMPLETE, lambda e: print("DONE", e["trial"], flush=True))
tune({digits!r}, "resnet-cifar20", trials=3, epochs=3, hyp={hyp!r}, storage="s.db", retrain=False, events=bus,
     pruner="none",
     imgsz=16, batch_size=16, threads=1)
print("FINISHED", flush=True)
"""


@pytest.mark.slow
def test_a_killed_study_resumes_without_repeating_finished_trials(tmp_path, digits, monkeypatch):
    import optuna

    from tango_core.autonn import tune

    code = RESUME_SCRIPT.format(digits=str(digits), hyp=FAST_HYP)
    proc = python(code, tmp_path)
    seen: list[str] = []
    try:
        wait_for_line(proc, "REPORT 1 1", seen)  # trial 1 is in its second epoch
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert "FINISHED" not in "".join(seen)
    first = optuna.load_study(study_name="hpo-resnet-cifar20", storage=f"sqlite:///{tmp_path / 's.db'}")
    before = {t.number: t for t in first.trials}
    assert [before[n].state.name for n in (0, 1)] == ["COMPLETE", "RUNNING"]

    monkeypatch.chdir(tmp_path)  # the same call as the killed process, in the same folder
    bus = ev.EventBus()
    rec = ev.Recorder(bus)
    result = tune(str(digits), "resnet-cifar20", trials=3, epochs=3, hyp=FAST_HYP, storage="s.db", retrain=False,
                  pruner="none", events=bus, imgsz=16, batch_size=16, threads=1)
    trials = {t["trial"]: t for t in result.trials}
    # the finished trial was not run again: this call ran only the lost trial's retry and the last one
    assert [e["trial"] for e in rec.of(ev.TRIAL_START)] == [2, 3]
    assert trials[1]["state"] == "fail"
    retry = trials[2]
    assert retry["user_attrs"]["retry_of"] == [1] and retry["params"] == trials[1]["params"]
    assert retry["state"] == "complete" and trials[3]["state"] == "complete"
    # the retry continued the lost training from its last checkpoint (epoch 1 or 2), in its run folder
    assert retry["user_attrs"]["run_dir"].endswith("trial_1")
    reports = [e["step"] for e in rec.of(ev.TRIAL_REPORT) if e["trial"] == 2]
    assert reports and reports[0] >= 1 and reports[-1] == 2
    assert before[0].values == trials[0]["values"]
    assert sum(t["state"] == "complete" for t in result.trials) == 3
