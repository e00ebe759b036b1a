"""Apache TVM (Relax virtual machine): a ``.so`` built for this CPU, or a cross-compiled ``.tar`` of
object files that TVM links on the device with the system C++ compiler (once; the ``.so`` is kept)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from . import require


def load(path: Path):
    tvm = require("tvm", "pip install -r requirements.txt (apache-tvm), or build the TVM runtime (README)")
    path = Path(path)
    if path.suffix == ".tar":
        linked = Path(str(path) + ".so")  # what tvm.runtime.load_module writes when it links a .tar
        if linked.is_file() and linked.stat().st_mtime >= path.stat().st_mtime:
            path = linked
    return tvm, tvm.runtime.load_module(str(path))


class Backend:
    name = "tvm"
    thread_safe = False  # the Relax VM keeps per-call state

    def __init__(self, path: Path, meta: dict[str, Any], threads: int | None = None) -> None:
        tvm, lib = load(path)
        from tvm import relax

        if threads:
            # TVM pins the calling thread to one core when it configures its pool; every thread
            # started later (the server's) would inherit that mask, so binding stays off
            os.environ.setdefault("TVM_BIND_THREADS", "0")
            mask = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
            tvm.get_global_func("runtime.config_threadpool")(1, int(threads))
            if mask is not None and os.sched_getaffinity(0) != mask:
                os.sched_setaffinity(0, mask)
        self._tvm = tvm
        self.vm = relax.VirtualMachine(lib, tvm.cpu())
        self.main = self.vm["main"]
        inp = meta.get("input") or {}
        self.dtype = np.dtype(inp.get("dtype", "float32"))
        self.layout = inp.get("layout", "NCHW")
        self.quantization = inp.get("quantization")
        self.output_quantization = [o.get("quantization") for o in meta.get("outputs") or []]
        self.raw_pixels = False

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        out = self.main(self._tvm.runtime.tensor(x))
        items = out if isinstance(out, (list, tuple)) or type(out).__name__ == "Array" else [out]
        return [o.numpy() for o in items]
