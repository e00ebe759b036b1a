"""Run an exported file in its own runtime: numpy in (the PyTorch model's input), numpy out.

Every runner takes the float32 NCHW input the PyTorch model takes and converts it to what the
file expects (float16, int8 with the file's scale / zero point, NHWC); outputs come back as
float32, dequantised.  ``threads`` is set in each runtime so timings compare like with like.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._io import read_json
from ..errors import DataError, require
from ..registry import Registry

_RUNTIMES: Registry[Callable[..., Runner]] = Registry("export runtime")


class Runner:
    """``runner(x) -> list of float32 arrays``; ``meta`` is the export's metadata."""

    def __init__(self, meta: dict[str, Any], fn: Callable[[np.ndarray], list[np.ndarray]]) -> None:
        self.meta, self._fn = meta, fn
        inp = meta.get("input") or {}
        self.dtype = np.dtype(inp.get("dtype", "float32"))
        self.quant = inp.get("quantization")
        self.layout = inp.get("layout", "NCHW")

    def to_file_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        if self.quant:
            info = np.iinfo(self.dtype)
            x = np.clip(np.round(x / self.quant["scale"] + self.quant["zero_point"]), info.min, info.max)
        return np.ascontiguousarray(x.astype(self.dtype))

    def run_raw(self, x: np.ndarray) -> list[np.ndarray]:
        """Run an input already in the file's dtype and layout (what the benchmark times)."""
        return self._fn(x)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        outs = self._fn(self.to_file_input(x))
        specs = self.meta.get("outputs") or []
        result = []
        for i, out in enumerate(outs):
            out = np.asarray(out)
            q = specs[i].get("quantization") if i < len(specs) else None
            if q:
                out = (out.astype(np.float32) - q["zero_point"]) * q["scale"]
            result.append(out.astype(np.float32, copy=False))
        return result


def import_tensorflow(purpose: str):
    """TensorFlow, imported after torch._dynamo: importing triton (which torch._dynamo and
    litert-torch load) once TensorFlow is loaded crashes the process with a segfault."""
    import torch._dynamo  # noqa: F401

    return require("tensorflow", "tensorflow", purpose)


def runtime(name: str):
    return _RUNTIMES.register(name)


