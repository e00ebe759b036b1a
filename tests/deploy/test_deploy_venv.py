"""Packages installed for real: for every runtime that runs on this CPU, a fresh virtual
environment (no system site-packages) gets only the package's pinned requirements.txt from the
package registry, then the package's smoke test, its runner on the sample pictures (the engine's
predictions within the export's tolerance) and, for server packages, its HTTP server as a real
process (/predict and KServe v2 infer equal to the runner) run there.

One venv per distinct set of pins, shared by the tests of the session (the ``fresh_venv``
fixture).  TorchScript packages are not among them: their pinned torch==2.14.1 (the PyPI wheel,
with its CUDA libraries) is 5.5 GB in a venv and took 3 minutes to install on the 2-core machine,
more than every other fresh venv together; they are run in the main venv with only their
requirements importable (test_deploy_run.py)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from deploy_helpers import CLASSES, Server, clean_env, engine_probabilities, run_runner
from PIL import Image

from tango_core.deploy import deploy

pytestmark = pytest.mark.slow

#: id -> (export format, target, runtime the package runs, its requirements.txt's top-level names)
SERVER = ["fastapi", "uvicorn", "python-multipart"]
PACKAGES = {
    "onnxruntime": ("onnx", "x86-cpu", "onnxruntime", ["numpy", "pillow", "onnxruntime", *SERVER]),
    "openvino": ("openvino", "x86-cpu", "openvino", ["numpy", "pillow", "openvino", *SERVER]),
    "litert": ("tflite", "x86-cpu", "litert", ["numpy", "pillow", "ai-edge-litert", *SERVER]),
    # the Comma 3X runner (ONNX Runtime, no server): the aarch64 board's pins are the same for x86-64
    "comma-3x": ("onnx", "comma-3x", "onnxruntime", ["numpy", "pillow", "onnxruntime"]),
    # the NVIDIA PC's ONNX package: onnxruntime-gpu, which falls back to its CPU provider here
    "pc-nvidia": ("onnx", "pc-nvidia", "onnxruntime", ["numpy", "pillow", "onnxruntime-gpu", *SERVER]),
}
NEVER = {"torch", "tango", "tensorflow", "opencv-python-headless", "opencv-python", "jax"}


@pytest.fixture(scope="module")
def installed(exports, workdir, fresh_venv):
    """id -> (DeployResult, python of its fresh venv), made once for the module."""
    made = {}

    def get(name):
        if name not in made:
            fmt, target, _, _ = PACKAGES[name]
            result = deploy(exports(fmt), target=target, out=workdir / "fresh" / name, measure=False)
            made[name] = result, fresh_venv(result.path / "requirements.txt")
        return made[name]

    return get


@pytest.fixture(scope="module")
def runner_output(installed, sample_images, workdir):
    """id -> the runner's predictions.json over the sample pictures, in the package's fresh venv."""
    done = {}

    def get(name):
        if name not in done:
            result, python = installed(name)
            done[name] = run_runner(result.path, sample_images, out=workdir / "fresh" / f"{name}-out", python=python)
        return done[name]

    return get


@pytest.mark.parametrize("name", list(PACKAGES))
def test_package_runs_in_a_fresh_venv_with_only_its_requirements(installed, runner_output, exports, classifier,
                                                                 sample_images, fresh_venv, name):
    fmt, target, runtime, names = PACKAGES[name]
    result, python = installed(name)
    assert result.runtime == runtime
    dists = fresh_venv.distributions(python)
    assert set(names) <= dists, set(names) - dists
    assert not dists & NEVER, dists & NEVER
    assert "pip" not in dists  # nothing but what requirements.txt pulls in

    smoke = subprocess.run([str(python), "smoke_test.py"], cwd=result.path, env=clean_env(), capture_output=True,
                           text=True, timeout=600)
    assert smoke.returncode == 0, smoke.stdout[-2000:] + smoke.stderr[-2000:]
    assert "smoke test passed" in smoke.stdout
    assert ("server ok" in smoke.stdout) == ("fastapi" in names), smoke.stdout

    data = runner_output(name)
    assert data["summary"]["backend"] == runtime and data["summary"]["failed"] == 0
    meta = exports(fmt).metadata
    tolerance = meta["verification"]["thresholds"]["max_abs_diff"]
    images = sorted(sample_images.iterdir())
    assert [r["source"] for r in data["predictions"]] == [str(p) for p in images]
    for record, image in zip(data["predictions"], images, strict=True):
        reference = engine_probabilities(classifier, image, meta)
        probs = np.asarray(record["probabilities"])
        assert np.abs(probs - reference).max() <= tolerance, (name, image.name, probs, reference)
        assert record["class_id"] == int(reference.argmax()) and record["label"] == CLASSES[record["class_id"]]


def test_the_nvidia_package_falls_back_to_the_cpu_provider_here(installed):
    """What can run of the NVIDIA PC package on a CPU: its onnxruntime-gpu install and the CPU
    provider (above).  The CUDA / TensorRT providers are compiled in but cannot load without a GPU."""
    result, python = installed("pc-nvidia")
    code = ("import onnxruntime as ort; from app.predictor import Predictor; p = Predictor(); "
            "import json; print(json.dumps({'available': ort.get_available_providers(), "
            "'used': p.backend.providers, 'device': ort.get_device()}))")
    proc = subprocess.run([str(python), "-c", code], cwd=result.path, env=clean_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "CUDAExecutionProvider" in info["available"] and info["device"] == "GPU"  # the GPU build
    assert info["used"] == ["CPUExecutionProvider"]


@pytest.mark.parametrize("name", ["onnxruntime", "openvino", "litert"])
def test_server_in_its_fresh_venv_answers_like_the_runner(installed, runner_output, exports, classifier,
                                                         sample_images, name):
    """uvicorn from the fresh venv on 127.0.0.1: /predict uploads give the runner's results, v2
    infer the model's logits (within the export's tolerance of the runner and of PyTorch), bad
    input a 4xx; then it stops on SIGTERM."""
    from tango_core.export._preprocess import to_input

    fmt, _, runtime, _ = PACKAGES[name]
    result, python = installed(name)
    records = {r["source"]: r for r in runner_output(name)["predictions"]}
    meta = exports(fmt).metadata
    tolerance = meta["verification"]["thresholds"]["max_abs_diff"]
    server = Server(result.path, python=python, limit=2_000_000)
    try:
        ready = server.wait_ready()
        assert ready.status_code == 200 and ready.json()["backend"] == runtime, ready.text
        images = sorted(sample_images.iterdir())
        for image in images:
            kind = "image/jpeg" if image.suffix == ".jpg" else "image/png"
            r = server.client.post("/predict", files={"file": (image.name, image.read_bytes(), kind)})
            assert r.status_code == 200, r.text
            got, want = r.json(), records[str(image)]
            assert got["class_id"] == want["class_id"]
            np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=0, atol=1e-6)

        model_name = result.record["name"]
        model = server.client.get(f"/v2/models/{model_name}").json()
        inp = model["inputs"][0]
        assert inp["datatype"] == "FP32" and inp["shape"][1:] == [3, 32, 32]
        batch = []
        for image in images:
            with Image.open(image) as img:
                batch.append(to_input(img, meta["options"]["imgsz"], meta["preprocess"], 3)[0])
        x = np.stack(batch)
        r = server.client.post(f"/v2/models/{model_name}/infer", json={
            "id": name, "inputs": [{"name": inp["name"], "shape": list(x.shape), "datatype": "FP32",
                                    "data": x.ravel().tolist()}]})
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        assert r.json()["id"] == name and out["shape"] == [len(images), len(CLASSES)]
        logits = np.reshape(out["data"], out["shape"]).astype(np.float64)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        for row, image in zip(probs, images, strict=True):
            assert np.abs(row - np.asarray(records[str(image)]["probabilities"])).max() <= tolerance
        with torch.inference_mode():
            expected = classifier(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(logits, expected, rtol=0, atol=tolerance * max(1.0, np.abs(expected).max()))

        corrupt = server.client.post("/predict", files={"file": ("x.png", images[0].read_bytes()[:200], "image/png")})
        assert corrupt.status_code == 422 and "error" in corrupt.json()
        wrong = server.client.post(f"/v2/models/{model_name}/infer", json={
            "inputs": [{"name": inp["name"], "shape": [1, 3, 8, 8], "datatype": "FP32", "data": [0.0] * 192}]})
        assert wrong.status_code == 400 and "does not fit" in wrong.text
        assert server.client.get("/health/ready").status_code == 200
    finally:
        code = server.stop()
    assert code in (0, -15), f"the server exited with {code} on SIGTERM"
