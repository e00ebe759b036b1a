"""The trainer's events: order, documented fields, values that agree with each other and the files."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from tango_core import events as ev
from tango_core.engine import Trainer, train
from tango_core.events import EventBus, Recorder
from tango_core.models.weights import read_weights


def _run(data, tmp_path, **kw):
    bus = EventBus()
    rec = Recorder(bus)
    args = dict(epochs=2, batch_size=16, imgsz=16, run_dir=tmp_path / "run", events=bus, amp="off",
                hyp={"fliplr": 0.0})
    args.update(kw)
    result = train(data, "resnet-cifar20", **args)
    return result, rec


def test_events_in_order_with_documented_fields(quadrants, tmp_path):
    result, rec = _run(quadrants, tmp_path)
    names = rec.names()
    # every event carries its documented fields (emit checks presence; here also that nothing is None)
    for e in rec.events:
        for f in ev.EVENT_FIELDS[e.name][1]:
            assert e.payload[f] is not None, (e.name, f)
    head = [ev.SYSTEM_INFO, ev.DATASET_SUMMARY, ev.DATASET_SUMMARY, ev.MODEL_SUMMARY, ev.TRAIN_START]
    assert names[:5] == head
    nb = 96 // 16
    epoch_block = [ev.EPOCH_START] + [ev.TRAIN_BATCH] * nb + [ev.VAL_END, ev.EPOCH_END]
    assert names[5:5 + len(epoch_block)] == epoch_block
    assert names[-2:] == [ev.VAL_PLOTS, ev.TRAIN_END]
    assert names.count(ev.EPOCH_END) == 2 and ev.TRAIN_ERROR not in names

    batches = rec.of(ev.TRAIN_BATCH)
    assert [(b["epoch"], b["step"]) for b in batches] == [(e, s) for e in range(2) for s in range(1, nb + 1)]
    assert all(b["total_step"] == nb and b["total_epochs"] == 2 and math.isfinite(b["loss"]) for b in batches)
    assert [b["global_step"] for b in batches] == list(range(1, 2 * nb + 1))
    times = [b["time"] for b in batches]
    assert times == sorted(times)
    lrs = [b["lr"] for b in batches]  # warm-up over the first epoch: the weights' lr rises from 0
    assert lrs[0] == 0.0 and lrs[nb - 1] > lrs[0]

    model = rec.of(ev.MODEL_SUMMARY)[0]
    assert model["name"] == "resnet-cifar20" and model["parameters"] == model["gradients"] > 250_000
    assert model["flops"] > 0 and model["num_classes"] == 4
    summaries = {e["split"]: e.payload for e in rec.of(ev.DATASET_SUMMARY)}
    assert summaries["train"]["found"] == 96 and summaries["val"]["found"] == 32
    assert summaries["train"]["classes"] == {c: 24 for c in quadrants["classes"]}

    ends = rec.of(ev.EPOCH_END)
    vals = rec.of(ev.VAL_END)
    assert [e["fitness"] for e in ends] == [v["fitness"] for v in vals]
    assert all(v["metrics"]["top1"] == v["fitness"] for v in vals)
    checkpoints = [(c["kind"], c["epoch"]) for c in rec.of(ev.CHECKPOINT)]
    assert ("last", 0) in checkpoints and ("last", 1) in checkpoints
    best_epoch = max(range(2), key=lambda i: (ends[i]["fitness"], -i))
    assert ("best", best_epoch) in checkpoints

    end = rec.of(ev.TRAIN_END)[0]
    assert end["best_model"] == str(result.best) and end["size_bytes"] == result.best.stat().st_size
    assert end["epochs_run"] == 2 and end["best_fitness"] == result.best_fitness == max(e["fitness"] for e in ends)
    plots = rec.of(ev.VAL_PLOTS)[0]
    cm = torch.tensor(plots["confusion_matrix"])
    assert cm.shape == (4, 4) and cm.sum() == 32 and plots["class_names"] == quadrants["classes"]
    assert cm.diag().sum() / 32 == pytest.approx(result.metrics["top1"])

    run = tmp_path / "run"
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert float(rows[1]["top1"]) == pytest.approx(ends[1]["metrics"]["top1"])
    assert (run / "args.yaml").is_file() and (run / "hyp.yaml").is_file()
    best = read_weights(result.best)
    assert best["model"] == "resnet-cifar20" and best["classes"] == quadrants["classes"] and best["imgsz"] == 16
    assert best["epoch"] == result.best_epoch and "train_state" not in best
    assert "train_state" in read_weights(result.last)


def test_auto_batch_fits_the_budget(quadrants, tmp_path):
    bus = EventBus()
    rec = Recorder(bus)
    trainer = Trainer(quadrants, "resnet-cifar20", epochs=1, batch_size="auto", imgsz=16, run_dir=tmp_path / "r",
                      events=bus, amp="off", memory_budget_bytes=40 * 2**20, loggers=())
    result = trainer.fit()
    auto = rec.of(ev.AUTOBATCH)[0]
    b = auto["batch_size"]
    assert b == result.batch_size and b & (b - 1) == 0  # a power of two
    assert auto["estimate_bytes"] <= auto["budget_bytes"] == 40 * 2**20
    # the next power of two would not fit (or the cap, a quarter of the training set, stopped it)
    doubled = 1.25 * (auto["fixed_bytes"] + auto["per_sample_bytes"] * 2 * b)
    assert doubled > auto["budget_bytes"] or 2 * b > auto["cap"]
    assert rec.names().index(ev.AUTOBATCH) < rec.names().index(ev.TRAIN_START)


def test_train_error_event_and_clear_config_errors(quadrants, tmp_path):
    bus = EventBus()
    rec = Recorder(bus)
    with pytest.raises(Exception, match="resnet-cifar21"):
        train(quadrants, "resnet-cifar21", epochs=1, run_dir=tmp_path / "x", events=bus)
    assert rec.names()[-1] == ev.TRAIN_ERROR and "resnet-cifar21" in rec.events[-1]["error"]
    from tango_core.errors import ConfigError

    with pytest.raises(ConfigError, match="learning_type"):
        train(quadrants, epochs=1, learning_type="fancy")
    with pytest.raises(ConfigError, match="weights"):
        train(quadrants, epochs=1, learning_type="transfer")
    with pytest.raises(ConfigError, match="batch_size"):
        train(quadrants, epochs=1, batch_size=1)
