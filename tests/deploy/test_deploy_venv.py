"""The ONNX Runtime server package installed for real: a fresh virtual environment (no system
site-packages), `pip install -r requirements.txt` from the package registry, then the package's
smoke test (runner + server) and the runner's predictions against the engine's."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from deploy_helpers import clean_env, engine_probabilities

from tango_core.deploy import deploy


@pytest.mark.slow
def test_onnxruntime_package_runs_in_a_fresh_venv_with_only_its_requirements(exports, classifier, sample_images,
                                                                             tmp_path):
    result = deploy(exports("onnx"), target="x86-cpu", out=tmp_path / "pkg", measure=False)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    pip = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r",
                          "requirements.txt"], cwd=result.path, capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    installed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                               check=True).stdout
    names = {p["name"].lower() for p in json.loads(installed)}
    assert {"onnxruntime", "numpy", "pillow", "fastapi", "uvicorn"} <= names
    assert not names & {"torch", "tango", "tensorflow", "opencv-python-headless"}

    smoke = subprocess.run([python, "smoke_test.py"], cwd=result.path, env=clean_env(), capture_output=True,
                           text=True, timeout=600)
    assert smoke.returncode == 0, smoke.stdout[-2000:] + smoke.stderr[-2000:]
    assert "smoke test passed" in smoke.stdout and "server ok" in smoke.stdout

    out = tmp_path / "out"
    run = subprocess.run([python, "-m", "app.predict", str(sample_images), "--out", str(out)], cwd=result.path,
                         env=clean_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    meta = exports("onnx").metadata
    records = json.loads((out / "predictions.json").read_text())["predictions"]
    for record, image in zip(records, sorted(sample_images.iterdir()), strict=True):
        reference = engine_probabilities(classifier, image, meta)
        assert np.abs(np.asarray(record["probabilities"]) - reference).max() <= 1e-3
