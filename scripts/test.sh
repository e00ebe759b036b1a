#!/usr/bin/env bash
# Sets everything up (Python packages, Chromium, PostgreSQL) and runs the whole test suite:
# unit, slow, notebook, browser and postgres tests alike.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --system
export PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest -p no:cacheprovider --durations=25 "$@"
