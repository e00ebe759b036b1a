"""Time to accuracy on the built-in digits sample: wall time until validation top-1 first reaches
the target, measured from the start of ``train()`` (decoding included) with the trainer's events.

    OMP_NUM_THREADS=2 .venv/bin/python bench/time_to_accuracy.py [--target 0.98] [--size 32] [--amp auto]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tango_core import events as ev  # noqa: E402
from tango_core.data import make_sample  # noqa: E402
from tango_core.engine import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=float, default=0.98)
    ap.add_argument("--n-per-class", type=int, default=170)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--mode", default="L", choices=("L", "RGB"))
    ap.add_argument("--model", default="resnet-cifar20")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", default="32")
    ap.add_argument("--amp", default="auto")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ds = make_sample("digits", Path(tmp) / "digits", n_per_class=args.n_per_class, size=args.size,
                         mode=args.mode, seed=0)
        bus = ev.EventBus()
        reached: list[tuple[int, float, float, float]] = []
        t0, c0 = time.perf_counter(), time.process_time()
        bus.subscribe(ev.VAL_END, lambda e: reached.append((e["epoch"], e["fitness"], time.perf_counter() - t0,
                                                            time.process_time() - c0)))
        bus.subscribe(ev.EPOCH_END, lambda e: print(f"  epoch {e['epoch'] + 1}: top1 {e['fitness']:.3f} "
                                                     f"at {time.perf_counter() - t0:.1f}s", flush=True))
        result = train(ds, args.model, epochs=args.epochs, imgsz=args.size, patience=args.epochs, amp=args.amp,
                       batch_size=args.batch if args.batch == "auto" else int(args.batch),
                       run_dir=Path(tmp) / "run", events=bus, hyp={"fliplr": 0.0})
    hit = next((r for r in reached if r[1] >= args.target), None)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(ds)} images "
          f"({args.n_per_class}/class, {args.size}px {args.mode}), {args.model}, batch {result.batch_size}, "
          f"amp {args.amp}")
    if hit:
        print(f"top-1 >= {args.target:.0%} after epoch {hit[0] + 1} at {hit[2]:.1f}s wall, {hit[3]:.1f}s CPU "
              f"(all threads); best {result.best_fitness:.3f}")
    else:
        print(f"top-1 did not reach {args.target:.0%} in {args.epochs} epochs; best {result.best_fitness:.3f}")


if __name__ == "__main__":
    main()
