"""Formats for devices this machine is not: Edge TPU, and TVM cross-compiled for ARM."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tango_core.errors import TangoError
from tango_core.export import export, load_exported
from tests.export.conftest import IMGSZ, torch_outputs

pytestmark = pytest.mark.slow


def test_edgetpu_ships_a_full_integer_nhwc_tflite_and_its_compile_script(trained, digits, tmp_path):
    model, val = trained
    result = export(model, "edgetpu", out=tmp_path, imgsz=IMGSZ, calibration=digits, calibration_images=32)
    meta = result.metadata
    assert meta["input"]["layout"] == "NHWC" and meta["input"]["shape"] == [1, IMGSZ, IMGSZ, 3]
    assert meta["input"]["dtype"] == "int8" and meta["outputs"][0]["dtype"] == "int8"
    v = meta["verification"]
    assert v["passed"] and v["verified_file"] == meta["files"]["tflite"] and v["runtime"] == "litert"
    script = tmp_path / meta["files"]["compile_script"]
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "edgetpu_compiler" in script.read_text()
    # the INT8 TFLite it compiles runs here; the runner takes NCHW floats like PyTorch
    tflite = load_exported(result.metadata_path, file_role="tflite", runtime_name="litert")
    agree = np.mean([tflite(val.images[i:i + 1])[0].argmax() == torch_outputs(model, val.images[i:i + 1]).argmax()
                     for i in range(len(val))])
    assert agree >= 0.9
    with pytest.raises(TangoError) as err:  # the compiled model needs the compiler, then a Coral TPU
        load_exported(result.metadata_path)
    assert "compile_edgetpu.sh" in str(err.value) or "Edge TPU" in str(err.value)


def test_tvm_cross_compiles_for_arm_without_verifying_here(random_model, tmp_path):
    result = export(random_model, "tvm", out=tmp_path, imgsz=IMGSZ, arch="aarch64")
    assert result.path.name == "model_aarch64.tar" and result.path.is_file()
    meta = result.metadata
    assert meta["runtime_config"]["target"]["mtriple"] == "aarch64-linux-gnu"
    assert meta["verify_with"] is None and "skipped" in meta["verification"]
    assert "not verified" in repr(result)
    with pytest.raises(TangoError) as err:
        load_exported(result.metadata_path)
    assert "cross-compiled" in str(err.value)
