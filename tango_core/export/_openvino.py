"""OpenVINO IR (xml + bin), converted from the export's ONNX.

INT8 comes from the same calibrated QDQ ONNX as the ``onnx`` format (OpenVINO reads QDQ as
FakeQuantize and runs it with its INT8 kernels), so no NNCF is needed.  On CPUs with AMX or
AVX512-BF16 OpenVINO runs f32 models in bf16 unless told otherwise: fp32 exports pin
``INFERENCE_PRECISION_HINT=f32`` in ``runtime_config`` so deploy code gets what was verified; the
default, ``bf16``, keeps OpenVINO's own choice (the fastest float precision of the CPU) and is
verified like fp16.
"""

from __future__ import annotations

import shutil

from ..errors import require
from ._exporter import Artifacts, Context
from ._onnx import quantize_qdq, write_onnx
from ._table import builder

#: precision -> (runtime_config deploy code passes to compile_model, notes).  The IR is fp32 except
#: for fp16 (compressed weights).  bf16, the default, leaves the execution precision to OpenVINO:
#: bf16 on CPUs that have it natively (AMX / AVX512-BF16; about 3x faster than f32 here), f32 on
#: the others, where forcing bf16 would emulate it slowly.  fp32 pins f32 for bit-level parity.
_RUNTIME_CONFIG = {
    "bf16": (None, ["executed in OpenVINO's default precision: bf16 on CPUs with native bf16 (AMX / "
                    "AVX512-BF16), f32 elsewhere; pass precision='fp32' to pin f32"]),
    "fp32": ({"INFERENCE_PRECISION_HINT": "f32"}, []),
    "fp16": (None, ["fp16 weights; executed in OpenVINO's default precision (bf16 on CPUs with native bf16, "
                    "else f32)"]),
    # the layers left in float (detector box decoding, shortcuts) run in the device default too:
    # about 2x faster than pinning f32 for YOLOv7-tiny here, within the INT8 accuracy bound
    "int8": (None, ["INT8 layers in INT8; the others in OpenVINO's default precision (bf16 on CPUs with "
                    "native bf16, else f32)"]),
}


@builder("openvino")
def build_openvino(ctx: Context) -> Artifacts:
    ov = require("openvino", "openvino", "exporting to OpenVINO IR")
    folder = ctx.path
    stem = folder.name[: -len(ctx.spec.suffix)]
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    onnx_path = write_onnx(ctx, tmp / f"{stem}.onnx")
    quant = None
    if ctx.precision == "int8":
        onnx_path = quantize_qdq(onnx_path, tmp / f"{stem}.int8.onnx", ctx.calibration().images,
                                 ctx.example.shape[0], keep_tail_float=ctx.source.task == "detection",
                                 # OpenVINO 2026.4 mis-propagates per-channel dequantisation through a
                                 # channel Pad after a Slice (ResNet-CIFAR option-A shortcuts): keep both float
                                 float_ops=("Pad", "Slice"))
        quant = {"method": "onnxruntime static QDQ (per-channel weights), read by OpenVINO as FakeQuantize"}
    # Core.read_model, not convert_model: the latter runs OpenVINO's telemetry, which forks to reach the web
    model = ov.Core().read_model(str(onnx_path))
    xml = tmp / f"{stem}.xml"
    ov.save_model(model, str(xml), compress_to_fp16=ctx.precision == "fp16")
    for p in tmp.glob("*.onnx"):
        p.unlink()
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
    config, notes = _RUNTIME_CONFIG[ctx.precision]
    return Artifacts(files={"model": folder / xml.name, "weights": folder / f"{stem}.bin"},
                     quantization=quant, runtime_config=config, notes=notes)
