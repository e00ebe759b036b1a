#!/usr/bin/env python3
"""Run the TensorRT engine (written by tango export): ``EngineRunner(path)(batch) -> list of arrays``.

Input: float32 NCHW, pre-processed as $meta_name describes.  Needs TensorRT and PyTorch with
CUDA (PyTorch holds the GPU buffers).  ``python run_engine.py`` times it on random input.
"""

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


class EngineRunner:
    def __init__(self, path=os.path.join(HERE, "$engine")):
        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("TensorRT engines run on an NVIDIA GPU and none is visible")
        self.torch, self.trt = torch, trt
        with open(path, "rb") as f:
            self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeError(f"{path} could not be loaded: rebuild it with build_engine.py on this machine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.stream = torch.cuda.Stream()

    def __call__(self, x):
        torch, trt = self.torch, self.trt
        name = self.inputs[0]
        dtype = trt.nptype(self.engine.get_tensor_dtype(name))
        x_gpu = torch.from_numpy(np.ascontiguousarray(x, dtype=dtype)).cuda()
        self.context.set_input_shape(name, tuple(x_gpu.shape))
        self.context.set_tensor_address(name, x_gpu.data_ptr())
        outs = []
        for out in self.outputs:
            shape = tuple(self.context.get_tensor_shape(out))
            np_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(out)))
            buf = torch.empty(shape, dtype=getattr(torch, np_dtype.name), device="cuda")
            self.context.set_tensor_address(out, buf.data_ptr())
            outs.append(buf)
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return [o.cpu().numpy().astype(np.float32) for o in outs]


if __name__ == "__main__":
    try:
        runner = EngineRunner()
    except ImportError as exc:
        sys.exit(f"{exc}: TensorRT and PyTorch with CUDA are needed to run the engine")
    x = np.random.default_rng(0).standard_normal(($shape)).astype(np.float32)
    for _ in range(10):
        runner(x)
    times = []
    for _ in range(100):
        started = time.perf_counter()
        runner(x)
        times.append(time.perf_counter() - started)
    print(f"median latency {1000 * np.median(times):.3f} ms; output shapes {[o.shape for o in runner(x)]}")
