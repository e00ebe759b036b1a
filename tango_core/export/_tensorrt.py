"""TensorRT: the ONNX, the engine build scripts and the runner, for the target's NVIDIA GPU.

TensorRT cannot be installed without an NVIDIA GPU and an engine is tied to the GPU and the
TensorRT version that built it, so the engine is built on the target with ``build_engine.py``
(Python builder, INT8 entropy calibration with a reusable cache) or ``build_engine.sh``
(trtexec).  What can be checked here is checked: the ONNX runs in ONNX Runtime and is compared
with PyTorch, and the scripts are valid Python / shell.
"""

from __future__ import annotations

import shutil

import numpy as np

from .._io import atomic_write_text
from ._exporter import Artifacts, Context
from ._onnx import write_onnx
from ._table import builder
from ._templates import render


@builder("tensorrt")
def build_tensorrt(ctx: Context) -> Artifacts:
    folder = ctx.path
    stem = folder.name[: -len(ctx.spec.suffix)]
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    onnx_name, engine = f"{stem}.onnx", f"{stem}.engine"
    write_onnx(ctx, tmp / onnx_name)
    shape = ", ".join(str(v) for v in ctx.example.shape)
    dynamic = bool(ctx.options.get("dynamic"))
    n, c, h, w = ctx.example.shape
    shapes_line = (f"ARGS+=(--minShapes=images:1x{c}x{h}x{w} --optShapes=images:{n}x{c}x{h}x{w} "
                   f"--maxShapes=images:{max(8, n)}x{c}x{h}x{w})") if dynamic else ""
    values = dict(onnx=onnx_name, engine=engine, shape=shape, dynamic=dynamic, precision=ctx.precision,
                  workspace_gb=ctx.options.get("workspace_gb", 4.0),
                  workspace_mb=int(ctx.options.get("workspace_gb", 4.0) * 1024), shapes_line=shapes_line,
                  meta_name=f"{folder.name}.tango.json")
    files = {"model": folder / engine, "onnx": folder / onnx_name}
    for name, role in (("build_engine.py", "build_script"), ("build_engine.sh", "build_script_trtexec"),
                       ("run_engine.py", "runner")):
        atomic_write_text(tmp / name, render(name, **values))
        (tmp / name).chmod(0o755)
        files[role] = folder / name
    quant = None
    if ctx.precision == "int8":
        np.save(tmp / "calibration.npy", ctx.calibration().images.astype(np.float32))
        files["calibration"] = folder / "calibration.npy"
        quant = {"method": "TensorRT IInt8EntropyCalibrator2 on calibration.npy (cache: calibration.cache)"}
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
    return Artifacts(files=files, quantization=quant, verify=("onnx", "onnxruntime"),
                     runtime_config={"workspace_gb": ctx.options.get("workspace_gb", 4.0)},
                     notes=["TensorRT is not installed here (it needs an NVIDIA GPU): build the engine on the target "
                            f"with {folder.name}/build_engine.py; the ONNX it is built from was verified here"])
