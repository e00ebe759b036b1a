"""A real learning test: YOLO trained from scratch on generated shapes finds them.

The engine's whole detection path runs: the shapes sample on disk, the task's recipe (with the
nominal batch adapted to the small set), mosaic augmentation, the model family's loss, EMA, and
COCO mAP@0.5 of the best weights on the held-out fifth.  The thresholds sit well under what the
fixed seed reaches (measured values in the comments) so that the test fails only when learning
breaks, not on noise.
"""

from __future__ import annotations

import pytest

from tango_core.data import make_sample
from tango_core.engine.trainer import Trainer

IMGSZ = 64


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_sample("shapes", tmp_path_factory.mktemp("shapes") / "data", n=N_IMAGES, size=IMGSZ,
                       task="detection", max_shapes=2, seed=0)


N_IMAGES = 100  # 80 train, 20 val, one or two shapes each
#: model: (epochs, hyp, the mAP@0.5 it must reach).  YOLOv9-t's last 15 epochs train without
#: mosaic (its recipe's close_mosaic), on images like the validation ones.  Measured with this
#: seed: mAP@0.5 0.000 after epoch 1, 0.10 after 9, 0.146 after 13 (still rising; that run stopped at its time limit after 14 of the 20 epochs); at 64 px the
#: class priors start every score under the validation confidence, so the climb is slow.
CASES = {
    "yolov9-t": (20, {"optimizer": "AdamW", "lr0": 0.002, "warmup_epochs": 1.0}, 0.07),
    # YOLOv7-tiny without OTA (loss_ota 0, every candidate a positive), 26 s on two cores.  Measured:
    # 0.006 after epoch 1, 0.083 after 10, best 0.188 after 15; the published OTA assignment
    # reaches 0.056 in the same 20 epochs at this size (its objectness gain is scaled by (64/640)^2)
    "yolov7-tiny": (20, {"optimizer": "AdamW", "lr0": 0.002, "warmup_epochs": 1.0, "loss_ota": 0}, 0.09),
}


@pytest.mark.slow
@pytest.mark.parametrize("model", list(CASES))
def test_yolo_learns_the_shapes(model, shapes, tmp_path):
    epochs, hyp, threshold = CASES[model]
    result = Trainer(shapes, model, epochs=epochs, imgsz=IMGSZ, batch_size=8, hyp=hyp, run_dir=tmp_path / "run",
                     loggers=(), seed=0).fit()
    first = result.history[0]["metrics"]["mAP50"]
    assert first < 0.02  # a random start finds nothing: the score below is learnt
    assert result.metrics["mAP50"] >= threshold, [round(h["metrics"]["mAP50"], 3) for h in result.history]
