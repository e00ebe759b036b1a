"""Time to mAP: YOLOv7-tiny and YOLOv9-t trained from scratch on the built-in shapes data, CPU.

For each model, mAP@0.5 of the validated (EMA) weights after every epoch against the wall-clock
and process CPU minutes since training started.  The baseline in the same run is the recipe's
fixed nominal batch of 64 (``--baseline``): the ratio of the times at which the two reach the
same mAP@0.5 is what the adaptive nominal batch buys.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_detection_learning.py --imgsz 320 --n 300 --minutes 10

Results go to stdout and, with ``--out``, to a JSON file; docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tango_core import events as ev  # noqa: E402
from tango_core.data import make_sample  # noqa: E402
from tango_core.engine.trainer import Trainer  # noqa: E402


class _Stop(Exception):
    """Raised from the epoch callback once the time budget is spent."""


def run(data, model: str, imgsz: int, epochs: int, minutes: float, hyp: dict | None, threads: int,
        run_dir: Path, batch_size: int | str = "auto", clock: str = "wall", seed: int = 0) -> list[dict]:
    bus, curve = ev.EventBus(), []
    wall0, cpu0 = time.perf_counter(), time.process_time()

    def on_epoch(event) -> None:
        p = event.payload
        curve.append({"epoch": p["epoch"], "wall_min": (time.perf_counter() - wall0) / 60,
                      "cpu_min": (time.process_time() - cpu0) / 60, "mAP50": p["metrics"]["mAP50"],
                      "mAP50-95": p["metrics"]["mAP50-95"]})
        print(f"  {model} epoch {p['epoch']}: {curve[-1]['wall_min']:.1f} min, mAP50 {p['metrics']['mAP50']:.3f}",
              flush=True)
        if curve[-1][f"{clock}_min"] > minutes:
            raise _Stop

    bus.subscribe(ev.EPOCH_END, on_epoch)
    try:
        Trainer(data, model, epochs=epochs, imgsz=imgsz, hyp=hyp, events=bus, run_dir=run_dir, loggers=(),
                threads=threads, seed=seed, batch_size=batch_size).fit()
    except _Stop:
        pass
    return curve


def first_reaching(curve: list[dict], level: float) -> float | None:
    return next((c["wall_min"] for c in curve if c["mAP50"] >= level), None)


def compare(base: list[dict], other: list[dict]) -> str:
    """Wall minutes each run took to the highest mAP@0.5 both reached, and their ratio."""
    level = min(max((c["mAP50"] for c in base), default=0.0), max((c["mAP50"] for c in other), default=0.0))
    a, b = first_reaching(base, level), first_reaching(other, level)
    if not level or a is None or b is None:
        return "no common mAP@0.5"
    return f"to mAP@0.5 {level:.3f}: {a:.1f} against {b:.1f} min ({b / a:.2f}x)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["yolov7-tiny", "yolov9-t"])
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--n", type=int, default=300, help="images generated (a fifth is validation)")
    ap.add_argument("--epochs", type=int, default=60, help="the schedule's length")
    ap.add_argument("--minutes", type=float, default=10.0, help="stop each run after this many wall minutes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline", action="store_true", help="also train with the recipe's fixed nbs 64")
    ap.add_argument("--compare", type=json.loads, action="append", default=[], metavar="JSON",
                    help='also train with these hyper-parameters over --hyp, as a baseline in the same run '
                         '(repeatable): --compare \'{"loss_ota": 1}\'')
    ap.add_argument("--hyp", type=json.loads, default=None, help='hyper-parameters over the recipe, JSON: \'{"lr0": 0.02}\'')
    ap.add_argument("--batch", default="auto", help="batch size (default: auto-batch)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="which minutes --minutes counts")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated data and of the training")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = make_sample("shapes", Path(tmp) / "shapes", n=args.n, size=args.imgsz, task="detection",
                           seed=args.seed)
        for model in args.models:
            variants = [("adaptive nbs" if not args.hyp else json.dumps(args.hyp), args.hyp)] + \
                ([("nbs 64", {**(args.hyp or {}), "nbs": 64})] if args.baseline else []) + \
                [(f"compare {json.dumps(c)}", {**(args.hyp or {}), **c}) for c in args.compare]
            for label, hyp in variants:
                print(f"{model} ({label})", flush=True)
                batch = int(args.batch) if str(args.batch).isdigit() else args.batch
                curve = run(data, model, args.imgsz, args.epochs, args.minutes, hyp, args.threads,
                            Path(tmp) / f"{model}-{len(results['runs'])}", batch, args.clock, args.seed)
                row = {"model": model, "variant": label, "curve": curve,
                       "best_mAP50": max((c["mAP50"] for c in curve), default=0.0),
                       "minutes_to_0.5": first_reaching(curve, 0.5), "minutes_to_0.9": first_reaching(curve, 0.9)}
                results["runs"].append(row)
                print(f"  best mAP50 {row['best_mAP50']:.3f}; minutes to 0.5: {row['minutes_to_0.5']}, "
                      f"to 0.9: {row['minutes_to_0.9']}", flush=True)
            base, *others = results["runs"][-len(variants):]
            for row in others:
                print(f"  {row['variant']} against {base['variant']}: {compare(base['curve'], row['curve'])}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
