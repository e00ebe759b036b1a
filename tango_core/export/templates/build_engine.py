#!/usr/bin/env python3
"""Build the TensorRT engine for this model on the target machine (written by tango export).

TensorRT needs an NVIDIA GPU and is installed with the NVIDIA driver stack (JetPack on Jetson,
`pip install tensorrt` from NVIDIA's index on a PC); an engine is specific to the GPU and the
TensorRT version that built it, so build it where it runs:

    python build_engine.py                      # $precision, as exported
    python build_engine.py --precision fp16     # or fp32 / int8

INT8 calibrates on calibration.npy (images exported by tango, already pre-processed) with
TensorRT's entropy calibrator and writes calibration.cache; later builds reuse the cache.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ONNX = os.path.join(HERE, "$onnx")
ENGINE = os.path.join(HERE, "$engine")
CALIBRATION = os.path.join(HERE, "calibration.npy")
CACHE = os.path.join(HERE, "calibration.cache")
INPUT_NAME, INPUT_SHAPE = "images", ($shape)
DYNAMIC = $dynamic


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="$precision", choices=["fp32", "fp16", "int8"])
    parser.add_argument("--workspace-gb", type=float, default=$workspace_gb)
    parser.add_argument("--max-batch", type=int, default=max(8, INPUT_SHAPE[0]), help="dynamic models only")
    args = parser.parse_args()
    try:
        import tensorrt as trt
    except ImportError:
        sys.exit("TensorRT is not installed: it needs an NVIDIA GPU. On Jetson it comes with JetPack; on a PC "
                 "install it from NVIDIA (https://docs.nvidia.com/deeplearning/tensorrt/latest/installing-tensorrt/).")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser_ = trt.OnnxParser(network, logger)
    if not parser_.parse_from_file(ONNX):
        errors = "\n".join(str(parser_.get_error(i)) for i in range(parser_.num_errors))
        sys.exit(f"TensorRT could not parse {ONNX}:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(args.workspace_gb * (1 << 30)))
    if DYNAMIC:
        n, c, h, w = INPUT_SHAPE
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, (1, c, h, w), (n, c, h, w), (args.max_batch, c, h, w))
        config.add_optimization_profile(profile)
    if args.precision in ("fp16", "int8") and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 layers fall back to fp16, not fp32
    if args.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = make_calibrator(trt)
    started = time.time()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        sys.exit("TensorRT failed to build the engine (see the log above)")
    with open(ENGINE, "wb") as f:
        f.write(serialized)
    print(f"wrote {ENGINE} ({os.path.getsize(ENGINE) / 1e6:.1f} MB, {args.precision}) in {time.time() - started:.0f} s")


def make_calibrator(trt):
    import numpy as np
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.images = np.load(CALIBRATION) if os.path.exists(CALIBRATION) else None
            self.batch = INPUT_SHAPE[0]
            self.index = 0
            self.device = None

        def get_batch_size(self):
            return self.batch

        def get_batch(self, names):
            if self.images is None or self.index + self.batch > len(self.images):
                return None
            chunk = np.ascontiguousarray(self.images[self.index:self.index + self.batch], dtype=np.float32)
            self.index += self.batch
            self.device = torch.from_numpy(chunk).cuda()
            return [int(self.device.data_ptr())]

        def read_calibration_cache(self):
            if os.path.exists(CACHE):
                with open(CACHE, "rb") as f:
                    return f.read()
            if self.images is None:
                sys.exit(f"INT8 needs {CALIBRATION} or {CACHE}: export again with precision=int8")
            return None

        def write_calibration_cache(self, cache):
            with open(CACHE, "wb") as f:
                f.write(cache)

    return EntropyCalibrator()


if __name__ == "__main__":
    main()
