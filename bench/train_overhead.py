"""Training throughput of tango's trainer against a bare PyTorch loop doing the same work.

Same model (ResNet-20), data (synthetic 32x32 RGB, cached uint8), batch (128), augmentation
(shift + flip), optimiser (SGD Nesterov), precision and memory format; EMA off in both, validation
excluded.  Rounds alternate bare / trainer so that load from other processes hits both alike; the
ratio of the median images/s is what counts (1.00 = no overhead).

    OMP_NUM_THREADS=2 .venv/bin/python bench/train_overhead.py [--rounds 3] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
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
    """What a person writes by hand: shuffle, augment, forward, loss, backward, step."""
    torch.manual_seed(0)
    model = create_model("resnet-cifar20").to(memory_format=torch.channels_last)  # as the trainer does
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    aug = BatchAugment(3, SIZE, {"translate": 0.125, "fliplr": 0.5, "flipud": 0.0, "hsv_v": 0.0})
    x_all, y_all = data["train"]
    rates = []
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(epoch)
        order = torch.randperm(len(y_all), generator=g)
        t = time.perf_counter()
        for i in range(len(y_all) // BATCH):
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
        rates.append(len(y_all) / (time.perf_counter() - t))
    return rates


def trainer_run(data: dict, epochs: int, amp: str, ema: bool = False) -> list[float]:
    bus = ev.EventBus()
    marks: dict[int, list[float]] = {}
    bus.subscribe(ev.EPOCH_START, lambda e: marks.setdefault(e["epoch"], [time.perf_counter()]))
    bus.subscribe(ev.TRAIN_BATCH, lambda e: e["step"] == e["total_step"] and marks[e["epoch"]].append(
        time.perf_counter()))
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(data, "resnet-cifar20", epochs=epochs, batch_size=BATCH, imgsz=SIZE, hyp=dict(HYP, ema=ema),
                run_dir=Path(tmp) / "run", events=bus, amp=amp, loggers=("csv",)).fit()
    n = len(data["train"][1])
    # from EPOCH_START to the last TRAIN_BATCH: the training steps, without validation
    return [n / (t1 - t0) for t0, t1 in (marks[e] for e in sorted(marks))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    data = make_data(args.steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}")
    for amp, dtype in (("off", None), ("bf16", torch.bfloat16)):
        bare, ours = [], []
        for _ in range(args.rounds):  # the first epoch of each run warms oneDNN's kernel caches: dropped
            bare += bare_loop(data, 3, dtype)[1:]
            ours += trainer_run(data, 3, amp)[1:]
        b, o = statistics.median(bare), statistics.median(ours)
        print(f"{amp:5s} bare {b:7.1f} img/s  trainer {o:7.1f} img/s  ratio {o / b:.3f}  "
              f"(bare {min(bare):.0f}-{max(bare):.0f}, trainer {min(ours):.0f}-{max(ours):.0f})", flush=True)


if __name__ == "__main__":
    main()
