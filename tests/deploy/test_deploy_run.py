"""Packages executed here, in their own runtime: the runner on real pictures gives the engine's
predictions (within the export's tolerance), imports nothing outside its requirements (never torch
or tango, unless the runtime is torch), and reads video files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from deploy_helpers import engine_probabilities, run_runner

from tango_core.deploy import deploy
from tango_core.deploy._audit import audit_imports, run_smoke_test

#: (format, export options, target, runtime): one package per runtime that runs on this CPU
RUNTIMES = [
    ("onnx", {}, "x86-cpu", "onnxruntime"),
    ("openvino", {}, "x86-cpu", "openvino"),
    pytest.param("tflite", {}, "x86-cpu", "litert", marks=pytest.mark.slow),
    pytest.param("tvm", {}, "x86-cpu", "tvm", marks=pytest.mark.slow),
    pytest.param("torchscript", {}, "aws-ecs", "torchscript", marks=pytest.mark.slow),
]
CLOUD = dict(registry="registry.example.com/v", region="eu-west-1", cluster="c")


def _check_predictions(records, classifier, meta, sample_images, tolerance):
    images = sorted(p for p in sample_images.iterdir())
    assert [r["source"] for r in records] == [str(p) for p in images]
    for record, image in zip(records, images, strict=True):
        reference = engine_probabilities(classifier, image, meta)
        probs = np.asarray(record["probabilities"])
        assert np.abs(probs - reference).max() <= tolerance, (image.name, probs, reference)
        assert record["class_id"] == int(reference.argmax())
        assert record["label"] == ["cat", "dog", "bird"][record["class_id"]]
        assert record["annotated"]


@pytest.mark.parametrize("fmt, options, target, runtime", RUNTIMES)
def test_runner_gives_the_engines_predictions_with_only_its_requirements(exports, classifier, sample_images,
                                                                         workdir, fmt, options, target, runtime):
    export = exports(fmt, **options)
    meta = export.metadata
    result = deploy(export, target=target, out=workdir / "run" / fmt, measure=False,
                    **(CLOUD if target == "aws-ecs" else {}))
    assert result.runtime == runtime
    out = workdir / "run" / f"{fmt}-out"
    # the runner as a user runs it, with only the modules of requirements.txt importable
    audit = audit_imports(result.path, inputs=[str(sample_images)], out=out)
    assert audit.ok, audit.detail
    data = json.loads((out / "predictions.json").read_text())
    assert data["summary"]["failed"] == 0 and data["summary"]["backend"] == runtime
    tolerance = meta["verification"]["thresholds"]["max_abs_diff"]
    _check_predictions(data["predictions"], classifier, meta, sample_images, tolerance)
    assert all((out / r["annotated"]).is_file() for r in data["predictions"])
    modules = set(audit.data["modules"])
    assert not {m for m in modules if m.startswith("tango")}
    assert ("torch" in modules) == (runtime == "torchscript")
    assert "tensorflow" not in modules


def test_device_package_host_check_runs_the_file_the_device_model_is_built_from(exports, classifier, sample_images,
                                                                                workdir):
    """Jetson (TensorRT) and Odroid M1 (RKNN) cannot run here; their packages carry the ONNX the
    engine / NPU model is built from, and run it with --backend onnxruntime."""
    for fmt, options, target in (("tensorrt", {}, "jetson-agx-orin"), ("rknn", {"precision": "int8"}, "odroid-m1")):
        export = exports(fmt, **options)
        result = deploy(export, target=target, out=workdir / "host" / target, measure=False)
        assert result.record["host_backend"] == "onnxruntime"
        out = workdir / "host" / f"{target}-out"
        audit = audit_imports(result.path, backend="onnxruntime", inputs=[str(sample_images)], out=out)
        assert audit.ok, audit.detail
        data = json.loads((out / "predictions.json").read_text())
        assert data["summary"]["backend"] == "onnxruntime"
        _check_predictions(data["predictions"], classifier, export.metadata, sample_images, 1e-3)


@pytest.mark.slow
def test_coral_package_runs_its_int8_model_on_the_cpu(workdir, sample_images, classifier, exports):
    """The Edge TPU model needs the TPU; the INT8 TFLite it is compiled from runs here through the
    package's litert backend and must equal the export's own runtime output."""
    from PIL import Image

    from tango_core.export import load_exported
    from tango_core.export._preprocess import to_input

    export = exports("edgetpu")
    result = deploy(export, target="rpi5-coral", out=workdir / "coral", measure=False)
    assert result.record["backend"] == "edgetpu" and result.record["host_backend"] == "litert"
    data = run_runner(result.path, sample_images, out=workdir / "coral-out", backend="litert")
    meta = export.metadata
    runner = load_exported(export.metadata_path, file_role="tflite", runtime_name="litert")
    agree = 0
    for record, image in zip(data["predictions"], sorted(sample_images.iterdir()), strict=True):
        with Image.open(image) as img:
            x, _ = to_input(img, meta["options"]["imgsz"], meta["preprocess"], 3)
        logits = runner(x[None])[0][0].astype(np.float64)
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(record["probabilities"], probs, atol=1e-5)
        agree += record["class_id"] == int(engine_probabilities(classifier, image, meta).argmax())
    # the same pictures the export was verified on: the package keeps the export's agreement with PyTorch
    assert agree / len(data["predictions"]) >= meta["verification"]["thresholds"]["top1_agreement"]
    smoke = run_smoke_test(result.path, backend="litert")
    assert smoke.ok, smoke.detail


def test_runner_reads_video_files_and_reports_bad_inputs(exports, workdir, sample_images):
    import cv2
    result = deploy(exports("onnx"), target="x86-cpu", out=workdir / "video", measure=False)
    clip = workdir / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (48, 40))
    for i in range(6):
        frame = np.full((40, 48, 3), (i * 40) % 256, np.uint8)
        frame[:, : 8 * (i + 1)] = (0, 0, 255)
        writer.write(frame)
    writer.release()
    broken = workdir / "broken.png"
    broken.write_bytes((sample_images / "img1.png").read_bytes()[:300])  # a real PNG, cut short
    out = workdir / "video-out"
    data = run_runner(result.path, clip, broken, workdir / "missing.jpg", out=out, extra=("--every", "2"))
    frames = [r for r in data["predictions"] if r.get("frame") is not None]
    assert [r["frame"] for r in frames] == [0, 2, 4]
    errors = {r["source"]: r["error"] for r in data["predictions"] if "error" in r}
    assert "corrupt" in errors[str(broken)] and "no such file" in errors[str(workdir / "missing.jpg")]
    assert data["summary"]["failed"] == 2
    annotated = cv2.VideoCapture(str(out / "clip.mp4"))
    count = 0
    while annotated.read()[0]:
        count += 1
    assert count == 3
    assert json.loads((out / "predictions.json").read_text())["summary"]["inputs"] == 5


# --- camera indexes -------------------------------------------------------------------------------
# No camera can be opened here: opencv-python-headless opens an index only through V4L2
# (/dev/videoN), this machine has no /dev/video* and no kernel modules (v4l2loopback) to make one,
# and FFmpeg without libavdevice opens no device.  The first test runs the real OpenCV path to
# "no camera"; the second puts an endless stand-in behind cv2.VideoCapture(int) to run the
# runner's camera loop (index parsing, --every / --max-frames on a source that never ends, frame
# colours, the annotated .mp4); OpenCV's device I/O itself is not tested.
_FAKE_CAMERA = r"""
import runpy, sys
import cv2
import numpy as np


