"""Rockchip NPU (RKNN): the ONNX, calibration images and the rknn-toolkit2 conversion script.

rknn-toolkit2 runs only on an x86-64 host with Rockchip's wheels, so the conversion is a script
to run there; the ONNX it converts is verified here.  Normalisation moves into the RKNN model
(``mean_values`` / ``std_values`` in pixel units), so the device feeds uint8 NHWC images.
"""

from __future__ import annotations

import shutil

import numpy as np

from .._io import atomic_write_text
from ._exporter import Artifacts, Context
from ._onnx import write_onnx
from ._table import builder
from ._templates import render


def to_uint8(images: np.ndarray, spec: dict) -> np.ndarray:
    """Undo the normalisation: pre-processed NCHW floats -> the NHWC uint8 pixels they came from."""
    c = images.shape[1]
    mean = np.asarray(spec["mean"][:c], np.float32).reshape(1, c, 1, 1)
    std = np.asarray(spec["std"][:c], np.float32).reshape(1, c, 1, 1)
    pixels = (images * std + mean) / np.float32(spec["scale"])
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


@builder("rknn")
def build_rknn(ctx: Context) -> Artifacts:
    from PIL import Image

    folder = ctx.path
    stem = folder.name[: -len(ctx.spec.suffix)]
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "calibration").mkdir(parents=True)
    onnx_name, rknn_name = f"{stem}.onnx", f"{stem}.rknn"
    write_onnx(ctx, tmp / onnx_name, dynamic=False, dynamo=False, nms=False)
    spec = ctx.source.preprocess
    c = ctx.source.in_channels
    scale = float(spec["scale"])
    mean_values = [round(m / scale, 4) for m in spec["mean"][:c]]
    std_values = [round(s / scale, 4) for s in spec["std"][:c]]
    files = {"model": folder / rknn_name, "onnx": folder / onnx_name}
    if ctx.precision == "int8":
        lines = []
        for i, pixels in enumerate(to_uint8(ctx.calibration().images, spec)):
            name = f"calibration/{i:04d}.png"
            Image.fromarray(pixels[:, :, 0] if c == 1 else pixels).save(tmp / name)
            lines.append(name)
        atomic_write_text(tmp / "dataset.txt", "\n".join(lines) + "\n")
        files["calibration"] = folder / "dataset.txt"
    n, _, h, w = ctx.example.shape
    script = render("convert_rknn.py", onnx=onnx_name, rknn=rknn_name, precision=ctx.precision,
                    platform=ctx.options.get("rknn_platform", "rk3568"), mean_values=mean_values,
                    std_values=std_values, batch=n, channels=c, height=h, width=w)
    atomic_write_text(tmp / "convert_rknn.py", script)
    (tmp / "convert_rknn.py").chmod(0o755)
    files["convert_script"] = folder / "convert_rknn.py"
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
    device_input = {"dtype": "uint8", "layout": "NHWC", "shape": [n, h, w, c],
                    "normalisation": "inside the model (mean_values / std_values)",
                    "mean_values": mean_values, "std_values": std_values}
    quant = {"method": "rknn-toolkit2 w8a8 on dataset.txt"} if ctx.precision == "int8" else None
    return Artifacts(files=files, quantization=quant, verify=("onnx", "onnxruntime"),
                     runtime_config={"platform": ctx.options.get("rknn_platform", "rk3568"),
                                     "device_input": device_input},
                     notes=["rknn-toolkit2 does not run here: run convert_rknn.py on an x86-64 Linux host; the "
                            "ONNX it converts was verified here"])
