"""Exports from a project (format from its target, data from its dataset) and the CLI commands."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tango_core.export import export
from tango_core.export._verify import accuracy_allowance
from tests.export.conftest import IMGSZ


def test_project_export_uses_target_runtime_and_dataset(trained, digits, project_factory):
    from tango_core import events as ev
    from tango_core.events import Recorder
    from tango_core.targets import get_target, register_target

    model, val = trained
    # a target without a `select` rule exports its first runtime (x86-cpu measures: test_select.py)
    register_target({**get_target("x86-cpu").to_dict(), "id": "x86-first-runtime", "select": {}})
    project = project_factory("p", target="x86-first-runtime", classes=list(digits.classes), dataset=str(digits.root))
    seen = Recorder(project.events)
    result = export(model, project=project, imgsz=IMGSZ)
    assert result.format == project.target().runtimes[0]
    assert result.path.parent == project.path("exports")
    meta = result.metadata
    assert meta["target"] == "x86-first-runtime"
    assert meta["verification"]["images"] == len(val) and "'val'" in meta["verification"]["data"]
    metrics = meta["verification"]["metrics"]
    assert metrics["reference_accuracy"] - metrics["accuracy"] <= accuracy_allowance(0.01, len(val)) + 1e-9
    assert [e.name for e in seen.events if e.name != ev.STAGE_STATUS] == [ev.EXPORT_START, ev.EXPORT_END,
                                                                         ev.VERIFY_END]
    reopened = type(project).open(project.root)
    assert reopened.stages["export"].status == "completed"
    assert reopened.stages["export"].info["exports"][result.format].endswith(".tango.json")


def test_cli_export_and_formats(trained, digits, tmp_path):
    from tango_core.cli import app
    from tango_core.models.weights import save_weights

    model, _ = trained
    model.tango_name = None
    runner = CliRunner()
    listing = runner.invoke(app, ["export", "--list-formats"])
    assert listing.exit_code == 0 and "saved_model" in listing.output and "tensorrt" in listing.output
    shown = runner.invoke(app, ["export", "--help-format", "onnx"])
    assert shown.exit_code == 0 and "opset" in shown.output

    from tango_core.models import create_model

    reg = create_model("resnet-cifar20", num_classes=10).eval()
    weights = save_weights(reg, tmp_path / "best.pt", classes=list(digits.classes), imgsz=IMGSZ)
    res = runner.invoke(app, ["export", str(weights), "-f", "onnx", "-f", "torchscript", "--out", str(tmp_path / "x"),
                              "-o", "opset=13", "--data", str(digits.root)])
    assert res.exit_code == 0, res.output
    assert "verified with onnxruntime on 120 images" in res.output
    meta = json.loads((tmp_path / "x" / "best.onnx.tango.json").read_text())
    assert meta["options"]["opset"] == 13 and meta["verification"]["passed"]
    assert (tmp_path / "x" / "best.torchscript").is_file()

    bad = runner.invoke(app, ["export", str(weights), "-f", "onnx", "--out", str(tmp_path / "y"), "-o", "opsett=13"])
    assert bad.exit_code != 0 and "opset" in str(bad.exception or bad.output)


@pytest.mark.slow
def test_cli_benchmark_prints_one_table(digits, tmp_path):
    from tango_core.cli import app
    from tango_core.models import create_model
    from tango_core.models.weights import save_weights

    weights = save_weights(create_model("resnet-cifar20", num_classes=10).eval(), tmp_path / "m.pt",
                           classes=list(digits.classes), imgsz=IMGSZ)
    from tango_core.export._benchmark import default_row

    res = CliRunner().invoke(app, ["benchmark", str(weights), "--formats", "onnx,onnx:int8,openvino,torchscript",
                                   "--data", str(digits.root), "--calibration", str(digits.root), "--runs", "5",
                                   "--threads", "1", "--out", str(tmp_path / "b"), "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines[1:]] == ["torch eager", "onnx", "onnx int8", "openvino bf16",
                                                                   "torchscript"]
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert f"x86-cpu exports {default_row('x86-cpu', rows)} by default" in res.output
    assert all(r.get("inference_ms", 0) > 0 and not r.get("error") for r in rows)
    assert rows[0]["metric"] is not None and rows[2]["precision"] == "int8"
