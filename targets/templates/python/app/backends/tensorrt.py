"""TensorRT: a serialized engine (``.engine``) built on the target from the ONNX, run on its GPU.

An engine is tied to the GPU and TensorRT version that built it, so it is built where it runs:
``./build_engine.sh`` (trtexec) or ``python -m app.backends.tensorrt build model.onnx model.engine``,
or automatically on the first start when ``TANGO_TRT_BUILD=1`` (the container default).  GPU
memory is handled with cuda-python, or PyCUDA where that is what the device has (JetPack 4).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import RuntimeMissing, require


def build(onnx_path: Path, engine_path: Path, precision: str = "fp16", workspace_gb: float = 4.0) -> Path:
    """Parse the ONNX and write a serialized engine for this GPU."""
    trt = require("tensorrt", "TensorRT comes with JetPack / the TensorRT container image")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0 if int(trt.__version__.split(".")[0]) >= 10 else \
        1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT cannot parse the ONNX: {errors}")
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    else:  # TensorRT < 8.4
        config.max_workspace_size = int(workspace_gb * (1 << 30))
    if precision in ("fp16", "int8") and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":  # the ONNX carries Q/DQ nodes (explicit quantization): no calibrator needed
        config.set_flag(trt.BuilderFlag.INT8)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT could not build an engine (see the log above)")
    engine_path = Path(engine_path)
    tmp = engine_path.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, engine_path)
    return engine_path


def build_on_start(engine: Path, meta: dict[str, Any]) -> None:
    """The export's build_engine.py when it is there (it calibrates INT8), else :func:`build`."""
    import subprocess

    script = engine.parent / "build_engine.py"
    if script.is_file():
        subprocess.run([sys.executable, str(script)], check=True)
        return
    precision = meta.get("precision", "fp16")
    build(engine.with_suffix(".onnx"), engine, "fp16" if precision == "int8" else precision)


class _CudaPython:
    """Device buffers and a stream with cuda-python (``cuda.bindings.runtime`` or the older ``cuda.cudart``)."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        self.rt = cudart
        self.stream = self._check(cudart.cudaStreamCreate())

    def _check(self, result: tuple) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return rest[0] if rest else None

    def alloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(nbytes, 1))))

    def to_device(self, dst: int, host: np.ndarray) -> None:
        self._check(self.rt.cudaMemcpyAsync(dst, host.ctypes.data, host.nbytes,
                                            self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))

    def to_host(self, host: np.ndarray, src: int) -> None:
        self._check(self.rt.cudaMemcpyAsync(host.ctypes.data, src, host.nbytes,
                                            self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))

    def sync(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.stream))

    @property
    def handle(self) -> int:
        return int(self.stream)


class _PyCuda:
    """The same with PyCUDA; its context is pushed around each call (server threads differ)."""

    def __init__(self) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        self.context = cuda.Device(int(os.environ.get("TANGO_CUDA_DEVICE", 0))).make_context()
        self.stream = cuda.Stream()
        self.context.pop()
        self._buffers: list[Any] = []

    def alloc(self, nbytes: int) -> int:
        self.context.push()
        try:
            buf = self.cuda.mem_alloc(max(nbytes, 1))
        finally:
            self.context.pop()
        self._buffers.append(buf)
        return int(buf)

    def to_device(self, dst: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(dst, host, self.stream)

    def to_host(self, host: np.ndarray, src: int) -> None:
        self.cuda.memcpy_dtoh_async(host, src, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()

    @property
    def handle(self) -> int:
        return self.stream.handle


def _cuda():
    for make in (_CudaPython, _PyCuda):
        try:
            return make()
        except ImportError:
            continue
    raise RuntimeMissing("neither cuda-python nor pycuda is installed: pip install cuda-python "
                         "(or on JetPack 4: pip install pycuda)")


class Backend:
    name = "tensorrt"
    thread_safe = False  # one execution context and one set of buffers

    def __init__(self, path: Path, meta: dict[str, Any], threads: int | None = None) -> None:
        trt = require("tensorrt", "TensorRT comes with JetPack / the TensorRT container image")
        path = Path(path)
        if not path.is_file():
            if os.environ.get("TANGO_TRT_BUILD") != "1":
                raise FileNotFoundError(f"{path} does not exist: build the engine on this device with "
                                        "./build_engine.sh (or set TANGO_TRT_BUILD=1 to build it on start)")
            build_on_start(path, meta)
        self.trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{path}: not an engine for this TensorRT / GPU: rebuild it with ./build_engine.sh")
        self.context = self.engine.create_execution_context()
        self.gpu = _cuda()
        self.v3 = hasattr(self.context, "execute_async_v3")  # TensorRT >= 8.5: named I/O tensors
        self.names, self.inputs, self.outputs = self._io()
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, int] = {}
        for name in self.names:
            shape, dtype = self._shape(name), self._dtype(name)
            self.host[name] = np.empty(shape, dtype)
            self.device[name] = self.gpu.alloc(self.host[name].nbytes)
            if self.v3:
                self.context.set_tensor_address(name, self.device[name])
        first = self.inputs[0]
        self.dtype = self.host[first].dtype
        self.layout = "NCHW"
        self.quantization = None
        self.output_quantization = [None] * len(self.outputs)
        self.raw_pixels = False

    def _io(self) -> tuple[list[str], list[str], list[str]]:
        if self.v3:
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            inputs = [n for n in names if self.engine.get_tensor_mode(n) == self.trt.TensorIOMode.INPUT]
        else:
            names = [self.engine.get_binding_name(i) for i in range(self.engine.num_bindings)]
            inputs = [n for i, n in enumerate(names) if self.engine.binding_is_input(i)]
        return names, inputs, [n for n in names if n not in inputs]

    def _shape(self, name: str) -> tuple[int, ...]:
        shape = self.engine.get_tensor_shape(name) if self.v3 else \
            self.engine.get_binding_shape(self.engine.get_binding_index(name))
        if any(d < 0 for d in shape):
            raise RuntimeError(f"tensor {name!r} has a dynamic shape {tuple(shape)}: export with dynamic=False")
        return tuple(int(d) for d in shape)

    def _dtype(self, name: str) -> np.dtype:
        dt = self.engine.get_tensor_dtype(name) if self.v3 else \
            self.engine.get_binding_dtype(self.engine.get_binding_index(name))
        return np.dtype(self.trt.nptype(dt))

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        first = self.inputs[0]
        np.copyto(self.host[first], x.reshape(self.host[first].shape))
        self.gpu.to_device(self.device[first], self.host[first])
        if self.v3:
            self.context.execute_async_v3(self.gpu.handle)
        else:
            self.context.execute_async_v2([self.device[n] for n in self.names], self.gpu.handle)
        for name in self.outputs:
            self.gpu.to_host(self.host[name], self.device[name])
        self.gpu.sync()
        return [self.host[n].copy() for n in self.outputs]


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m app.backends.tensorrt",
                                     description="Build a TensorRT engine from the ONNX on this device.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("onnx", type=Path)
    b.add_argument("engine", type=Path)
    b.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    b.add_argument("--workspace-gb", type=float, default=4.0)
    args = parser.parse_args(argv)
    out = build(args.onnx, args.engine, args.precision, args.workspace_gb)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
