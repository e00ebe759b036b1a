"""Round trip for every format that runs here: export -> load -> infer -> compare with PyTorch.

The comparison here is the test's own (load_exported + numpy), independent of the exporter's
built-in verification, which must also have passed and been written to the metadata.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tango_core.export import export, list_formats, load_exported
from tests.export.conftest import IMGSZ, torch_outputs

FAST = ["pytorch", "torchscript", "onnx"]
SLOW = [f for f in list_formats(runs_here=True) if f not in FAST]  # TF / OpenVINO / TVM start-up


def _roundtrip(model, fmt, tmp_path, **options):
    result = export(model, fmt, out=tmp_path, imgsz=IMGSZ, **options)
    meta = json.loads(result.metadata_path.read_text())
    assert meta["format"] == fmt and meta["schema"] == "tango.export"
    assert meta["verification"]["passed"] is True
    assert meta["input"]["shape"] == [1, 3, IMGSZ, IMGSZ]
    assert meta["outputs"][0]["shape"] == [1, 10] and meta["size_bytes"] > 0
    assert meta["preprocess"]["mean"] and meta["class_names"] == [str(i) for i in range(10)]
    x = np.random.default_rng(1).standard_normal((1, 3, IMGSZ, IMGSZ)).astype(np.float32)
    runner = load_exported(result.metadata_path, module=model)
    out = runner(x)[0]
    ref = torch_outputs(model, x)
    return result, meta, out, ref


@pytest.mark.parametrize("fmt", FAST)
def test_fast_formats_round_trip(fmt, random_model, tmp_path):
    _, meta, out, ref = _roundtrip(random_model, fmt, tmp_path)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    if fmt != "pytorch":  # a folded BatchNorm is part of every deployable graph
        assert any("BatchNorm folded" in n for n in meta["notes"])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", SLOW)
def test_other_formats_round_trip(fmt, random_model, tmp_path):
    _, meta, out, ref = _roundtrip(random_model, fmt, tmp_path)
    # OpenVINO's default precision is the CPU's fastest float one: bf16 where the CPU has it
    atol = 1e-2 * max(1.0, float(np.abs(ref).max())) if meta["precision"] == "bf16" else 1e-4
    np.testing.assert_allclose(out, ref, atol=atol)


@pytest.mark.slow
def test_openvino_fp32_is_pinned_to_f32(random_model, tmp_path):
    _, meta, out, ref = _roundtrip(random_model, "openvino", tmp_path, precision="fp32")
    assert meta["runtime_config"] == {"INFERENCE_PRECISION_HINT": "f32"}
    np.testing.assert_allclose(out, ref, atol=1e-4)


@pytest.mark.parametrize("fmt, precision", [("pytorch", "fp16"), ("torchscript", "fp16"), ("onnx", "fp16")])
def test_half_precision(fmt, precision, random_model, tmp_path):
    result, meta, out, ref = _roundtrip(random_model, fmt, tmp_path, precision=precision)
    assert meta["precision"] == "fp16" and meta["input"]["dtype"] == "float16"
    assert result.path.name.endswith(f"_fp16{get_suffix(fmt)}")
    np.testing.assert_allclose(out, ref, atol=2e-2)


def get_suffix(fmt):
    from tango_core.export import get_format

    return get_format(fmt).suffix


def test_dynamic_onnx_takes_other_batch_sizes(random_model, tmp_path):
    result = export(random_model, "onnx", out=tmp_path, imgsz=IMGSZ, dynamic=True)
    runner = load_exported(result.path)
    x = np.random.default_rng(2).standard_normal((3, 3, 24, 24)).astype(np.float32)
    np.testing.assert_allclose(runner(x)[0], torch_outputs(random_model, x), atol=1e-4)


def test_registered_model_from_a_weights_file(tmp_path):
    """A trainer's weights file carries the model name, classes and pre-processing into the export."""
    from tango_core.models import create_model
    from tango_core.models.weights import save_weights

    model = create_model("resnet-cifar20", num_classes=4).eval()
    weights = save_weights(model, tmp_path / "best.pt", classes=["a", "b", "c", "d"], task="classification",
                           imgsz=16, preprocess={"resize": "squash", "mean": [0.5] * 3, "std": [0.25] * 3})
    result = export(weights, "onnx", out=tmp_path / "exports")
    meta = result.metadata
    assert result.path.name == "best.onnx"
    assert meta["model"] == "resnet-cifar20" and meta["class_names"] == ["a", "b", "c", "d"]
    assert meta["input"]["shape"] == [1, 3, 16, 16] and meta["preprocess"]["std"] == [0.25] * 3
    assert meta["source"]["checkpoint"] == str(weights) and len(meta["source"]["sha256"]) == 64
    back = load_exported(tmp_path / "exports" / "best.onnx")
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(back(x)[0], torch_outputs(model, x), atol=1e-4)
    pt = export(weights, "pytorch", out=tmp_path / "exports")  # rebuilt from the registry, no module given
    np.testing.assert_allclose(load_exported(pt.path)(x)[0], torch_outputs(model, x), atol=1e-5)
