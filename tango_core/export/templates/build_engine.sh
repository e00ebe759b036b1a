#!/usr/bin/env bash
# Build the TensorRT engine with trtexec (written by tango export); build_engine.py does the same
# from Python and can calibrate INT8.  Run it on the machine with the target GPU.
set -euo pipefail
cd "$$(dirname "$$0")"
PRECISION="$${1:-$precision}"
TRTEXEC="$${TRTEXEC:-$$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"
if [ ! -x "$$TRTEXEC" ]; then
  echo "trtexec not found: install TensorRT (JetPack on Jetson), or use: python build_engine.py" >&2
  exit 1
fi
ARGS=(--onnx=$onnx --saveEngine=$engine --memPoolSize=workspace:${workspace_mb}M)
$shapes_line
case "$$PRECISION" in
  fp32) ;;
  fp16) ARGS+=(--fp16) ;;
  int8)
    if [ ! -f calibration.cache ]; then
      echo "INT8 with trtexec needs calibration.cache: run python build_engine.py --precision int8 once" >&2
      exit 1
    fi
    ARGS+=(--int8 --fp16 --calib=calibration.cache) ;;
  *) echo "precision must be fp32, fp16 or int8" >&2; exit 2 ;;
esac
"$$TRTEXEC" "$${ARGS[@]}"
