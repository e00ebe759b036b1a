"""Helpers shared by the AutoNN tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: settings that make 2-3 epochs on 400 digits learn (no EMA warm-up, no accumulation, no flips)
FAST_HYP = {"fliplr": 0.0, "nbs": 16, "ema": False}
TRAIN = {"imgsz": 16, "batch_size": 16, "threads": 1}


def python(code: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """Start ``python -c code`` with the repository importable, stdout piped line by line."""
    full = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for_line(proc: subprocess.Popen, needle: str, seen: list[str]) -> str:
    """Read ``proc``'s output until a line contains ``needle`` (fails if the process ends first)."""
    for line in proc.stdout:
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"process ended before printing {needle!r}:\n{''.join(seen)}")
