"""OpenVINO IR (``.xml`` + ``.bin``) on the CPU (or ``TANGO_OV_DEVICE``: GPU, NPU, AUTO)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from . import require


class Backend:
    name = "openvino"
    thread_safe = False  # one infer request, reused

    def __init__(self, path: Path, meta: dict[str, Any], threads: int | None = None) -> None:
        ov = require("openvino", "pip install -r requirements.txt (openvino)")
        path = Path(path)
        if path.is_dir():
            xmls = sorted(path.glob("*.xml"))
            if not xmls:
                raise FileNotFoundError(f"{path}: no OpenVINO .xml model in this folder")
            path = xmls[0]
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config.update({"INFERENCE_NUM_THREADS": int(threads), "NUM_STREAMS": 1})
        config.update(meta.get("runtime_config") or {})
        device = os.environ.get("TANGO_OV_DEVICE", "CPU")
        self.compiled = ov.Core().compile_model(str(path), device, config)
        self.request = self.compiled.create_infer_request()
        self.ports = list(self.compiled.outputs)
        element = self.compiled.inputs[0].get_element_type().get_type_name()
        self.dtype = np.dtype({"f16": np.float16, "u8": np.uint8, "i8": np.int8}.get(element, np.float32))
        inp = meta.get("input") or {}
        self.layout = inp.get("layout", "NCHW")
        self.quantization = inp.get("quantization") if self.dtype.kind in "iu" else None
        self.output_quantization = [o.get("quantization") for o in meta.get("outputs") or []]
        self.raw_pixels = False

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer([x])
        return [np.array(result[p]) for p in self.ports]
