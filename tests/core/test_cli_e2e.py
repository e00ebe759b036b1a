"""End to end on the command line: new project -> import the sample data -> analyse -> recommend."""

from typer.testing import CliRunner

from tango_core.cli import app
from tango_core.project import Project


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_new_import_analyse_recommend(tmp_path):
    proj = tmp_path / "proj"
    run("new", proj, "--task", "detection", "--target", "jetson-nano")
    run("data", "sample", "shapes", tmp_path / "raw", "--n", 12, "--size", 32, "--task", "detection")
    run("data", "export", tmp_path / "raw", tmp_path / "yolo", "--format", "yolo")
    out = run("data", "import", tmp_path / "yolo", "--project", proj)
    assert "dataset of" in out
    out = run("data", "analyse", proj / "data")
    assert "12 images" in out
    out = run("recommend", "--project", proj, "--save")
    assert "recommended: yolov7-x" in out and "4 GB" in out
    p = Project.open(proj)
    assert p.config.model == "yolov7-x"
    assert p.stages["data"].status == "completed" and p.stages["model_selection"].status == "completed"
    assert p.stages["labels"].status == "completed"  # every imported image has labels
    assert p.resume_point() == "training"
    out = run("status", proj)
    assert "model_selection  completed" in out
