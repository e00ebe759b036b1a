#!/usr/bin/env python3
"""Convert the ONNX to an RKNN model for the Rockchip NPU (written by tango export).

rknn-toolkit2 runs on an x86-64 Linux host (pip install rknn-toolkit2, from Rockchip's
releases: https://github.com/airockchip/rknn-toolkit2); the .rknn it writes runs on the board
with rknn-toolkit-lite2 (RKNNLite).  Normalisation moves into the model: on the device feed
uint8 RGB images, NHWC, resized / letterboxed to $height x $width.

    python convert_rknn.py                     # $precision for $platform, as exported
    python convert_rknn.py --precision fp16    # no quantisation
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ONNX = os.path.join(HERE, "$onnx")
OUT = os.path.join(HERE, "$rknn")
DATASET = os.path.join(HERE, "dataset.txt")  # calibration images, one path per line
MEAN = $mean_values  # pixel units: (uint8 - MEAN) / STD is what the ONNX expects
STD = $std_values


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="$precision", choices=["int8", "fp16"])
    parser.add_argument("--platform", default="$platform")
    parser.add_argument("--analyse", action="store_true", help="per-layer accuracy analysis on the simulator")
    args = parser.parse_args()
    try:
        from rknn.api import RKNN
    except ImportError:
        sys.exit("rknn-toolkit2 is not installed: pip install rknn-toolkit2 on an x86-64 Linux host "
                 "(see https://github.com/airockchip/rknn-toolkit2)")
    rknn = RKNN(verbose=False)
    rknn.config(mean_values=[MEAN], std_values=[STD], target_platform=args.platform)
    if rknn.load_onnx(model=ONNX, inputs=["images"], input_size_list=[[$batch, $channels, $height, $width]]) != 0:
        sys.exit(f"rknn-toolkit2 could not load {ONNX}")
    quantize = args.precision == "int8"
    if rknn.build(do_quantization=quantize, dataset=DATASET if quantize else None) != 0:
        sys.exit("rknn-toolkit2 failed to build the model (see the log above)")
    if args.analyse and quantize:
        with open(DATASET) as f:
            first = os.path.join(HERE, f.readline().strip())
        rknn.accuracy_analysis(inputs=[first], output_dir=os.path.join(HERE, "accuracy_analysis"))
    if rknn.export_rknn(OUT) != 0:
        sys.exit(f"could not write {OUT}")
    rknn.release()
    print(f"wrote {OUT} ({args.precision}, {args.platform})")


if __name__ == "__main__":
    main()
