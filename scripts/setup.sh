#!/usr/bin/env bash
# Installs tango and the exact, tested dependency set (requirements-lock.txt) into .venv.
# An existing .venv that already holds this set is reused as it is (a stamp records the set).
#   bash scripts/setup.sh            # Python packages only
#   bash scripts/setup.sh --system   # also Debian packages the test suite needs (chromium, postgresql)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
stamp=.venv/.tango-installed
want=$(cat requirements-lock.txt pyproject.toml | sha256sum | cut -d' ' -f1)

if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: .venv already holds the locked set"
else
  echo "setup: installing the locked set into .venv (about 2-4 minutes, ~10 GB)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip==26.3
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-lock.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi

if [ "${1:-}" = "--system" ]; then
  need=()
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v pg_ctlcluster >/dev/null 2>&1 || [ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
