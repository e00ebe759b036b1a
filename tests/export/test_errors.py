"""Failures are errors that say what is wrong: unsupported ops, bad options, failed verification."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from tango_core.errors import ConfigError, MissingExtraError, UnknownNameError
from tango_core.export import ExportError, VerificationError, export, verify
from tests.export.conftest import IMGSZ


class Eigen(nn.Module):
    """Uses linalg.eigvals, which neither the ONNX exporter nor the TFLite lowering supports."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)[:, :, :4, :4]
        return torch.linalg.eigvals(y).real.flatten(1)


def test_unsupported_op_is_named_onnx(tmp_path):
    with pytest.raises(ExportError) as err:
        export(Eigen().eval(), "onnx", out=tmp_path, imgsz=IMGSZ, task="classification", class_names=["a"])
    assert err.value.op == "aten::linalg_eigvals"
    assert "aten::linalg_eigvals" in str(err.value)


@pytest.mark.slow
def test_unsupported_op_is_named_tflite(tmp_path):
    with pytest.raises(ExportError) as err:
        export(Eigen().eval(), "tflite", out=tmp_path, imgsz=IMGSZ, task="classification", class_names=["a"])
    assert err.value.op is not None and err.value.op.startswith("aten::linalg_eig")  # eigvals decomposes to eig


def test_bad_options_are_rejected_before_any_work(random_model, tmp_path):
    with pytest.raises(UnknownNameError) as err:
        export(random_model, "onnx", out=tmp_path, imgsz=IMGSZ, opsett=13)
    assert "opset" in str(err.value)
    with pytest.raises(UnknownNameError):
        export(random_model, "onnxx", out=tmp_path, imgsz=IMGSZ)
    with pytest.raises(ConfigError):
        export(random_model, "onnx", out=tmp_path, imgsz=IMGSZ, nms=True)  # not a detector
    with pytest.raises(ConfigError) as cerr:
        export(random_model, "onnx", out=tmp_path, imgsz=IMGSZ, name="../evil")
    assert cerr.value.field == "name"
    assert not list(tmp_path.iterdir())


def test_missing_input_size_asks_for_imgsz(random_model, tmp_path):
    with pytest.raises(ConfigError) as err:
        export(random_model, "onnx", out=tmp_path)
    assert err.value.field == "imgsz"


def test_a_tampered_export_fails_verification(random_model, tmp_path):
    import onnx
    from onnx import numpy_helper

    result = export(random_model, "onnx", out=tmp_path, imgsz=IMGSZ)
    graph = onnx.load(str(result.path))
    init = graph.graph.initializer[0]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    onnx.save(graph, str(result.path))
    with pytest.raises(VerificationError) as err:
        verify(result.path, random_model)
    assert "max abs difference" in str(err.value)
    assert err.value.verification["passed"] is False
    saved = result.metadata_path.read_text()
    assert '"passed": false' in saved  # the failure is recorded beside the file, not only raised


def test_tensorrt_without_a_gpu_gives_the_build_script_and_a_clear_message(random_model, tmp_path):
    import py_compile
    import subprocess
    import sys

    from tango_core.export import load_exported

    result = export(random_model, "tensorrt", out=tmp_path, imgsz=IMGSZ)
    folder = result.path
    files = result.metadata["files"]
    for role in ("onnx", "build_script", "build_script_trtexec", "runner"):
        assert (tmp_path / files[role]).is_file(), role
    assert result.metadata["verification"]["verified_file"] == files["onnx"]
    assert result.metadata["verification"]["passed"]
    for script in ("build_engine.py", "run_engine.py"):
        py_compile.compile(str(folder / script), doraise=True)
    assert subprocess.run(["bash", "-n", str(folder / "build_engine.sh")]).returncode == 0
    run = subprocess.run([sys.executable, str(folder / "build_engine.py")], capture_output=True, text=True)
    assert run.returncode != 0 and "NVIDIA GPU" in run.stderr
    with pytest.raises(MissingExtraError) as err:
        load_exported(result.metadata_path)
    assert "NVIDIA GPU" in str(err.value) and "build_engine.py" in str(err.value)


def test_tensorrt_int8_ships_its_calibration_images(trained, digits, tmp_path):
    model, _ = trained
    result = export(model, "tensorrt", out=tmp_path, imgsz=IMGSZ, precision="int8", calibration=digits,
                    calibration_images=16)
    images = np.load(tmp_path / result.metadata["files"]["calibration"])
    assert images.shape == (16, 3, IMGSZ, IMGSZ)
    assert "--precision" in (result.path / "build_engine.py").read_text()


def test_rknn_writes_calibration_pixels_and_the_conversion_script(trained, digits, tmp_path):
    from PIL import Image

    model, _ = trained
    result = export(model, "rknn", out=tmp_path, imgsz=IMGSZ, calibration=digits, calibration_images=8)
    folder = result.path
    lines = (folder / "dataset.txt").read_text().split()
    assert len(lines) == 8
    first = np.asarray(Image.open(folder / lines[0]))
    assert first.shape == (IMGSZ, IMGSZ, 3) and first.dtype == np.uint8
    script = (folder / "convert_rknn.py").read_text()
    assert "rk3568" in script and "mean_values" in script
    device = result.metadata["runtime_config"]["device_input"]
    assert device["dtype"] == "uint8" and device["layout"] == "NHWC"
    # the pixels written are the calibration images before normalisation
    mean, std = np.array(device["mean_values"]), np.array(device["std_values"])
    assert np.all((first - mean) / std > -3)