class FakeCamera:
    # camera 0 only, endless like a webcam, 30 fps, BGR frames whose colour changes each frame
    def __init__(self, index, *args):
        self.n, self.opened = 0, index == 0

    def isOpened(self):
        return self.opened

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:] = ((self.n * 37) % 256, 200, 30)  # B, G, R
        frame[:, : 4 * (self.n + 1)] = (0, 0, 255)
        self.n += 1
        return True, frame

    def release(self):
        self.opened = False


real = cv2.VideoCapture
cv2.VideoCapture = lambda src, *a: FakeCamera(src, *a) if isinstance(src, int) else real(src, *a)
sys.argv = ["app.predict"] + sys.argv[1:]
runpy.run_module("app.predict", run_name="__main__", alter_sys=True)
"""


def test_runner_records_a_camera_index_it_cannot_open(exports, workdir, sample_images):
    from pathlib import Path

    if Path("/dev/video0").exists():
        pytest.skip("this machine has a camera 0")
    result = deploy(exports("onnx"), target="x86-cpu", out=workdir / "camera", measure=False)
    image = sorted(sample_images.iterdir())[0]
    data = run_runner(result.path, "0", image, out=workdir / "camera-none")
    camera, picture = data["predictions"]
    assert camera == {"source": "camera0", "error": "cannot open camera 0"}
    assert picture["source"] == str(image) and "probabilities" in picture
    assert data["summary"]["failed"] == 1


def test_runner_reads_a_camera_index_through_opencv_videocapture(exports, workdir):
    import subprocess
    import sys

    import cv2
    from deploy_helpers import clean_env
    from PIL import Image

    result = deploy(exports("onnx"), target="x86-cpu", out=workdir / "camera-fake", measure=False)
    out = workdir / "camera-fake-out"
    proc = subprocess.run([sys.executable, "-c", _FAKE_CAMERA, "0", "1", "--every", "2", "--max-frames", "4",
                           "--out", str(out)], cwd=result.path, env=clean_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]  # camera 1 does not open
    data = json.loads((out / "predictions.json").read_text())
    frames = [r for r in data["predictions"] if r["source"] == "camera0"]
    assert [r["frame"] for r in frames] == [0, 2, 4, 6]  # every 2nd frame, stopped after 4
    assert {"source": "camera1", "error": "cannot open camera 1"} in data["predictions"]
    video = cv2.VideoCapture(str(out / "camera0.mp4"))
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(15.0)
    count = 0
    while video.read()[0]:
        count += 1
    assert count == 4
    # each frame is predicted as the same picture in RGB would be (OpenCV's BGR converted)
    stills = workdir / "camera-stills"
    stills.mkdir(exist_ok=True)
    for n in (0, 2, 4, 6):
        rgb = np.zeros((48, 64, 3), np.uint8)
        rgb[:] = (30, 200, (n * 37) % 256)
        rgb[:, : 4 * (n + 1)] = (255, 0, 0)
        Image.fromarray(rgb).save(stills / f"frame{n}.png")
    still = run_runner(result.path, stills, out=workdir / "camera-stills-out", extra=("--no-images",))
    for frame, picture in zip(frames, still["predictions"], strict=True):
        np.testing.assert_allclose(frame["probabilities"], picture["probabilities"], rtol=0, atol=1e-6)
