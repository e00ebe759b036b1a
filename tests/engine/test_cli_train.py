"""The CLI's train / predict commands run the same engine as the notebooks."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tango_core.cli import app
from tango_core.errors import ConfigError


@pytest.mark.slow
def test_cli_train_then_predict(image_dataset, tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", str(image_dataset.root), "--model", "resnet-cifar20", "--epochs", "1",
                              "--batch-size", "4", "--imgsz", "16", "--amp", "off", "--set", "fliplr=0",
                              "--set", "optimizer=AdamW", "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    assert f"best: {run / 'weights' / 'best.pt'}" in res.output and "top1" in res.output
    assert "optimizer: AdamW" in (run / "hyp.yaml").read_text() and "lr0: 0.001" in (run / "hyp.yaml").read_text()
    res = runner.invoke(app, ["predict", str(run / "weights" / "best.pt"), str(image_dataset.root / "images"),
                              "--json", "--topk", "2"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.output.strip().splitlines()]
    assert len(lines) == len(image_dataset) and all(len(x["top"]) == 2 for x in lines)
    assert {x["name"] for x in lines} <= set(image_dataset.classes)


def test_cli_train_reports_bad_options(image_dataset, tmp_path):
    res = CliRunner().invoke(app, ["train", str(image_dataset.root), "--set", "lr0", "--run-dir", str(tmp_path)])
    assert isinstance(res.exception, ConfigError) and "NAME=VALUE" in str(res.exception)
