"""Shared fixtures: a tiny classifier and detector, real exports of them (tango_core.export),
sample pictures, and fresh virtual environments (one per set of pins, for the session); helpers
are in deploy_helpers.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from deploy_helpers import CLASSES, FreshVenvs, TinyDetector
from PIL import Image


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("deploy")


@pytest.fixture(scope="session")
def fresh_venv(workdir) -> FreshVenvs:
    """``fresh_venv(package / "requirements.txt")`` -> the python of a fresh venv holding only those
    pins; each distinct set is installed once per session (pip's cache makes later sessions fast)."""
    venvs = FreshVenvs(workdir / "venvs")
    yield venvs
    if venvs.seconds:
        print("\nfresh venvs: " + ", ".join(f"{k} {v:.0f} s" for k, v in venvs.seconds.items()))


@pytest.fixture(scope="session")
def sample_images(workdir) -> Path:
    """Pictures of several sizes, modes and formats (the runner must treat them like the engine)."""
    folder = workdir / "images"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i, (h, w) in enumerate([(32, 32), (45, 70), (64, 40), (33, 51)]):
        ys, xs = np.mgrid[0:h, 0:w]
        base = np.stack([xs * 255 // w, ys * 255 // h, (xs + ys) * 7 % 256], -1)
        noise = rng.integers(0, 60, (h, w, 3))
        arr = np.clip(base + noise, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
        if i == 2:
            img.convert("L").save(folder / f"img{i}.png")
        elif i == 3:
            img.save(folder / f"img{i}.jpg", quality=95)
        else:
            img.save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="session")
def classifier():
    from tango_core.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet-cifar20", num_classes=len(CLASSES)).eval()
    # random BatchNorm statistics make the logits differ clearly between pictures
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="session")
def exports(workdir, classifier, sample_images):
    """``exports(fmt, **options)`` -> an ExportResult of the classifier (made once per session)."""
    from tango_core.export import export

    cache: dict = {}

    def make(fmt: str, **options):
        key = (fmt, tuple(sorted(options.items())))
        if key not in cache:
            name = "cls" + "".join(f"_{v}" for _, v in sorted(options.items()))
            cache[key] = export(classifier, fmt, out=workdir / "exports", name=name, imgsz=32, class_names=CLASSES,
                                data=sample_images, calibration=sample_images, **options)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def detector_export(workdir, sample_images):
    from tango_core.export import export

    torch.manual_seed(3)
    model = TinyDetector(nc=2).eval()
    result = export(model, "onnx", out=workdir / "exports", name="det", imgsz=64, task="detection",
                    class_names=["cat", "dog"], detection={"strides": [8], "conf_threshold": 0.3},
                    data=sample_images)
    return model, result
