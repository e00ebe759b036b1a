"""Training throughput of tango's trainer against a bare PyTorch loop doing the same work.

Same model (ResNet-20), data (synthetic 32x32 RGB, cached uint8), batch (128), augmentation
(shift + flip), optimiser (SGD Nesterov), precision and memory format; EMA off in both, validation
excluded.  Rounds alternate bare / trainer so that load from other processes hits both alike; the
ratio of the median images/s is what counts (1.00 = no overhead).

``--clock cpu`` times steps with the process's CPU time instead of the wall clock: on a machine
shared with other work, CPU time counts the work done and not the time other processes held the
cores (use one thread, so that no OpenMP thread spins while it waits for another).

    OMP_NUM_THREADS=1 .venv/bin/python bench/train_overhead.py [--rounds 4] [--steps 10] [--clock cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tango_core import events as ev  # noqa: E402
from tango_core.engine import Trainer  # noqa: E402
from tango_core.engine.tasks._cls_data import BatchAugment  # noqa: E402
from tango_core.models import create_model  # noqa: E402

BATCH, SIZE, CLASSES = 128, 32, 10
clock = time.perf_counter
HYP = {"ema": False, "warmup_epochs": 0.0, "fliplr": 0.5, "translate": 0.125, "nbs": BATCH}


def make_data(steps: int) -> dict:
    g = torch.Generator().manual_seed(0)
    n = steps * BATCH
    return {"train": (torch.randint(0, 256, (n, 3, SIZE, SIZE), generator=g, dtype=torch.uint8),
                      torch.randint(0, CLASSES, (n,), generator=g)),
            "val": (torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), generator=g, dtype=torch.uint8),
                    torch.randint(0, CLASSES, (BATCH,), generator=g)),
            "classes": [str(i) for i in range(CLASSES)]}


def bare_loop(data: dict, epochs: int, dtype: torch.dtype | None) -> list[float]:
    """What a person writes by hand: shuffle, augment, forward, loss, backward, step.  Returns the
    seconds of every step after the first epoch (which warms oneDNN's kernel caches)."""
    torch.manual_seed(0)
    model = create_model("resnet-cifar20").to(memory_format=torch.channels_last)  # as the trainer does
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    aug = BatchAugment(3, SIZE, {"translate": 0.125, "fliplr": 0.5, "flipud": 0.0, "hsv_v": 0.0})
    x_all, y_all = data["train"]
    steps = []
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(epoch)
        order = torch.randperm(len(y_all), generator=g)
        for i in range(len(y_all) // BATCH):
            t = clock()
            idx = order[i * BATCH:(i + 1) * BATCH]
            x, y = aug(x_all[idx], g), y_all[idx]
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss.item()
            if epoch:
                steps.append(clock() - t)
    return steps


def trainer_run(data: dict, epochs: int, amp: str, ema: bool = False) -> list[float]:
    """Seconds of every trainer step after the first epoch: from one TRAIN_BATCH event (or the
    EPOCH_START) to the next, so event handling and the per-epoch memory check are included."""
    bus = ev.EventBus()
    stamps: dict[int, list[float]] = {}
    bus.subscribe(ev.EPOCH_START, lambda e: stamps.setdefault(e["epoch"], []).append(clock()))
    bus.subscribe(ev.TRAIN_BATCH, lambda e: stamps[e["epoch"]].append(clock()))
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(data, "resnet-cifar20", epochs=epochs, batch_size=BATCH, imgsz=SIZE, hyp=dict(HYP, ema=ema),
                run_dir=Path(tmp) / "run", events=bus, amp=amp, loggers=("csv",)).fit()
    return [b - a for e in sorted(stamps) if e for a, b in zip(stamps[e], stamps[e][1:], strict=False)]


def _q(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(int(q * len(xs)), len(xs) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--ema", action="store_true", help="EMA on in the trainer (the bare loop has none)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = ap.parse_args()
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    data = make_data(args.steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}, "
          f"batch {BATCH}, {SIZE}px, {args.rounds} rounds x {args.steps} steps, {args.clock} clock")
    for amp, dtype in (("off", None), ("bf16", torch.bfloat16)):
        bare, ours = [], []
        for _ in range(args.rounds):  # alternating, so that load from other processes hits both alike
            bare += bare_loop(data, 2, dtype)
            ours += trainer_run(data, 2, amp, args.ema)
        line = [f"{amp:5s}"]
        for name, q in (("median", 0.5), ("p20", 0.2), ("min", 0.0)):
            b, o = _q(bare, q), _q(ours, q)
            line.append(f"{name}: bare {BATCH / b:6.1f} img/s, trainer {BATCH / o:6.1f} img/s, ratio {b / o:.3f}")
        print("  |  ".join(line), flush=True)


if __name__ == "__main__":
    main()
