"""`tango data ...` drives the same functions as the notebooks."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tango_core.cli import app
from tango_core.data import Box, load_dataset
from tango_core.errors import UnknownNameError

pytestmark = pytest.mark.unit
runner = CliRunner()


def _ok(*args):
    result = runner.invoke(app, ["data", *map(str, args)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_cli_round_trip(tmp_path):
    out = _ok("sample", "shapes", tmp_path / "s", "--n", 6, "--size", 32, "--task", "segmentation")
    assert "images=6" in out
    _ok("convert", tmp_path / "s", tmp_path / "coco", "--to", "coco")
    _ok("convert", tmp_path / "coco", tmp_path / "yolo", "--to", "yolo", "--from", "coco")
    _ok("import", tmp_path / "yolo", tmp_path / "back")
    assert len(load_dataset(tmp_path / "back")) == 6
    assert "6 images (6 labelled)" in _ok("analyse", tmp_path / "back", "--strict")
    _ok("export", tmp_path / "back", tmp_path / "tango", "--format", "tango")
    assert "train 3, val 3" in _ok("split", tmp_path / "tango", "--val", 0.5, "--seed", 1)
    assert "yolo" in _ok("formats")


def test_cli_analyse_strict_and_apply(tmp_path):
    _ok("sample", "shapes", tmp_path / "s", "--n", 4, "--size", 32)
    ds = load_dataset(tmp_path / "s")
    ds.add_box(ds.records[0].id, Box(0, -4, 0, 10, 10))
    ds.save()
    result = runner.invoke(app, ["data", "analyse", str(tmp_path / "s"), "--strict"])
    assert result.exit_code == 1 and "outside (1)" in result.output and ds.records[0].file in result.output
    data = json.loads(_ok("analyse", tmp_path / "s", "--json"))
    assert data["kinds"] == {"outside": 1}
    out = _ok("analyse", tmp_path / "s", "--fix", "outside", "--strict")
    assert "outside: fix (1 problems, 1 fixed" in out
    assert load_dataset(tmp_path / "s").records[0].boxes[-1].xyxy == (0, 0, 10, 10)


def test_cli_errors_name_the_choice(tmp_path):
    _ok("sample", "shapes", tmp_path / "s", "--n", 2, "--size", 32)
    result = runner.invoke(app, ["data", "export", str(tmp_path / "s"), str(tmp_path / "x"), "-f", "cocoo"])
    assert isinstance(result.exception, UnknownNameError) and "Did you mean 'coco'" in str(result.exception)
