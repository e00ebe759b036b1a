#!/usr/bin/env bash
# Compile the full-integer INT8 TFLite for the Coral Edge TPU (written by tango export).
#
# edgetpu_compiler runs on x86-64 Debian / Ubuntu only; install it from Coral's apt repository:
#   https://coral.ai/docs/edgetpu/compiler/#system-requirements
# It writes $compiled and a .log listing which operations run on the TPU; operations it cannot
# map stay on the CPU.  Check the log: a model that maps fully runs fastest.
set -euo pipefail
cd "$$(dirname "$$0")"
if ! command -v edgetpu_compiler >/dev/null 2>&1; then
  echo "edgetpu_compiler is not installed: see https://coral.ai/docs/edgetpu/compiler/" >&2
  exit 1
fi
edgetpu_compiler --show_operations --out_dir . "$model"
test -f "$compiled" && echo "wrote $compiled"
