"""The detection / segmentation task adapters of the training engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tango_core.engine.tasks import get_task
from tango_core.errors import ConfigError


def memory_data(n_train: int = 6, n_val: int = 3, polygons: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)

    def item():
        img = np.full((48, 64, 3), 30, dtype=np.uint8)
        x1, y1 = int(rng.integers(0, 30)), int(rng.integers(0, 20))
        w, h = int(rng.integers(10, 30)), int(rng.integers(10, 25))
        img[y1:y1 + h, x1:x1 + w] = (200, 60, 60)
        labels = [[int(rng.integers(0, 2)), x1, y1, x1 + w, y1 + h]]
        if polygons:
            return img, labels, [[[x1, y1], [x1 + w, y1], [x1 + w, y1 + h], [x1, y1 + h]]]
        return img, labels

    return {"train": [item() for _ in range(n_train)], "val": [item() for _ in range(n_val)], "classes": ["a", "b"]}


def make_task(model: str, task: str = "detection", hyp: dict | None = None, epochs: int | None = None, **data_kw):
    from tango_core.engine._hyp import load_hyp

    cls = get_task(task)
    t = cls(memory_data(polygons=task == "segmentation", **data_kw), imgsz=64, hyp=load_hyp(hyp), epochs=epochs)
    model_ = t.build_model(model)
    return t, model_


def test_batches_losses_and_validation_in_memory():
    task, model = make_task("yolov9-t")
    assert task.in_channels == 3 and task.classes == ["a", "b"]
    assert [s["split"] for s in task.dataset_summaries()] == ["train", "val"]
    assert task.dataset_summaries()[0]["objects"] == 6
    x, y = next(task.train_batches(0, 4))
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert len(y) == 4 and all(t.shape[1] == 5 for t in y)
    for t in y:  # every box inside the training image
        assert (t[:, 1:] >= 0).all() and (t[:, 1:] <= 64).all()
    loss, parts = task.loss(model.train()(x), y)
    assert torch.isfinite(loss) and set(parts) == {"box", "cls", "dfl"}
    res = task.validate(model, 8, torch.device("cpu"), None, False)
    assert set(res.metrics) == {"precision", "recall", "mAP50", "mAP50-95"}
    assert 0 <= res.fitness <= 1 and all(0 <= v <= 1 for v in res.metrics.values())
    plots = task.plots(res)
    assert len(plots["confusion_matrix"]) == 3 and plots["confusion_labels"][-1] == "background"
    assert len(plots["pr_curve"]["precision"]) == 2 and len(plots["pr_curve"]["ap"]) == 2
    assert plots["samples"] and "image" in plots["samples"][0] and "pred_boxes" in plots["samples"][0]
    meta = task.weights_meta()
    assert meta["preprocess"]["resize"] == "letterbox" and meta["postprocess"]["nms_iou"] == 0.7


def test_the_recipe_fills_what_the_user_left_at_the_engine_defaults():
    task, _ = make_task("yolov7-tiny")
    assert task.hyp["lr0"] == 0.01 and task.hyp["momentum"] == 0.937
    assert task.hyp["nbs"] == 2  # 6 training images: the recipe's 64 would be one step in 11 epochs
    assert task.recipe["obj"] == 1.0 and task.nms_iou() == 0.65  # yolov7-tiny's recipe
    task, _ = make_task("yolov7-tiny", hyp={"lr0": 0.003, "fliplr": 0.0})
    assert task.hyp["lr0"] == 0.003 and task.recipe["fliplr"] == 0.0
    task, _ = make_task("yolov7-tiny", hyp={"nbs": 48})
    assert task.hyp["nbs"] == 48  # the user's nominal batch is kept
    # gradient clipping as each reference train.py: YOLOv9 clips the norm to 10, YOLOv7 does not
    assert make_task("yolov7-tiny")[0].hyp["clip_grad"] == 0.0
    assert make_task("yolov9-t")[0].hyp["clip_grad"] == 10.0
    from tango_core.engine._hyp import load_hyp

    assert load_hyp({"optimizer": "AdamW"}, model="yolov9-t")["clip_grad"] == 10.0  # whatever the optimiser
    assert load_hyp({"clip_grad": 0.0}, model="yolov9-t")["clip_grad"] == 0.0  # the user's value is kept


def test_the_nominal_batch_leaves_at_least_eight_steps_an_epoch():
    from tango_core.engine.tasks.detection import nominal_batch

    assert nominal_batch(100_000) == 64  # large sets: the recipe's value
    assert nominal_batch(160) == 20 and 160 // nominal_batch(160) >= 8
    assert nominal_batch(5) == 2  # never below a batch-norm batch


def test_mosaic_is_switched_off_for_the_last_epochs():
    task, _ = make_task("yolov9-t", epochs=20)
    assert task.recipe["close_mosaic"] == 15
    assert [task.mosaic_on(e) for e in (0, 4, 5, 19)] == [True, True, False, False]
    task.set_epochs(100)
    assert task.mosaic_on(50) and not task.mosaic_on(85)
    calls = []
    load = task._augment.load
    task._augment.load = lambda i: calls.append(i) or load(i)
    next(task.train_batches(90, 2))
    assert len(calls) == 2  # one image per sample: no mosaic


def test_segmentation_batches_carry_instance_masks():
    task, model = make_task("yolov9-t-seg", task="segmentation")
    x, y = next(task.train_batches(0, 2))
    boxes, masks = y[0]
    assert masks.shape == (len(boxes), 16, 16) and masks.dtype == torch.uint8
    loss, parts = task.loss(model.train()(x), y)
    assert torch.isfinite(loss) and "seg" in parts
    res = task.validate(model, 4, torch.device("cpu"), None, False)
    assert {"mAP50", "mask_mAP50", "mask_mAP50-95"} <= set(res.metrics) and 0 <= res.fitness <= 2
    dets, masks = task.predict_split(model, 4, torch.device("cpu"), None, False)
    assert len(masks) == len(dets) == 3 and all(m.shape == (len(d), 16, 16) for m, d in zip(masks, dets, strict=True))


def test_bad_settings_are_reported():
    cls = get_task("detection")
    from tango_core.engine._hyp import load_hyp

    task = cls(memory_data(), imgsz=80, hyp=load_hyp())
    with pytest.raises(ConfigError, match="not a multiple of yolov9-t's stride 32"):
        task.build_model("yolov9-t")
    with pytest.raises(ConfigError, match="class ids must be in 0..1"):
        data = memory_data()
        data["train"][0] = (data["train"][0][0], [[5, 0, 0, 4, 4]])
        cls(data, imgsz=64, hyp=load_hyp())


@pytest.mark.slow
def test_training_a_detector_end_to_end(tmp_path):
    from tango_core.data import make_sample
    from tango_core.engine.trainer import Trainer
    from tango_core.events import EventBus, Recorder

    ds = make_sample("shapes", tmp_path / "shapes", n=8, size=64, task="detection")
    bus = EventBus()
    rec = Recorder(bus)
    result = Trainer(ds, model="yolov7-tiny", epochs=1, batch_size=4, imgsz=64, run_dir=tmp_path / "run",
                     events=bus, device="cpu", loggers=()).fit()
    assert result.best is not None and result.best.is_file()
    assert set(result.metrics) == {"precision", "recall", "mAP50", "mAP50-95"}
    plots = rec.of("val_plots")[-1]
    assert plots["class_names"] == ds.classes and "confusion_matrix" in plots.payload
    sample = plots["samples"][0]
    assert sample["file"].endswith(".png") and all(len(b) == 5 for b in sample["boxes"])
    losses = rec.of("train_loss")[0]["losses"]
    assert set(losses) == {"box", "obj", "cls"}