def read_metadata(path: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """The metadata of an export, given the metadata file or the exported file / folder."""
    path = Path(path)
    meta_path = path if path.name.endswith(".tango.json") else path.with_name(path.name + ".tango.json")
    if not meta_path.is_file():
        raise DataError(meta_path, "export metadata not found", "export with tango_core.export.export() first")
    meta = read_json(meta_path)
    if meta.get("schema") != "tango.export":
        raise DataError(meta_path, "is not a tango export metadata file (schema != 'tango.export')")
    return meta, meta_path.parent


def load_exported(path: str | os.PathLike, threads: int = 1, file_role: str = "model", runtime_name: str | None = None,
                  module: Any = None) -> Runner:
    """A runner for an export; ``file_role`` / ``runtime_name`` pick another file of it (e.g. the
    ONNX a TensorRT export is built from, run with ``onnxruntime``)."""
    meta, folder = read_metadata(path)
    files = meta.get("files") or {}
    if file_role not in files:
        raise DataError(path, f"the export has no {file_role!r} file", f"files: {sorted(files)}")
    name = runtime_name or meta["runtime"]
    loader = _RUNTIMES.get(name)
    return loader(folder / files[file_role], meta, threads=threads, module=module)


# --- the runtimes -----------------------------------------------------------------------------------
@runtime("pytorch")
def _pytorch(path: Path, meta: dict[str, Any], threads: int, module: Any = None) -> Runner:
    import copy

    import torch

    from ..models.weights import load_weights

    if module is not None:
        model = copy.deepcopy(module)
    elif meta.get("model"):
        from ..models import create_model

        model = create_model(meta["model"], num_classes=meta.get("num_classes"),
                             in_channels=meta["input"]["shape"][1])
    else:
        raise DataError(path, "was saved from a module that is not in the model registry",
                        "build the module with your code and pass it as module=")
    load_weights(model, path)
    half = meta.get("precision") == "fp16"
    model = (model.half() if half else model.float()).eval()
    torch.set_num_threads(threads)

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            return _flat_torch(model(torch.from_numpy(x)))

    return Runner(meta, run)


def _flat_torch(out: Any) -> list[np.ndarray]:
    import torch

    if isinstance(out, torch.Tensor):
        return [out.float().numpy()]
    if isinstance(out, dict):
        out = list(out.values())
    flat: list[np.ndarray] = []
    for item in out:
        flat.extend(_flat_torch(item))
    return flat


@runtime("torchscript")
def _torchscript(path: Path, meta: dict[str, Any], threads: int, module: Any = None) -> Runner:
    import torch

    torch.set_num_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still TorchScript's loader
        model = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            return _flat_torch(model(torch.from_numpy(x)))

    return Runner(meta, run)


@runtime("onnxruntime")
def _onnxruntime(path: Path, meta: dict[str, Any], threads: int, module: Any = None) -> Runner:
    ort = require("onnxruntime", "export", "running ONNX models")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    runner = Runner(meta, lambda x: session.run(None, {name: x}))
    onnx_type = session.get_inputs()[0].type  # the ONNX a TensorRT / RKNN export is built from is fp32
    runner.dtype = np.dtype(np.float16 if "float16" in onnx_type else np.float32)
    runner.quant, runner.layout = None, "NCHW"
    return runner


@runtime("tensorflow")
def _tensorflow(path: Path, meta: dict[str, Any], threads: int, module: Any = None) -> Runner:
    tf = import_tensorflow("running SavedModels")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TF fixes its thread pools at first use; later calls cannot change them
        pass
    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures["serving_default"]
    arg = list(fn.structured_input_signature[1])[0]
    keys = sorted(fn.structured_outputs, key=lambda k: int(k.rsplit("_", 1)[-1]) if k[-1].isdigit() else 0)

    def run(x: np.ndarray) -> list[np.ndarray]:
        out = fn(**{arg: tf.constant(x)})
        return [out[k].numpy() for k in keys]

    return Runner(meta, run)


@runtime("litert")
def _litert(path: Path, meta: dict[str, Any], threads: int, module: Any = None) -> Runner:
    lite = require("ai_edge_litert.interpreter", "tflite", "running TFLite models")
    interpreter = lite.Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    outs = interpreter.get_output_details()
    order = sorted(range(len(outs)), key=lambda i: outs[i]["name"])

    def run(x: np.ndarray) -> list[np.ndarray]:
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return [interpreter.get_tensor(outs[i]["index"]) for i in order]

    return Runner(meta, run)


@runtime("openvino")
def _openvino(path: Path, meta: dict[str, Any], threads: int, module: Any = None) -> Runner:
    ov = require("openvino", "openvino", "running OpenVINO IR")
    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    config.update(meta.get("runtime_config") or {})
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    count = len(compiled.outputs)

    def run(x: np.ndarray) -> list[np.ndarray]:
        request.infer({0: x}, share_inputs=True)  # no copy of the input; outputs copied out below
        return [request.get_output_tensor(i).data.copy() for i in range(count)]

    return Runner(meta, run)


def tvm_threadpool(tvm: Any, threads: int) -> None:
    """Give TVM's thread pool ``threads`` threads without pinning this thread to a core.

    With thread binding on (its default) TVM pins the thread that launches its pool to the first
    core, and every thread started from it afterwards (ONNX Runtime's, OpenVINO's, LiteRT's
    pools) inherits that one-core mask: after one TVM run every other runtime in the process ran
    2-3x slower on two cores.  Binding stays off unless ``TVM_BIND_THREADS`` is set; the mask is
    restored in case a pool was bound before."""
    os.environ.setdefault("TVM_BIND_THREADS", "0")
    mask = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    tvm.get_global_func("runtime.config_threadpool")(1, threads)
    if mask is not None and os.sched_getaffinity(0) != mask:
        os.sched_setaffinity(0, mask)


@runtime("tvm")
def _tvm(path: Path, meta: dict[str, Any], threads: int, module: Any = None) -> Runner:
    tvm = require("tvm", "tvm", "running TVM modules")
    from tvm import relax

    if path.suffix != ".so":
        raise DataError(path, "is a cross-compiled TVM module (object files to link on the device)",
                        "it runs on its target; export with arch=native to run it here")
    tvm_threadpool(tvm, threads)
    lib = tvm.runtime.load_module(str(path))
    vm = relax.VirtualMachine(lib, tvm.cpu())
    main = vm["main"]

    def run(x: np.ndarray) -> list[np.ndarray]:
        out = main(tvm.runtime.tensor(x))
        items = out if isinstance(out, (list, tuple)) or type(out).__name__ == "Array" else [out]
        return [o.numpy() for o in items]

    return Runner(meta, run)


# --- device-only runtimes: a clear message here, the real runner on the device ------------------------
@runtime("tensorrt")
def _tensorrt(path: Path, meta: dict[str, Any], threads: int, module: Any = None) -> Runner:
    require("tensorrt", "tensorrt", "running TensorRT engines (TensorRT needs an NVIDIA GPU; build the engine "
                                    f"on the target with {path.parent / 'build_engine.py'})")
    import importlib.util

    spec = importlib.util.spec_from_file_location("tango_run_engine", path.parent / "run_engine.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not path.is_file():
        raise DataError(path, "the engine has not been built", f"run {path.parent / 'build_engine.py'} first")
    return Runner(meta, mod.EngineRunner(str(path)))


@runtime("edgetpu")
def _edgetpu(path: Path, meta: dict[str, Any], threads: int, module: Any = None) -> Runner:
    from ..errors import TangoError

    lite = require("ai_edge_litert.interpreter", "tflite", "running Edge TPU models")
    if not path.is_file():
        raise DataError(path, "the Edge TPU model has not been compiled",
                        f"run {path.parent / 'compile_edgetpu.sh'} on an x86-64 Linux host")
    try:
        delegate = lite.load_delegate("libedgetpu.so.1")
    except (ValueError, OSError) as exc:
        raise TangoError(f"{path}: the Edge TPU runtime (libedgetpu) is not available here: {exc}. "
                         "Run it on the device with a Coral TPU") from exc
    interpreter = lite.Interpreter(model_path=str(path), experimental_delegates=[delegate])
    interpreter.allocate_tensors()
    inp, outs = interpreter.get_input_details()[0], interpreter.get_output_details()

    def run(x: np.ndarray) -> list[np.ndarray]:
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return [interpreter.get_tensor(o["index"]) for o in sorted(outs, key=lambda d: d["name"])]

    return Runner(meta, run)


@runtime("rknn")
def _rknn(path: Path, meta: dict[str, Any], threads: int, module: Any = None) -> Runner:
    from ..errors import TangoError

    try:
        from rknnlite.api import RKNNLite  # type: ignore[import-not-found]
    except ImportError as exc:
        raise TangoError(f"{path}: RKNN models run on a Rockchip NPU with rknn-toolkit-lite2 (RKNNLite), which is "
                         "not installed here; convert with convert_rknn.py on an x86-64 host, run on the board") \
            from exc
    if not path.is_file():
        raise DataError(path, "the RKNN model has not been converted", f"run {path.parent / 'convert_rknn.py'}")
    rknn = RKNNLite()
    if rknn.load_rknn(str(path)) != 0 or rknn.init_runtime() != 0:
        raise TangoError(f"{path}: RKNNLite could not load the model on this board")
    runner = Runner(meta, lambda x: rknn.inference(inputs=[x]))
    device = (meta.get("runtime_config") or {}).get("device_input") or {}
    runner.dtype, runner.layout, runner.quant = np.dtype("uint8"), "NHWC", None
    mean = np.asarray(device.get("mean_values", [0.0]), np.float32)
    std = np.asarray(device.get("std_values", [1.0]), np.float32)
    # the device model takes raw pixels: undo the float normalisation the caller applied
    runner.to_file_input = lambda x: np.clip(np.round(np.asarray(x, np.float32).transpose(0, 2, 3, 1) * std + mean),
                                             0, 255).astype(np.uint8)
    return runner
