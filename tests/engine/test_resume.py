"""Exact resume: a run killed with SIGKILL mid-epoch continues from last.pt and repeats the
uninterrupted run's next steps bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from engine_data import quadrant_data

from tango_core import events as ev
from tango_core.engine import Trainer
from tango_core.events import EventBus, Recorder

ROOT = Path(__file__).resolve().parents[2]
ARGS = dict(epochs=3, batch_size=16, imgsz=16, amp="off", seed=3, threads=1, hyp={"fliplr": 0.5, "translate": 0.125})

CHILD = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{root!r}, {tests!r}]
    from tango_core import events as ev
    from tango_core.engine import Trainer
    from tango_core.events import EventBus
    from engine_data import quadrant_data

    bus = EventBus()
    def stop_here(e):
        if e["epoch"] == 1 and e["step"] == 3:  # mid-way through the second epoch
            print("KILL ME", flush=True)
            time.sleep(600)
    bus.subscribe(ev.TRAIN_BATCH, stop_here)
    Trainer(quadrant_data(), "resnet-cifar20", run_dir={run!r}, events=bus, **{args!r}).fit()
""")


@pytest.mark.slow
def test_resume_after_sigkill_repeats_the_next_steps(tmp_path):
    run = tmp_path / "killed"
    script = CHILD.format(root=str(ROOT), tests=str(Path(__file__).parent), run=str(run), args=ARGS)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ))
    try:
        line = child.stdout.readline()
        assert line.strip() == "KILL ME", child.stderr.read()
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    last = run / "weights" / "last.pt"
    assert last.is_file()

    ref_bus = EventBus()
    ref = Recorder(ref_bus)
    reference = Trainer(quadrant_data(), "resnet-cifar20", run_dir=tmp_path / "reference", events=ref_bus,
                        loggers=(), **ARGS).fit()

    bus = EventBus()
    resumed_events = Recorder(bus)
    resumed = Trainer(quadrant_data(), resume=str(last), events=bus).fit()

    start = resumed_events.of(ev.TRAIN_START)[0]
    assert start["start_epoch"] == 1 and start["resumed"] is True
    ref_losses = [(e["epoch"], e["step"], e["loss"]) for e in ref.of(ev.TRAIN_BATCH) if e["epoch"] >= 1]
    got = [(e["epoch"], e["step"], e["loss"]) for e in resumed_events.of(ev.TRAIN_BATCH)]
    assert got[0] == ref_losses[0]  # the very next step after the checkpoint, exactly
    assert got == ref_losses
    assert resumed.best_fitness == reference.best_fitness
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert [h["fitness"] for h in resumed.history] == [h["fitness"] for h in reference.history]
    rows = (run / "results.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]  # no epoch twice after the resume


def test_resume_needs_a_training_checkpoint(tmp_path, quadrants):
    from tango_core.errors import ConfigError, DataError
    from tango_core.models import create_model
    from tango_core.models.weights import save_weights

    path = save_weights(create_model("resnet-cifar20"), tmp_path / "w.pt")
    with pytest.raises(DataError, match="w.pt.*not a training state"):
        Trainer(quadrants, resume=str(path))
    with pytest.raises(ConfigError, match="resume"):
        Trainer(quadrants, resume=True)
