#!/usr/bin/env bash
# Sets everything up and runs the main job: the quickstart notebook on the built-in sample data,
# executed by papermill, ending with the path of its HTML report.  Extra arguments go to `tango demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tango demo "$@"
