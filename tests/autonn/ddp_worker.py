"""Run by torchrun in test_ddp.py: the engine's Trainer under DDP, two gloo processes on CPU.

Every process records which training images it was given (per epoch), which files it created or
wrote under the output folder, how many events it emitted, and how far its final state (model
parameters and buffers, EMA, optimiser momentum) is from rank 0's.  Four runs on quadrant_data:

- ``resnet``: resnet-cifar20 (batch norm, EMA, augmentation), 2 epochs, global batch 16;
- ``linear``: a linear model without batch norm, global batch 16 of 75 images (the last batch's
  parts differ by an image) with nbs 32 (two batches per step): test_ddp.py trains one process
  with the same global batch and compares losses and weights;
- ``resume``: ``linear`` interrupted at the start of its second epoch, then resumed from last.pt;
- ``stop``: nothing learnt (lr 1e-9) and patience 1: rank 0's early stop ends both processes.

Writes rank<k>.json to the folder in argv.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "engine")]

from engine_data import quadrant_data  # noqa: E402

from tango_core import events as ev  # noqa: E402
from tango_core.engine import Trainer  # noqa: E402
from tango_core.engine import _ddp as ddp  # noqa: E402
from tango_core.engine.tasks import Task  # noqa: E402

LINEAR = "test-ddp-linear"
LINEAR_DATA = dict(n_train=75, n_val=16, size=8)
LINEAR_ARGS = dict(epochs=2, batch_size=16, imgsz=8, amp="off", seed=3, channels_last=False, device="cpu",
                   hyp={"nbs": 32, "lr0": 0.05, "hsv_v": 0.2, "flipud": 0.5})


def register_linear() -> None:
    """A model without batch norm, whose DDP training must equal one process's (test_ddp.py too)."""
    from tango_core.models import _registry

    if LINEAR in _registry._MODELS._entries:
        return

    @_registry.register_model(LINEAR, task="classification", family="test", size="tiny", input_size=8,
                              num_classes=4, params=0, flops=0, source="test")
    def build(num_classes=4, in_channels=3, **_):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 8 * 8, num_classes))


class Interrupted(Exception):
    pass


class Probe:
    """What this process did: the images of each epoch, the files it wrote, the events it emitted."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.epochs: list[list[list[int]]] = []
        self.writes: list[str] = []
        self.recording = False
        self.interrupt_at: int | None = None  # raise at the start of this epoch (counted from the run's start)
        original = Task.shard_batches
        probe = self

        def shard_batches(task, order, batch_size):
            if probe.interrupt_at is not None and len(probe.epochs) == probe.interrupt_at:
                raise Interrupted("stopped on purpose, to resume")
            parts: list[list[int]] = []
            probe.epochs.append(parts)
            for i, batch, mine in original(task, order, batch_size):
                parts.append(batch[mine].tolist())
                yield i, batch, mine

        Task.shard_batches = shard_batches
        sys.addaudithook(self._audit)

    def _audit(self, event: str, args: tuple) -> None:
        if not self.recording or event not in ("open", "os.rename", "os.mkdir", "os.remove"):
            return
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
                flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if not writing:
                return
        else:
            path = args[1] if event == "os.rename" else args[0]
        if isinstance(path, (str, os.PathLike)) and str(path).startswith(self.root):
            self.writes.append(os.path.relpath(str(path), self.root))

    def start(self) -> None:
        self.epochs, self.writes, self.recording = [], [], True

    def stop(self) -> dict:
        self.recording = False
        return {"epochs": self.epochs, "writes": sorted(set(self.writes))}


def state_vector(trainer: Trainer) -> torch.Tensor:
    """Model parameters and buffers, EMA, optimiser momentum: everything that must agree."""
    parts = [v.detach().double().reshape(-1) for v in trainer.model.state_dict().values()]
    if trainer.ema is not None:
        parts += [v.detach().double().reshape(-1) for v in trainer.ema.module.state_dict().values()]
    for state in trainer.optimizer.state.values():
        parts += [v.detach().double().reshape(-1) for v in state.values() if isinstance(v, torch.Tensor)]
    return torch.cat(parts)


def max_diff_to_rank0(trainer: Trainer) -> float:
    mine = state_vector(trainer)
    everyone = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(everyone, mine)
    return float((mine - everyone[0]).abs().max())


def run(probe: Probe, name: str, data: dict, model: str, out: Path, interrupt_at: int | None = None,
        resume: Path | None = None, **kwargs) -> dict:
    bus = ev.EventBus()
    recorder = ev.Recorder(bus)
    probe.interrupt_at = interrupt_at
    probe.start()
    report: dict = {}
    try:
        if resume is not None:
            trainer = Trainer(data, resume=resume, events=bus, device="cpu", loggers=("csv",))
        else:
            trainer = Trainer(data, model, run_dir=out / name, events=bus, loggers=("csv",), **kwargs)
        result = trainer.fit()
        report.update(best=str(result.best), metrics=result.metrics, epochs_run=result.epochs_run,
                      stopped_early=result.stopped_early, batch_size=result.batch_size,
                      best_fitness=result.best_fitness, history_fitness=[h["fitness"] for h in result.history])
    except Interrupted:
        report["interrupted"] = True
    probe.interrupt_at = None
    report.update(probe.stop())
    report.update(events=len(recorder.events), names=recorder.names(),
                  losses=[e["loss"] for e in recorder.of(ev.TRAIN_BATCH)],
                  world=trainer.ctx.world_size, backend=trainer.ctx.backend,
                  per_process_batch=[len(b) for b in report["epochs"][0]] if report["epochs"] else [])
    if "interrupted" not in report:
        report["max_diff_to_rank0"] = max_diff_to_rank0(trainer)
    return report


def main(out: Path) -> None:
    torch.set_num_threads(1)
    ctx = ddp.setup(device="cpu")  # gloo; the trainers join this group (and leave it to us)
    register_linear()
    probe = Probe(out)
    reports = {
        "resnet": run(probe, "resnet", quadrant_data(n_train=64, n_val=16, size=16), "resnet-cifar20", out,
                      epochs=2, batch_size=16, imgsz=16, amp="off", device="cpu", hyp={"nbs": 16}),
        "linear": run(probe, "linear", quadrant_data(**LINEAR_DATA), LINEAR, out, **LINEAR_ARGS),
        "interrupted": run(probe, "resume", quadrant_data(**LINEAR_DATA), LINEAR, out, interrupt_at=1,
                           **LINEAR_ARGS),
    }
    dist.barrier()  # rank 0 wrote last.pt before the interruption reached anyone
    reports["resume"] = run(probe, "resume", quadrant_data(**LINEAR_DATA), LINEAR, out,
                            resume=out / "resume" / "weights" / "last.pt")
    reports["stop"] = run(probe, "stop", quadrant_data(**LINEAR_DATA), LINEAR, out,
                          **dict(LINEAR_ARGS, epochs=4, patience=1, hyp={"lr0": 1e-9, "warmup_epochs": 0}))
    (out / f"rank{ctx.rank}.json").write_text(json.dumps({"rank": ctx.rank, "runs": reports}))
    ddp.cleanup(ctx)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
