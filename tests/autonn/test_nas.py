"""NAS: spaces that rebuild their base exactly, the latency predictor, a search whose Pareto
front holds real, exported models with measured latencies, and a chosen architecture that is an
ordinary registered model in a new process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from autonn_helpers import FAST_HYP, TRAIN, python

from tango_core import events as ev
from tango_core.autonn._latency import LatencyPredictor
from tango_core.autonn._nas_spaces import NasSpace, get_space, list_spaces, register_space, space_for
from tango_core.errors import ConfigError


@pytest.mark.parametrize("base", ["resnet-cifar20", "resnet-cifar56", "resnet18", "resnet50", "yolov7-tiny"])
def test_a_space_rebuilds_its_base_model_exactly(base):
    from tango_core.models import create_model, model_info

    space = space_for(base)
    arch = space.arch(base, space.base_params(base))
    model = space.build(arch, model_info(base)["num_classes"])
    reference = create_model(base)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    # every choice of the space is a valid value of its own distribution
    for name, value in space.base_params(base).items():
        d = space.params(base)[name]
        assert value in d["choices"] if "choices" in d else d["low"] <= value <= d["high"]


def test_spaces_are_a_registry():
    assert {"resnet-cifar", "resnet", "yolov7"} <= set(list_spaces())
    assert space_for("resnet-cifar110").name == "resnet-cifar" and space_for("resnet34").name == "resnet"
    with pytest.raises(ConfigError, match="no NAS space searches around 'yolov9-c'"):
        space_for("yolov9-c")


def test_resnet_choices_change_depth_and_width():
    space = get_space("resnet-cifar")
    small = space.build(space.arch("resnet-cifar20", {"depth1": 1, "depth2": 2, "depth3": 1, "width": 0.5}), 10, 1)
    assert [len(s) for s in small.stages] == [1, 2, 1] and small.stem[0].out_channels == 8
    assert small(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    with pytest.raises(ConfigError, match="depths"):
        space.build({"design": "cifar", "depths": [1, 0, 1], "width": 1.0}, 10)


def test_yolov7_elan_depth_keeps_the_concatenation_pattern():
    from tango_core.autonn._yolo_space import _cat, elan_depths

    assert _cat(4, 4, [-1, -3, -5, -6]) == [-1, -3, -5, -6]  # the base backbone block, unchanged
    assert _cat(3, 4, [-1, -3, -5, -6]) == [-1, -3, -4, -5]  # c3, c1, then the two 1x1 branches
    assert _cat(1, 2, [-1, -2, -3, -4]) == [-1, -2, -3]  # tiny / neck blocks keep every tensor
    space = get_space("yolov7")
    n = len(space.base_params("yolov7-tiny")) - 1
    arch = space.arch("yolov7-tiny", {**{f"elan{i + 1}": 1 for i in range(n)}, "width": 0.5})
    model = space.build(arch, num_classes=3)
    assert elan_depths(model.cfg) == [1] * n
    assert sum(p.numel() for p in model.parameters()) < 6_228_762 / 4


@pytest.mark.slow
def test_a_yolov7_candidate_exports_and_is_timed(tmp_path):
    from tango_core.autonn._latency import measure_latency
    from tango_core.export import read_metadata

    space = get_space("yolov7")
    n = len(space.base_params("yolov7-tiny")) - 1
    model = space.build(space.arch("yolov7-tiny", {**{f"elan{i + 1}": 2 for i in range(n)}, "width": 0.5}), 3)
    lat = measure_latency(model, "onnx", imgsz=64, out=tmp_path, name="y", task="detection",
                          class_names=["a", "b", "c"], repeats=5)
    meta, _ = read_metadata(lat.path)
    assert meta["task"] == "detection" and meta["verification"]["passed"]
    assert lat.median_ms > 0 and len(lat.times_ms) == 5


def test_latency_predictor_recovers_a_linear_cost_and_reports_held_out_error():
    rng = np.random.default_rng(0)
    rows = [{"flops": f, "params": p, "activations": a, "layers": n}
            for f, p, a, n in zip(rng.uniform(1e6, 1e8, 12), rng.uniform(1e4, 1e6, 12), rng.uniform(1e4, 1e5, 12),
                                  rng.integers(5, 50, 12), strict=True)]
    true = [0.05 + 2e-8 * r["flops"] + 1e-6 * r["activations"] for r in rows]
    pred = LatencyPredictor()
    error = pred.fit_and_evaluate(rows, true, held_out=0.25)
    assert error["held_out"] == 3 and error["fitted_on"] == 9 and error["mape"] < 1e-6
    assert pred.predict(rows[0]) == pytest.approx(true[0], rel=1e-6)
    again = LatencyPredictor.from_dict(pred.to_dict())
    assert again.predict(rows[5]) == pytest.approx(true[5], rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        LatencyPredictor().fit(rows[:1], true[:1])


@pytest.mark.slow  # the FLOP counter's first use imports torch._dynamo (seconds)
def test_saved_architectures_register_and_a_bad_file_is_skipped(tmp_path, monkeypatch):
    from tango_core.autonn._archs import save_arch
    from tango_core.models import create_model, list_models, model_info

    cfg = {"name": "unit-nas-a", "space": "resnet-cifar", "base": "resnet-cifar20", "task": "classification",
           "arch": {"design": "cifar", "block": "basic", "depths": [1, 1, 1], "width": 0.5}, "num_classes": 3,
           "input_size": 16}
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "broken.yaml").write_text("name: broken\n")
    monkeypatch.setenv("TANGO_MODELS_PATH", str(tmp_path / "models"))
    with pytest.warns(UserWarning, match="broken.yaml.*'space': missing"):
        list_models()
    save_arch(tmp_path / "models", cfg)
    info = model_info("unit-nas-a")
    assert info["searched"] and info["family"] == "ResNet-CIFAR (NAS)" and info["base"] == "resnet-cifar20"
    assert sum(p.numel() for p in create_model("unit-nas-a").parameters()) == info["params"]
    assert "unit-nas-a" in list_models(task="classification")
    with pytest.raises(ConfigError, match="another architecture is saved as 'unit-nas-a'"):
        save_arch(tmp_path / "models", dict(cfg, arch=dict(cfg["arch"], width=1.0)))
    with pytest.raises(ConfigError, match="built-in model"):
        save_arch(tmp_path / "other", dict(cfg, name="resnet-cifar20"))
    assert not (tmp_path / "other" / "resnet-cifar20.yaml").exists()


@pytest.mark.slow
def test_search_returns_a_pareto_front_of_exported_models_and_a_choice_registers(tmp_path, digits):
    import optuna

    from tango_core.autonn import search
    from tango_core.export import load_exported, read_metadata
    from tango_core.models import list_models
    from tango_core.project import Project

    project = Project.create(tmp_path / "p", dataset=str(digits), model="resnet-cifar20", hyp=dict(FAST_HYP))
    rec = ev.Recorder(project.events)
    result = search(project, trials=4, epochs=1, **TRAIN)

    from tango_core.targets import get_target

    runtime = get_target("x86-cpu").runtimes[0]  # the target's preferred runtime, which runs here
    assert result.runtime == runtime and result.target == "x86-cpu" and result.objectives == ["top1", "latency_ms"]
    assert result.base_candidate is not None and result.base_candidate.trial == 0
    assert result.base_candidate.arch["depths"] == [3, 3, 3]
    assert len(result.candidates) == 4 and 1 <= len(result.front) <= 4
    for c in result.front:  # real, exported models, timed in their runtime
        assert c.latency_source == "measured" and c.latency_ms > 0
        meta, _ = read_metadata(c.export)
        assert meta["verification"]["passed"] and meta["format"] == runtime
        out = load_exported(c.export)(np.zeros((1, 3, 16, 16), np.float32))
        assert out[0].shape == (1, 10)
    # no candidate dominates a front point
    for c in result.front:
        assert not any(o.accuracy >= c.accuracy and o.latency_ms <= c.latency_ms and
                       (o.accuracy > c.accuracy or o.latency_ms < c.latency_ms) for o in result.candidates)
    assert not [n for n in list_models() if "candidate" in n]  # candidates are not left registered
    assert rec.names().count(ev.TRIAL_COMPLETE) == 4 and ev.STUDY_END in rec.names()
    # measured latencies: the error a predictor fitted on 3 of the 4 candidates makes on the 4th
    err = result.predictor_error
    assert err is not None and err["held_out"] == 1 and err["fitted_on"] == 3
    assert isinstance(err["mape"], float) and np.isfinite(err["mape"]) and err["mape"] >= 0
    assert err["max_ape"] == pytest.approx(err["mape"])  # one held-out candidate: its error is both
    assert project.stages["nas"].info["predictor_error"] == err
    assert len(optuna.load_study(study_name=result.study, storage=result.storage).directions) == 2

    choice = result.front[0]
    name = result.choose(choice, project=project)
    assert name == f"resnet-cifar20-nas{choice.trial}" and project.config.model == name
    assert (project.root / "models" / f"{name}.yaml").is_file()
    assert project.stages["nas"].status == "completed"
    # a new process: opening the project registers the architecture; it trains and exports
    code = f"""
