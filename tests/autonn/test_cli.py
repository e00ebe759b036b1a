"""`tango tune` / `tango search` on the command line: the same functions as the API."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tango_core.cli import app

runner = CliRunner()


def test_join_needs_the_study_and_its_storage():
    result = runner.invoke(app, ["tune", "--join"])
    assert result.exit_code != 0 and "--join needs --storage and --study" in result.output
    result = runner.invoke(app, ["search", "--choose", "3"])
    assert result.exit_code != 0 and "--choose needs --study" in result.output


@pytest.mark.slow
def test_tune_then_join_the_same_study(tmp_path, digits, monkeypatch):
    import optuna

    monkeypatch.chdir(tmp_path)
    common = ["--imgsz", "16", "--batch-size", "16", "--threads", "1", "--storage", "s.db"]
    result = runner.invoke(app, ["tune", str(digits), "--model", "resnet-cifar20", "--trials", "2", "--epochs", "1",
                                 "--hyp", "fliplr=0", "--hyp", "nbs=16", "--hyp", "ema=false", "--no-retrain",
                                 "--pruner", "none", *common])
    assert result.exit_code == 0, result.output
    assert "best trial" in result.output and "hyp_best.yaml" in result.output
    assert (tmp_path / "runs" / "hpo" / "hpo-resnet-cifar20" / "hyp_best.yaml").is_file()
    # another worker (here: this process again) joins the stored study and runs what the budget allows
    result = runner.invoke(app, ["tune", "--join", "--storage", "s.db", "--study", "hpo-resnet-cifar20",
                                 "--trials", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "this worker ran 1 trial(s)" in result.output
    study = optuna.load_study(study_name="hpo-resnet-cifar20", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert study.trials[2].params["lr0"] != study.trials[0].params["lr0"]
    assert study.user_attrs["tango"]["hyp"] == {"fliplr": 0, "nbs": 16, "ema": False}
