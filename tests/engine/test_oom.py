"""Out of memory: the trainer shrinks the batch, goes back to the last checkpoint and carries on."""

from __future__ import annotations

import pytest
import torch

from tango_core import events as ev
from tango_core.engine import Trainer
from tango_core.engine._autobatch import SAFETY, OutOfMemory, choose_batch, fit_line, is_oom_error
from tango_core.events import EventBus, Recorder


def test_memory_shrinking_mid_run_retries_from_the_last_checkpoint_with_a_smaller_batch(quadrants, tmp_path):
    bus = EventBus()
    rec = Recorder(bus)
    trainer = Trainer(quadrants, "resnet-cifar20", epochs=3, batch_size=32, imgsz=16, run_dir=tmp_path / "r",
                      events=bus, amp="off", loggers=("csv",))

    def squeeze(event):  # after epoch 0, other work takes memory: batch 32 no longer fits, 16 does
        if event["epoch"] == 0 and trainer.batch_size == 32:
            trainer.memory_budget_bytes = int(SAFETY * (trainer.fixed_bytes + 0.7 * trainer.step_bytes))

    bus.subscribe(ev.EPOCH_END, squeeze)
    result = trainer.fit()

    retry = rec.of(ev.OOM_RETRY)
    assert len(retry) == 1
    assert (retry[0]["old_batch_size"], retry[0]["new_batch_size"], retry[0]["epoch"]) == (32, 16, 1)
    assert retry[0]["resume_from"].endswith("last.pt")
    names = rec.names()
    i = names.index(ev.OOM_RETRY)
    # epoch 1 started at batch 32, its first (measured) step did not fit, and it ran again at 16
    assert names[i - 2:i + 2] == [ev.CHECKPOINT, ev.EPOCH_START, ev.OOM_RETRY, ev.EPOCH_START]
    starts = [(e["epoch"], e["batch_size"]) for e in rec.of(ev.EPOCH_START)]
    assert starts == [(0, 32), (1, 32), (1, 16), (2, 16)]
    sizes = sorted({(e["epoch"], e["batch_size"]) for e in rec.of(ev.TRAIN_BATCH)})
    assert sizes == [(0, 32), (1, 16), (2, 16)]
    assert [b["step"] for b in rec.of(ev.TRAIN_BATCH) if b["epoch"] == 1 and b["batch_size"] == 16][-1] == 6
    assert result.batch_size == 16 and [h["epoch"] for h in result.history] == [0, 1, 2]
    assert [h["batch_size"] for h in result.history] == [32, 16, 16]
    assert ev.TRAIN_END in names and ev.TRAIN_ERROR not in names
    rows = (tmp_path / "r" / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 4


def test_oom_in_the_first_epoch_restarts_from_the_initial_state(quadrants, tmp_path):
    bus = EventBus()
    rec = Recorder(bus)
    # a budget below batch 64's need but above batch 16's: two retries before the first checkpoint
    probe = Trainer(quadrants, "resnet-cifar20", epochs=1, batch_size=16, imgsz=16, run_dir=tmp_path / "p",
                    amp="off", loggers=())
    probe.fit()
    budget = int(SAFETY * (probe.fixed_bytes + 1.5 * probe.step_bytes))
    trainer = Trainer(quadrants, "resnet-cifar20", epochs=1, batch_size=64, imgsz=16, run_dir=tmp_path / "r",
                      events=bus, amp="off", memory_budget_bytes=budget, loggers=())
    result = trainer.fit()
    retries = [(e["old_batch_size"], e["new_batch_size"], e["resume_from"]) for e in rec.of(ev.OOM_RETRY)]
    assert retries == [(64, 32, "start"), (32, 16, "start")]
    assert result.batch_size == 16 and result.epochs_run == 1
    # back at the start really is the start: the retried run is the run that began at batch 16
    last_retry = max(i for i, e in enumerate(rec.events) if e.name == ev.OOM_RETRY)
    retried = [e["loss"] for e in rec.events[last_retry:] if e.name == ev.TRAIN_BATCH]
    direct_bus = EventBus()
    direct = Recorder(direct_bus)
    Trainer(quadrants, "resnet-cifar20", epochs=1, batch_size=16, imgsz=16, run_dir=tmp_path / "d",
            events=direct_bus, amp="off", loggers=()).fit()
    assert retried == [e["loss"] for e in direct.of(ev.TRAIN_BATCH)]


def test_when_even_the_smallest_batch_does_not_fit_the_error_says_what_to_do(quadrants, tmp_path):
    bus = EventBus()
    rec = Recorder(bus)
    with pytest.raises(OutOfMemory, match="smallest batch"):
        Trainer(quadrants, "resnet-cifar20", epochs=1, batch_size="auto", imgsz=16, run_dir=tmp_path / "r",
                events=bus, amp="off", memory_budget_bytes=2**20, loggers=()).fit()
    assert rec.names()[-1] == ev.TRAIN_ERROR


def test_torch_out_of_memory_errors_are_recognised():
    assert is_oom_error(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"))
    assert is_oom_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_oom_error(OutOfMemory(8, 10, 5))
    assert not is_oom_error(RuntimeError("shape mismatch"))


def test_batch_choice_is_the_largest_power_of_two_under_the_budget():
    intercept, slope = fit_line([2, 4, 8], [2_000 + 2 * 1_000, 2_000 + 4 * 1_000, 2_000 + 8 * 1_000])
    assert (intercept, slope) == pytest.approx((2_000, 1_000))
    budget = int(SAFETY * (10_000 + 2_000 + 50 * 1_000))
    choice = choose_batch(10_000, intercept, slope, budget, max_batch=256)
    assert choice["fits"] == 50 and choice["batch_size"] == 32
    assert choose_batch(10_000, intercept, slope, budget, max_batch=16)["batch_size"] == 16
    assert choose_batch(10_000, intercept, slope, 1_000, max_batch=16)["fits"] == 0
