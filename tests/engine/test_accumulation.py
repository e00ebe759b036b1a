"""Gradient accumulation to the nominal batch: two accumulated batches of 16 make the same step
as one batch of 32, the short last group of an epoch included."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from engine_data import quadrant_data

from tango_core.engine import Trainer
from tango_core.models import _registry

pytestmark = pytest.mark.unit

NAME = "test-accumulation-linear"


@pytest.fixture(scope="module", autouse=True)
def linear_model():
    # no batch norm: its statistics would differ between batches of 16 and 32
    @_registry.register_model(NAME, task="classification", family="test", size="tiny", input_size=8,
                              num_classes=4, params=0, flops=0, source="test")
    def build(num_classes=4, in_channels=3, **_):
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 8 * 8, num_classes))

    yield
    _registry._MODELS._entries.pop(NAME, None)
    _registry._MODELS._meta.pop(NAME, None)


def _train(tmp_path, batch: int) -> dict[str, torch.Tensor]:
    hyp = {"nbs": 32, "scheduler": "constant", "warmup_epochs": 0, "lr0": 0.05, "weight_decay": 0.0,
           "translate": 0.0, "fliplr": 0.0, "ema": False, "momentum": 0.9}
    trainer = Trainer(quadrant_data(n_train=80, n_val=16, size=8), NAME, epochs=2, batch_size=batch, imgsz=8,
                      hyp=hyp, amp="off", seed=1, loggers=(), run_dir=tmp_path / f"b{batch}",
                      channels_last=False)
    trainer.fit()
    assert trainer.accumulate == 32 // batch
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_accumulated_small_batches_equal_one_nominal_batch(tmp_path):
    # 80 images: batches of 32 are [32, 32, 16]; batches of 16 accumulate as [2, 2, 1] per step
    whole, accumulated = _train(tmp_path, 32), _train(tmp_path, 16)
    for k in whole:
        torch.testing.assert_close(accumulated[k], whole[k], rtol=1e-5, atol=1e-6)


def _one_step(tmp_path, clip: float) -> torch.Tensor:
    """The weight change of one SGD step over the whole set (80 images, batch 80)."""
    hyp = {"nbs": 80, "scheduler": "constant", "warmup_epochs": 0, "lr0": 0.05, "weight_decay": 0.0,
           "translate": 0.0, "fliplr": 0.0, "ema": False, "momentum": 0.9, "clip_grad": clip}
    start = torch.cat([p.detach().flatten() for p in _registry.create_model(NAME).parameters()])
    trainer = Trainer(quadrant_data(n_train=80, n_val=16, size=8), NAME, epochs=1, batch_size=80, imgsz=8,
                      hyp=hyp, amp="off", seed=1, loggers=(), run_dir=tmp_path / f"clip{clip}",
                      channels_last=False)
    trainer.fit()
    end = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    return end - start


def test_clip_grad_caps_the_gradient_norm_and_keeps_its_direction(tmp_path):
    free = _one_step(tmp_path, 0.0)
    clipped = _one_step(tmp_path, 0.05)
    step = 0.05 * (1 + 0.9)  # the first Nesterov step is lr (1 + momentum) g
    assert free.norm() / step > 1.0  # the unclipped gradient (7.5) is far above the cap
    assert clipped.norm() / step == pytest.approx(0.05, rel=1e-3)
    torch.testing.assert_close(clipped / clipped.norm(), free / free.norm(), rtol=1e-4, atol=1e-5)
