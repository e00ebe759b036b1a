"""INT8 exports calibrated on the dataset's train split keep accuracy on its val split.

The bound is the issue's (at most 1 point lost), never below two images of the val split
(``min_images_allowed`` in the format table): on 120 images one flip is noise.
"""

from __future__ import annotations

import numpy as np
import pytest

from tango_core.export import export, load_exported
from tango_core.export._verify import accuracy_allowance
from tests.export.conftest import IMGSZ, torch_outputs

pytestmark = pytest.mark.slow


def _accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float((scores.argmax(1) == labels).mean())


@pytest.mark.parametrize("fmt", ["onnx", "tflite", "openvino"])
def test_int8_accuracy_within_bound(fmt, trained, digits, tmp_path):
    model, val = trained
    result = export(model, fmt, out=tmp_path, imgsz=IMGSZ, precision="int8", calibration=digits,
                    calibration_images=64)
    meta = result.metadata
    assert meta["quantization"]["calibration_images"] == 64
    assert "train" in meta["quantization"]["calibration_source"]
    assert meta["verification"]["passed"] and meta["verification"]["images"] == len(val)
    assert "'val'" in meta["verification"]["data"]
    runner = load_exported(result.metadata_path)
    scores = np.concatenate([runner(val.images[i:i + 1])[0] for i in range(len(val))])
    reference = _accuracy(torch_outputs(model, val.images), val.labels)
    drop = reference - _accuracy(scores, val.labels)
    assert drop <= accuracy_allowance(0.01, len(val)) + 1e-9, f"{fmt} INT8 lost {drop:.3f} accuracy"
    if fmt == "tflite":  # full integer: the file's input is int8 with its own scale
        assert meta["input"]["dtype"] == "int8" and meta["input"]["quantization"]["scale"] > 0


def test_dynamic_range_tflite(trained, tmp_path):
    model, val = trained
    result = export(model, "tflite", out=tmp_path, imgsz=IMGSZ, precision="dynamic_int8", data=val)
    assert result.metadata["input"]["dtype"] == "float32"
    metrics = result.metadata["verification"]["metrics"]
    assert metrics["reference_accuracy"] - metrics["accuracy"] <= accuracy_allowance(0.01, len(val)) + 1e-9


def test_int8_without_calibration_images_is_refused(random_model, tmp_path):
    from tango_core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        export(random_model, "onnx", out=tmp_path, imgsz=IMGSZ, precision="int8")
    assert err.value.field == "calibration"
