"""deploy() on a project: the target chooses the package and the export (made when missing), the
deploy stage and the DEPLOY_END event record it, fields are remembered, and a failed deploy keeps
the previous package.  The `tango deploy` command is the same function."""

from __future__ import annotations

import json

import pytest
from deploy_helpers import CLASSES
from typer.testing import CliRunner

from tango_core import events as ev
from tango_core.deploy import check_package, deploy
from tango_core.errors import ConfigError, DataError

K8S = dict(registry="registry.example.com/team", namespace="vision", nfs_server="10.1.1.1", nfs_path="/srv/models")


@pytest.fixture
def project(project_factory, classifier, sample_images):
    from tango_core.export import export
    from tango_core.models.weights import save_weights

    p = project_factory("shop", classes=list(CLASSES), target="x86-cpu")
    save_weights(classifier, p.path("runs", "best.pt"), num_classes=3, classes=CLASSES, imgsz=[32, 32],
                 task="classification")
    p.set(model="resnet-cifar20")
    p.mark("training", "completed", best_model="runs/best.pt")  # what a finished training records
    export(format="onnx", project=p, data=sample_images)
    return p


def test_project_deploy_uses_its_target_records_the_stage_and_remembers_fields(project):
    recorder = ev.Recorder(project.events, ev.DEPLOY_END)
    result = deploy(project)
    assert result.target == "x86-cpu" and result.kind == "server" and result.runtime == "onnxruntime"
    assert result.path == project.path("deploy", "x86-cpu") and check_package(result.path).ok
    stage = project.stages["deploy"]
    assert stage.status == "completed" and stage.info["path"] == "deploy/x86-cpu" and stage.info["kind"] == "server"
    (event,) = recorder.events
    assert event["target"] == "x86-cpu" and event["path"] == str(result.path) and event["files"] > 10

    # k8s wants TorchScript, which the project has not exported yet: deploy() exports it
    result = deploy(project, target="k8s", measure=False, **K8S)
    assert result.runtime == "torchscript"
    assert "torchscript" in project.stages["export"].info["exports"]
    assert project.stages["deploy"].info["fields"]["nfs_server"] == "10.1.1.1"
    # the fields are remembered: the next deploy needs none of them
    again = deploy(project, target="k8s", measure=False, tag="2")
    assert again.record["image"] == "registry.example.com/team/shop:2"
    reopened = type(project).open(project.root)
    assert reopened.stages["deploy"].status == "completed"


def test_a_failed_deploy_keeps_the_previous_package_and_marks_the_stage(project):
    first = deploy(project, measure=False)
    before = (first.path / "tango-package.json").read_text()
    with pytest.raises(ConfigError, match="registry"):
        deploy(project, target="aws-ecs", out=first.path, region="eu-west-1", cluster="c")
    assert project.stages["deploy"].status == "failed"
    assert "registry" in project.stages["deploy"].last_error
    assert (first.path / "tango-package.json").read_text() == before and check_package(first.path).ok
    leftovers = [p.name for p in first.path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_deploy_refuses_to_overwrite_a_folder_that_is_not_a_package(exports, tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "todo.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a tango package"):
        deploy(exports("onnx"), target="x86-cpu", out=precious, measure=False)
    assert (precious / "todo.txt").read_text() == "keep me"


def test_an_export_without_a_target_needs_one(exports, tmp_path):
    with pytest.raises(ConfigError, match="target='x86-cpu'"):
        deploy(exports("onnx"), out=tmp_path / "p")


def test_cli_deploy_and_check(exports, tmp_path):
    from tango_core.cli import app

    runner = CliRunner()
    out = tmp_path / "cli-pkg"
    meta = str(exports("onnx").metadata_path)
    result = runner.invoke(app, ["deploy", meta, "--target", "x86-cpu", "--out", str(out), "--no-measure",
                                 "--check", "-f", "tag=7", "-f", "threads=2"])
    assert result.exit_code == 0, result.output
    assert "server package for x86-cpu (onnxruntime)" in result.output and "checks:" in result.output
    record = json.loads((out / "tango-package.json").read_text())
    assert record["image"].endswith(":7") and "TANGO_THREADS=2" in (out / "Dockerfile").read_text()
    result = runner.invoke(app, ["deploy-check", str(out), "--json"])
    assert result.exit_code == 0 and all(item["ok"] for item in json.loads(result.output))
    (out / "app" / "server.py").write_text("def broken(:\n")
    result = runner.invoke(app, ["deploy-check", str(out)])
    assert result.exit_code == 1 and "FAIL python" in result.output
    bad = runner.invoke(app, ["deploy", meta, "--target", "x86-cpu", "-f", "registry"])
    assert bad.exit_code != 0 and "KEY=VALUE" in bad.output
