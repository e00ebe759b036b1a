"""The trainer's parts on their own: hyper-parameters, schedule, EMA, augmentation, metrics, loggers."""

from __future__ import annotations

import math

import pytest
import torch

from tango_core import events as ev
from tango_core.engine._hyp import load_hyp
from tango_core.engine._optim import ModelEMA, apply_schedule, build_optimizer, lr_factor
from tango_core.engine.callbacks import create_logger
from tango_core.engine.metrics import ClassificationMeter
from tango_core.engine.tasks._base import count_flops
from tango_core.engine.tasks._cls_data import BatchAugment, decode_image
from tango_core.errors import ConfigError, DataError, UnknownNameError
from tango_core.models import create_model


def test_hyp_defaults_overrides_and_errors(tmp_path):
    hyp = load_hyp()
    assert hyp["optimizer"] == "SGD" and hyp["lr0"] == 0.05
    assert load_hyp({"optimizer": "AdamW"})["lr0"] == 0.001  # lr0: auto follows the optimiser
    assert load_hyp({"optimizer": "AdamW", "lr0": 0.01})["lr0"] == 0.01
    with pytest.raises(UnknownNameError, match="Did you mean 'label_smoothing'"):
        load_hyp({"label_smothing": 0.1})
    with pytest.raises(ConfigError, match="momentum.*out of range"):
        load_hyp({"momentum": 1.5})
    with pytest.raises(ConfigError, match="clip_grad.*out of range"):
        load_hyp({"clip_grad": -1})
    with pytest.raises(ConfigError, match="lr0.*not a number"):
        load_hyp({"lr0": "fast"})
    with pytest.raises(UnknownNameError, match="optimizer"):
        load_hyp({"optimizer": "sgd"})
    (tmp_path / "h.yaml").write_text("lrf: 0.2\nfliplr: 0\n")
    assert load_hyp(tmp_path / "h.yaml")["lrf"] == 0.2


def test_schedule_warms_up_then_follows_the_curve():
    assert lr_factor(0, 10, 0.01, "cosine") == 1.0
    assert lr_factor(10, 10, 0.01, "cosine") == pytest.approx(0.01)
    assert lr_factor(5, 10, 0.01, "cosine") == pytest.approx(0.505)
    assert lr_factor(5, 10, 0.01, "linear") == pytest.approx(0.505)
    assert lr_factor(3, 10, 0.01, "constant") == 1.0
    model = create_model("resnet-cifar20")
    hyp = load_hyp({"warmup_epochs": 2.0})
    opt = build_optimizer(model, hyp, hyp["weight_decay"])
    groups = {("bias" if g["is_bias"] else "decay" if g["weight_decay"] else "norm"): g for g in opt.param_groups}
    assert groups["decay"]["weight_decay"] == hyp["weight_decay"] and groups["norm"]["weight_decay"] == 0
    assert len(groups["decay"]["params"]) == 20  # 19 convs + the linear layer's weight
    apply_schedule(opt, hyp, 0.0, 10)
    assert groups["decay"]["lr"] == 0.0 and groups["bias"]["lr"] == hyp["warmup_bias_lr"]
    assert groups["decay"]["momentum"] == hyp["warmup_momentum"]
    apply_schedule(opt, hyp, 1.0, 10)  # half-way through warm-up
    target = hyp["lr0"] * lr_factor(1.0, 10, hyp["lrf"], "cosine")
    assert groups["decay"]["lr"] == pytest.approx(target / 2)
    apply_schedule(opt, hyp, 4.0, 10)
    assert all(g["lr"] == pytest.approx(hyp["lr0"] * lr_factor(4.0, 10, hyp["lrf"], "cosine")) for g in opt.param_groups)
    assert groups["decay"]["momentum"] == hyp["momentum"]


def test_ema_follows_the_ramped_decay():
    model = torch.nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.9, tau=1.0)
    start = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1))
    assert torch.allclose(ema.module.weight, d * start + (1 - d) * model.weight)
    assert not ema.module.weight.requires_grad


