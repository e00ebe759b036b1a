"""The NAS Pareto front against the base model: accuracy and measured latency on this CPU.

Digits sample, ResNet-CIFAR-20 as the base, target x86-cpu (ONNX Runtime, 1 thread), NSGA-II;
each candidate trained a few epochs, exported, verified and timed.  The base model is trial 0 of
the same study, trained and timed the same way, so every ratio is against a baseline measured in
the same run.  The latency predictor's error on held-out candidates is reported as well.

    OMP_NUM_THREADS=1 .venv/bin/python bench/nas_pareto.py [--trials 16] [--epochs 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tango_core.autonn import search  # noqa: E402
from tango_core.data import make_sample  # noqa: E402

HYP = {"fliplr": 0.0, "ema": False, "nbs": 32}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet-cifar20")
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--n-per-class", type=int, default=60)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tango-bench-nas-"))
    data = make_sample("digits", tmp / "digits", n_per_class=args.n_per_class, size=args.size).root
    t0 = time.perf_counter()
    r = search(data, args.model, trials=args.trials, epochs=args.epochs, imgsz=args.size, batch_size=32, hyp=HYP,
               storage=tmp / "nas.db", threads=1)
    seconds = time.perf_counter() - t0
    base = r.base_candidate
    print(f"{args.trials} candidates x {args.epochs} epochs, digits {args.n_per_class}/class at {args.size} px, "
          f"base {args.model}, target {r.target} ({r.runtime}, 1 thread), {seconds:.0f} s")
    print("| trial | architecture | top-1 | latency (ms) | params | top-1 vs base | speed-up vs base |")
    print("|---|---|---|---|---|---|---|")
    shown = sorted({c.trial: c for c in [*r.front, base]}.values(), key=lambda c: c.latency_ms)
    for c in shown:
        tag = (" (base)" if c.is_base else "") + ("" if c in r.front else " (not on the front)")
        print(f"| {c.trial}{tag} | {c.describe} | {c.accuracy:.3f} | {c.latency_ms:.3f} | {c.params:,} | "
              f"{c.accuracy - base.accuracy:+.3f} | {base.latency_ms / c.latency_ms:.2f}x |")
    better = [c for c in r.front if not c.is_base and c.accuracy >= base.accuracy and c.latency_ms < base.latency_ms]
    print(f"front points at least as accurate as the base and faster: {[c.trial for c in better]}")
    if r.predictor_error:
        e = r.predictor_error
        print(f"latency predictor: mean error {e['mape']:.1%}, max {e['max_ape']:.1%} on {e['held_out']} held-out "
              f"candidates (fitted on {e['fitted_on']})")


if __name__ == "__main__":
    main()
