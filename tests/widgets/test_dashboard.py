"""The training dashboard, driven by events on a bus (no trainer needed)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tango_core import events as ev
from tango_widgets import Dashboard

pytestmark = pytest.mark.unit


def emit_run(bus: ev.EventBus, epochs: int = 3, steps: int = 10, end: bool = True, plots: bool = True) -> None:
    bus.emit(ev.SYSTEM_INFO, torch="2.14.1", device="cpu", cpu_count=2, cuda=None, python="3.11")
    bus.emit(ev.MODEL_SUMMARY, name="resnet-cifar20", layers=20, parameters=269_722, gradients=269_722,
             flops=81_102_080)
    bus.emit(ev.DATASET_SUMMARY, split="train", total=100, found=99, missing=1, empty=0, corrupted=0, classes=3)
    bus.emit(ev.TRAIN_START, epochs=epochs, batch_size=8, device="cpu", run_dir="runs/train/1", start_epoch=0)
    for epoch in range(epochs):
        bus.emit(ev.EPOCH_START, epoch=epoch, total_epochs=epochs, lr=0.1)
        for step in range(1, steps + 1):
            loss = 2.0 / (1 + epoch * steps + step)
            bus.emit(ev.TRAIN_BATCH, epoch=epoch, total_epochs=epochs, step=step, total_step=steps, loss=loss,
                     losses={"cls": loss * 0.9, "reg": loss * 0.1}, lr=0.1 * (1 - epoch / epochs), time=0.01)
        metrics = {"top1": 0.5 + 0.1 * epoch, "top5": 0.9}
        bus.emit(ev.VAL_END, epoch=epoch, metrics=metrics, fitness=metrics["top1"], time=0.1)
        bus.emit(ev.EPOCH_END, epoch=epoch, train_loss=loss, metrics=metrics, fitness=metrics["top1"],
                 epoch_time=0.2, total_time=0.2 * (epoch + 1))
        bus.emit(ev.CHECKPOINT, path="runs/train/1/last.pt", kind="last", epoch=epoch)
    if plots:
        rng = np.random.default_rng(0)
        bus.emit(ev.VAL_PLOTS, epoch=epochs - 1, class_names=["a", "b", "c"],
                 confusion_matrix=[[5, 1, 0], [0, 6, 1], [1, 0, 7]],
                 pr_curve={"recall": list(np.linspace(0, 1, 11)), "precision": [list(np.linspace(1, 0.5, 11))] * 3,
                           "ap": [0.8, 0.7, 0.9]},
                 samples=[{"image": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), "label": i % 3,
                           "pred": (i * 2) % 3, "score": 0.9} for i in range(5)])
    if end:
        bus.emit(ev.TRAIN_END, best_model="runs/train/1/best.pt", size_bytes=1_100_000, best_fitness=0.7,
                 epochs_run=epochs, time=1.5)


def _png_size(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


def test_live_run_fills_history_plots_and_progress(frontend):
    bus = ev.EventBus()
    board = Dashboard(bus, rate_hz=1e-9)
    emit_run(bus, epochs=3, steps=10)
    h = board.history
    assert len(h.batches) == 30 and len(h.val) == 3 and h.end is not None
    assert h.loss_names() == ["cls", "reg"] and h.metric_names() == ["top1", "top5"]
    names = [t.name for t in board.figure.data]
    assert names == ["loss", "cls", "reg", "lr", "top1", "top5"]
    loss = board.figure.data[0]
    assert len(loss.x) == 30 and loss.x[-1] == pytest.approx(3.0) and loss.y[0] == pytest.approx(1.0)
    assert list(board.figure.data[4].y) == pytest.approx([0.5, 0.6, 0.7])
    assert board._progress.value == 1.0 and board._progress.bar_style == "success"
    assert board._status.value.startswith("done: 3 epochs") and "0.7" in board._status.value
    assert "resnet-cifar20" in board._info.value and "270k parameters" in board._info.value
    assert "99/100 images" in board._info.value and "CUDA none" in board._info.value
    # end-of-run pictures: confusion matrix, PR curve, samples
    assert len(board._eval.children) == 3
    assert all(_png_size(img.value)[0] > 100 for img in board._eval.children)
    assert "best model runs/train/1/best.pt" in board._log.value


def test_progress_and_eta_mid_run(frontend):
    board2 = Dashboard()
    t0 = 1000.0
    board2.replay([
        ev.Event(ev.TRAIN_START, dict(epochs=4, batch_size=8, device="cpu", run_dir="r", start_epoch=0), time=t0),
        ev.Event(ev.TRAIN_BATCH, dict(epoch=0, total_epochs=4, step=10, total_step=10, loss=0.9, losses={},
                                      lr=0.01, time=0.1), time=t0 + 10),
        ev.Event(ev.TRAIN_BATCH, dict(epoch=1, total_epochs=4, step=5, total_step=10, loss=0.5, losses={},
                                      lr=0.01, time=0.1), time=t0 + 15),
    ])
    h = board2.history
    assert h.fraction == pytest.approx(1.5 / 4)
    assert h.elapsed == pytest.approx(15.0)
    assert h.eta == pytest.approx(25.0)  # 15 s for 1.5 epochs -> 25 s for the other 2.5
    assert board2._status.value == "epoch 1/4 · step 5/10 · loss 0.5 · 00:15 elapsed · ETA 00:25"
    assert board2._progress.value == pytest.approx(0.375)


def test_batch_events_are_throttled_and_epoch_end_catches_up(frontend):
    bus = ev.EventBus()
    board = Dashboard(bus, rate_hz=1e-9)  # at most one redraw per batch burst
    bus.emit(ev.TRAIN_START, epochs=1, batch_size=8, device="cpu", run_dir="r", start_epoch=0)

    def redraws():
        return sum(1 for s in frontend.updates(board.figure) if s.get("_py2js_update"))

    before = redraws()
    for step in range(1, 101):
        bus.emit(ev.TRAIN_BATCH, epoch=0, total_epochs=1, step=step, total_step=100, loss=1.0 / step,
                 losses={}, lr=0.1, time=0.01)
    assert len(board.history.batches) == 100          # every step is recorded...
    assert redraws() - before <= 1                    # ...but the figure was redrawn at most once
    assert len(board.figure.data[0].x or ()) <= 1
    bus.emit(ev.EPOCH_END, epoch=0, train_loss=0.01, metrics={"top1": 0.9}, fitness=0.9, epoch_time=1.0,
             total_time=1.0)
    assert len(board.figure.data[0].x) == 100         # the epoch event shows everything pending


def test_long_runs_are_thinned_for_the_browser(frontend):
    board = Dashboard(max_points=50)
    events = [ev.Event(ev.TRAIN_START, dict(epochs=1, batch_size=1, device="cpu", run_dir="r", start_epoch=0))]
    events += [ev.Event(ev.TRAIN_BATCH, dict(epoch=0, total_epochs=1, step=s, total_step=1000, loss=1.0 / s,
                                             losses={}, lr=0.1, time=0.0)) for s in range(1, 1001)]
    board.replay(events)
    xs = board.figure.data[0].x
    assert len(xs) == 50 and xs[-1] == pytest.approx(1.0) and xs[0] == pytest.approx(0.001)


def test_replay_of_recorded_events_equals_live_view(frontend):
    bus = ev.EventBus()
    rec = ev.Recorder(bus)
    live = Dashboard(bus)
    emit_run(bus, epochs=2, steps=5)
    replayed = Dashboard.from_events(rec.events)
    assert [list(t.y) for t in replayed.figure.data] == [list(t.y) for t in live.figure.data]
    assert replayed._status.value == live._status.value
    assert replayed._info.value == live._info.value
    assert len(replayed._eval.children) == 3


def test_failure_is_shown(frontend):
    bus = ev.EventBus()
    board = Dashboard(bus)
    emit_run(bus, epochs=1, steps=3, end=False, plots=False)
    bus.emit(ev.TRAIN_ERROR, error="DataError: data/x.png: cannot identify image file")
    assert board._progress.bar_style == "danger"
    assert "cannot identify image file" in board._status.value
    assert "training failed" in board._log.value


def test_oom_and_early_stop_are_logged(frontend):
    bus = ev.EventBus()
    board = Dashboard(bus)
    bus.emit(ev.OOM_RETRY, old_batch_size=64, new_batch_size=32, epoch=2)
    bus.emit(ev.EARLY_STOP, epoch=9, best_epoch=4, best_fitness=0.81234, patience=5)
    assert "batch 64 -&gt; 32" in board._log.value
    assert "best fitness 0.8123 at epoch 4" in board._log.value


def test_static_forms_for_reports(frontend):
    bus = ev.EventBus()
    board = Dashboard(bus)
    emit_run(bus, epochs=2, steps=4)
    bundle = board._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == board.model_id
    png = base64.b64decode(bundle["image/png"])
    w, h = _png_size(png)
    assert w > 400 and h > 100
    page = bundle["text/html"]
    assert page.count("<img") == 4  # curves, confusion matrix, PR curve, samples
    assert "done: 2 epochs" in page and "resnet-cifar20" in page
    # points appended after construction are copied into the plotly widget state for late clients
    assert len(board.figure._widget_data[0]["x"]) == 8


def test_refresh_updates_the_displayed_output(frontend, monkeypatch):
    published = []

    class Handle:
        def update(self, obj, raw=False):
            published.append(obj)

    board = Dashboard()
    board.refresh()  # never displayed: nothing to update
    assert published == []
    monkeypatch.setattr(board, "_display_handle", Handle())
    bus = ev.EventBus()
    board.attach(bus)
    emit_run(bus, epochs=1, steps=2)
    assert published and "image/png" in published[-1] and "done: 1 epochs" in published[-1]["text/html"]
    board.detach()
    bus.emit(ev.TRAIN_ERROR, error="late")
    assert board.history.error is None