from tango_core.project import Project
from tango_core.models import model_info, create_model
from tango_core.engine import train
from tango_core.export import export
p = Project.open({str(project.root)!r})
info = model_info({name!r})
assert info["searched"] and info["arch"] == {choice.arch!r}, info
assert sum(x.numel() for x in create_model({name!r}).parameters()) == info["params"] == {choice.params}
r = train(p, epochs=1, imgsz=16, batch_size=16, threads=1)
e = export(r.best, "onnx", out={str(tmp_path / "final")!r})
print("OK", p.config.model, e.verification["passed"])
from tango_core.deploy import check_package, deploy
d = deploy(p, measure=False)  # the project's target (x86-cpu): its export is made from the training
report = check_package(d.path)
assert report.ok, report
print("DEPLOYED", d.target, d.kind, read_metadata(d.path / "model" / d.record["metadata"])[0]["model"])
"""
    code = code.replace("from tango_core.export import export", "from tango_core.export import export, read_metadata")
    proc = python(code, tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f"OK {name} True" in out and f"DEPLOYED x86-cpu server {name}" in out


@pytest.mark.slow
def test_search_on_detection_data_returns_timed_exports_and_the_choice_trains_and_deploys(tmp_path, shapes):
    import optuna

    from tango_core._io import read_yaml
    from tango_core.autonn import search
    from tango_core.deploy import check_package, deploy
    from tango_core.engine import train
    from tango_core.export import read_metadata
    from tango_core.models import model_info
    from tango_core.project import Project

    project = Project.create(tmp_path / "p", task="detection", dataset=str(shapes), model="yolov7-tiny",
                             target="x86-cpu")
    space = get_space("yolov7")
    n = len(space.base_params("yolov7-tiny")) - 1
    small = {**{f"elan{i + 1}": 1 for i in range(n)}, "width": 0.5}
    result = search(project, trials=2, epochs=1, imgsz=64, batch_size=8, threads=1, enqueue=[small])

    assert result.objectives == ["mAP50", "latency_ms"] and result.space == "yolov7"
    assert [c.trial for c in result.candidates] == [0, 1] and result.base_candidate.trial == 0
    assert result.candidates[1].arch["depths"] == [1] * n and result.candidates[1].arch["width"] == 0.5
    assert result.candidates[1].params < result.base_candidate.params / 4
    trials = {t.number: t for t in optuna.load_study(study_name=result.study, storage=result.storage).trials}
    for c in result.candidates:  # real detectors, exported to the target's runtime, verified and timed
        assert c.latency_source == "measured" and c.latency_ms > 0
        meta, _ = read_metadata(c.export)
        assert meta["task"] == "detection" and meta["format"] == result.runtime and meta["verification"]["passed"]
        attrs = trials[c.trial].user_attrs
        assert c.accuracy == attrs["metrics"]["mAP50"]  # accuracy: mAP@0.5 of the short training
        # a candidate trains with its base model's recipe (yolov7-tiny's objectness gain, not yolov7's 0.7)
        assert read_yaml(f"{attrs['run_dir']}/hyp.yaml")["obj"] == 1.0
    assert result.front and {c.trial for c in result.front} <= {0, 1}

    name = result.choose(result.front[0], project=project)
    assert model_info(name)["searched"] and model_info(name)["task"] == "detection"
    trained = train(project, epochs=1, imgsz=64, batch_size=8, threads=1)
    assert trained.best.is_file() and project.config.model == name
    package = deploy(project, measure=False)  # like any registered model: export for the target, package
    report = check_package(package.path)
    assert report.ok, report
    assert package.target == "x86-cpu" and package.record["task"] == "detection"
    assert read_metadata(package.path / "model" / package.record["metadata"])[0]["model"] == name


class _FFTSpace(NasSpace):
    """A space with one choice the ONNX exporter cannot take (an FFT)."""

    name = "test-fft"
    bases = ()

    def params(self, base):
        return {"mode": {"choices": ["plain", "fft"]}}

    def base_params(self, base):
        return {"mode": "plain"}

    def arch(self, base, params):
        return {"mode": params["mode"]}

    def build(self, arch, num_classes, in_channels=3):
        return _TinyNet(arch["mode"], num_classes, in_channels)


class _TinyNet(torch.nn.Module):
    def __init__(self, mode, num_classes, in_channels):
        super().__init__()
        self.mode = mode
        self.conv = torch.nn.Conv2d(in_channels, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, num_classes)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        if self.mode == "fft":
            y = torch.fft.rfft2(y).abs()
        return self.fc(y.mean((2, 3)))


@pytest.mark.slow
def test_a_candidate_the_runtime_cannot_take_fails_alone(tmp_path, digits):
    import optuna

    from tango_core.autonn import search

    if "test-fft" not in list_spaces():
        register_space(_FFTSpace())
    result = search(digits, "resnet-cifar20", space="test-fft", trials=2, epochs=1, enqueue=[{"mode": "fft"}],
                    storage=tmp_path / "s.db", hyp=FAST_HYP, **TRAIN)
    study = optuna.load_study(study_name=result.study, storage=result.storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]
    assert [c.trial for c in result.candidates] == [0] and result.front[0].is_base
    assert result.study == "nas-resnet-cifar20-test-fft-x86-cpu"
    with pytest.raises(ConfigError, match="enqueue.depth"):
        search(digits, "resnet-cifar20", space="test-fft", trials=2, epochs=1, enqueue=[{"depth": 1}],
               storage=tmp_path / "s.db", hyp=FAST_HYP, **TRAIN)


@pytest.mark.slow
def test_a_target_whose_runtime_does_not_run_here_gets_predicted_latencies(tmp_path, digits):
    from tango_core.autonn import search

    # jetson-nano deploys with TensorRT, which does not run here: the latency predictor, fitted on
    # candidates measured here (TorchScript stands in), predicts every candidate's latency
    result = search(digits, "resnet-cifar20", trials=2, epochs=1, target="jetson-nano", calibration=4,
                    storage=tmp_path / "s.db", hyp=FAST_HYP, **TRAIN)
    assert result.runtime == "tensorrt" and result.spec["proxy_runtime"] == "torchscript"
    assert {c.latency_source for c in result.candidates} == {"predicted"}
    assert all(c.export is None and c.latency_ms > 0 for c in result.candidates)
    err = result.predictor_error
    assert err["held_out"] == 1 and err["fitted_on"] == 3 and np.isfinite(err["mape"])
    # measurements taken on the device instead: a table of {params, latency_ms}
    table = [{"params": {"depth1": d, "depth2": d, "depth3": d, "width": w}, "latency_ms": 0.4 * d * w * w + 0.1}
             for d in (1, 2, 3, 4) for w in (0.5, 1.0)]
    device = search(digits, "resnet-cifar20", trials=2, epochs=1, target="jetson-nano", latency_table=table,
                    storage=tmp_path / "s.db", study="from-device", hyp=FAST_HYP, **TRAIN)
    assert device.predictor_error["held_out"] == 2 and device.predictor_error["fitted_on"] == 6
    base = device.base_candidate
    assert base.latency_source == "predicted" and base.latency_ms == pytest.approx(0.4 * 3 + 0.1, rel=0.5)
    with pytest.raises(ConfigError, match="latency_ms"):
        search(digits, "resnet-cifar20", trials=1, target="jetson-nano", storage=tmp_path / "s.db", study="bad",
               latency_table=[{"params": {}}, {"params": {}}], **TRAIN)
    with pytest.raises(ConfigError, match=r"\[0\]\.params.*lacks the choices \['width'\]"):
        search(digits, "resnet-cifar20", trials=1, target="jetson-nano", storage=tmp_path / "s.db", study="bad2",
               latency_table=[{"params": {"depth1": 1, "depth2": 1, "depth3": 1}, "latency_ms": 1.0}] * 2, **TRAIN)