def test_augmentation_shifts_flips_and_normalises_exactly():
    hyp = {"translate": 0.25, "fliplr": 1.0, "flipud": 0.0, "hsv_v": 0.0}
    aug = BatchAugment(1, 8, hyp)
    x = torch.zeros(64, 1, 8, 8, dtype=torch.uint8)
    x[:, 0, 3, 2] = 255  # one bright pixel
    out = aug(x, torch.Generator().manual_seed(0))
    low, high = float(aug.normalise(torch.zeros(1, 1, 1, 1))), float(aug.normalise(torch.full((1, 1, 1, 1), 255)))
    assert out.shape == (64, 1, 8, 8) and out.dtype == torch.float32
    offsets = set()
    for img in out:
        bright = (img[0] == high).nonzero().tolist()
        assert len(bright) <= 1 and torch.all((img[0] == high) | (img[0] == low))
        if bright:  # flipped left-right, then shifted by at most the pad (2 px) each way
            r, c = bright[0]
            offsets.add((r - 3, c - (7 - 2)))
    assert offsets <= {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)} and len(offsets) > 5
    again = aug(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # the generator alone decides the augmentation


def test_classification_meter():
    meter = ClassificationMeter(3, topk=2)
    logits = torch.tensor([[3.0, 1, 0], [0, 2, 1], [0, 1, 2], [2, 1, 0]])
    meter.update(logits, torch.tensor([0, 1, 1, 2]))
    res = meter.result()
    assert res["top1"] == 0.5 and res["top5"] == 0.75
    assert res["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [1, 0, 0]]
    assert res["per_class_precision"] == [0.5, 1.0, 0.0] and res["per_class_recall"] == [1.0, 0.5, 0.0]
    assert res["support"] == [1, 2, 1]


def test_flop_count_matches_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    model, x = create_model("resnet-cifar20", num_classes=7, in_channels=1), torch.zeros(1, 1, 24, 24)
    with FlopCounterMode(display=False) as counter:
        model(x)
    assert count_flops(model, x) == counter.get_total_flops()


def test_decode_names_bad_files(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match="bad.jpg.*cannot be decoded"):
        decode_image(bad, 16)
    from PIL import Image

    Image.new("RGB", (20, 10), (10, 200, 30)).save(tmp_path / "ok.png")
    arr = decode_image(tmp_path / "ok.png", 16)
    assert arr.shape == (16, 16, 3) and tuple(arr[5, 5]) == (10, 200, 30)


def _emit_two_epochs(bus):
    bus.emit(ev.TRAIN_START, epochs=2, batch_size=4, device="cpu", run_dir="r", start_epoch=0)
    for epoch in range(2):
        bus.emit(ev.EPOCH_START, epoch=epoch, total_epochs=2, lr=0.1, batches=1)
        bus.emit(ev.TRAIN_BATCH, epoch=epoch, total_epochs=2, step=1, total_step=1, loss=1.0 / (epoch + 1),
                 losses={"cls": 1.0}, lr=0.1, time=0.1, global_step=epoch + 1)
        bus.emit(ev.EPOCH_END, epoch=epoch, train_loss=1.0, metrics={"top1": 0.5 + epoch / 4}, fitness=0.5,
                 epoch_time=1.0, total_time=2.0)
    bus.emit(ev.TRAIN_END, best_model="b.pt", size_bytes=1, best_fitness=0.75, epochs_run=2, time=3.0)


def test_csv_and_console_loggers(tmp_path, capsys):
    bus = ev.EventBus()
    loggers = [create_logger(name, tmp_path) for name in ("csv", "console")]
    for lg in loggers:
        bus.subscribe("*", lg)
    _emit_two_epochs(bus)
    for lg in loggers:
        lg.close()
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,top1") and rows[2].startswith("1,1.0,0.75")
    out = capsys.readouterr()
    assert "epoch 2: loss 1.0000  top1 0.75" in out.out + out.err
    # a resumed run keeps the rows before its start epoch and drops the ones after
    csv_logger = create_logger("csv", tmp_path)
    csv_logger(ev.Event(ev.TRAIN_START, {"start_epoch": 1}))
    assert [r["epoch"] for r in csv_logger.rows] == ["0"]
    with pytest.raises(UnknownNameError, match="csv"):
        create_logger("cvs", tmp_path)


@pytest.mark.slow  # importing tensorboard takes seconds
def test_tensorboard_logger_writes_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    bus = ev.EventBus()
    logger = create_logger("tensorboard", tmp_path)
    bus.subscribe("*", logger)
    _emit_two_epochs(bus)
    logger.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [s.value for s in acc.Scalars("val/top1")] == [0.5, 0.75]
    assert [s.step for s in acc.Scalars("train/loss")] == [1, 2]


def test_predictor_refuses_weights_it_cannot_use(tmp_path):
    from tango_core.engine import Predictor
    from tango_core.models.weights import save_weights

    model = create_model("resnet-cifar20", num_classes=2)
    bare = save_weights(model, tmp_path / "bare.pt")
    with pytest.raises(DataError, match="bare.pt.*no classes, imgsz"):
        Predictor(bare)
    det = save_weights(model, tmp_path / "det.pt", task="detection", classes=["a", "b"], imgsz=32)
    with pytest.raises(DataError, match="det.pt.*detection model"):
        Predictor(det)
