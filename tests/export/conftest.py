"""Shared fixtures: a small CNN trained for a few seconds on the built-in digits sample.

A trained model (about 90 % on its 120-image val split) makes the INT8 accuracy checks mean
something; it trains once per session, on one thread, in about three seconds.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn as nn

IMGSZ = 16


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


@pytest.fixture(scope="session", autouse=True)
def _openvino_without_telemetry():
    """Importing openvino sends telemetry from a forked process (unreachable here, and a fork of a
    process running JAX threads can deadlock); OpenVINO skips it when CI=true at import time."""
    old = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        import openvino  # noqa: F401
    except ImportError:
        pass
    finally:
        if old is None:
            del os.environ["CI"]
        else:
            os.environ["CI"] = old
    yield


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """The digits sample (60 per class, 16 x 16, 20 % val) as a tango dataset."""
    from tango_core.data import make_sample

    return make_sample("digits", tmp_path_factory.mktemp("digits") / "ds", n_per_class=60, size=IMGSZ, seed=0)


@pytest.fixture(scope="session")
def trained(digits):
    """(model, val Samples) — TinyNet trained on the train split of ``digits``."""
    from tango_core.export._data import load_samples
    from tango_core.export._source import default_preprocess

    torch.manual_seed(0)
    torch.set_num_threads(1)
    spec = default_preprocess("classification")
    common = dict(imgsz=[IMGSZ, IMGSZ], preprocess=spec, task="classification", class_names=digits.classes)
    train = load_samples(digits, purpose="calibration", **common)
    val = load_samples(digits, purpose="verification", **common)
    model = TinyNet()
    epochs, batch = 20, 32
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    x, y = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.009, total_steps=epochs * ((len(x) + batch - 1) // batch))
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(batch):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(val.images)).argmax(1).numpy() == val.labels).mean()
    assert acc > 0.8, f"the fixture model should learn the digits (val accuracy {acc:.2f})"
    return model, val


@pytest.fixture
def random_model():
    torch.manual_seed(0)
    return TinyNet().eval()


def torch_outputs(model: nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(images)).numpy()
