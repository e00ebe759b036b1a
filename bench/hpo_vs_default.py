"""Does HPO find better hyper-parameters than the engine's defaults, at the same compute budget?

Digits sample (a held-out test split that neither the search nor the training sees), ResNet-20.
Three arms, each over several seeds, scored by accuracy on the test split:

* default, short   — the engine's defaults, trained ``final`` epochs;
* default, budget  — the engine's defaults, trained for as many epochs as the HPO arm spent (the
  epochs its trials ran, pruned ones stopping early, plus the final training): what the compute
  spent on HPO would buy by training longer instead;
* HPO              — ``trials`` trials of ``trial_epochs`` (TPE, median pruning; trial 0 = the
  defaults), then the best hyp trained ``final`` epochs.

    OMP_NUM_THREADS=1 .venv/bin/python bench/hpo_vs_default.py [--trials 12] [--trial-epochs 3] [--final 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tango_core import events as ev  # noqa: E402
from tango_core.autonn import tune  # noqa: E402
from tango_core.data import make_sample  # noqa: E402
from tango_core.engine import Predictor, train  # noqa: E402

FIXED = {"fliplr": 0.0}  # digits must not be mirrored; everything else is the engine's default


def test_accuracy(weights: Path, ds) -> float:
    recs = [r for r in ds.records if r.split == "test"]
    preds = Predictor(weights)([ds.image_path(r) for r in recs])
    return sum(p.name == ds.classes[r.label] for p, r in zip(preds, recs, strict=True)) / len(recs)


def arm(ds, hyp: dict, epochs: int, seeds: list[int], out: Path, args) -> tuple[list[float], float]:
    accs, t0 = [], time.perf_counter()
    for seed in seeds:
        r = train(ds, args.model, epochs=epochs, hyp=hyp, imgsz=args.size, batch_size=args.batch, seed=seed,
                  run_dir=out / f"seed{seed}", loggers=(), threads=args.threads)
        accs.append(test_accuracy(r.best, ds))
    return accs, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet-cifar20")
    ap.add_argument("--n-per-class", type=int, default=80)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--trial-epochs", type=int, default=3)
    ap.add_argument("--final", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tango-bench-hpo-"))
    ds = make_sample("digits", tmp / "digits", n_per_class=args.n_per_class, size=args.size, val=0.2, test=0.25)
    seeds = list(range(args.seeds))

    bus = ev.EventBus()
    rec = ev.Recorder(bus, ev.TRIAL_REPORT)
    t0 = time.perf_counter()
    result = tune(ds.root, args.model, trials=args.trials, epochs=args.trial_epochs, hyp=FIXED, imgsz=args.size,
                  batch_size=args.batch, storage=tmp / "hpo.db", retrain=False, events=bus, threads=args.threads)
    t_search = time.perf_counter() - t0
    searched_epochs = len(rec.events)  # epochs the trials ran (pruned trials stop early)
    budget = searched_epochs + args.final  # what the HPO arm spent per seed, in epochs
    tuned, t_tuned = arm(ds, result.best_hyp, args.final, seeds, tmp / "hpo_final", args)
    short, t_short = arm(ds, FIXED, args.final, seeds, tmp / "default_short", args)
    long, t_long = arm(ds, FIXED, budget, seeds, tmp / "default_budget", args)

    def row(name: str, epochs: int, accs: list[float], seconds: float) -> str:
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        return f"| {name} | {epochs} | {statistics.mean(accs):.3f} ± {sd:.3f} | {seconds / len(accs):.0f} s |"

    states = [t["state"] for t in result.trials]
    print(f"digits {args.n_per_class}/class at {args.size} px, {args.model}, batch {args.batch}, seeds {seeds}, "
          f"test split {sum(r.split == 'test' for r in ds.records)} images")
    print(f"search: {args.trials} trials x {args.trial_epochs} epochs ({searched_epochs} epochs run, "
          f"{states.count('pruned')} pruned) in {t_search:.0f} s; default trial {result.default_value:.3f}, "
          f"best trial {result.best_trial} {result.best_value:.3f}")
    print(f"best hyp: { {k: round(v, 5) if isinstance(v, float) else v for k, v in result.best_params.items()} }")
    print("| arm | epochs per seed | test accuracy (mean ± sd) | time per seed |")
    print("|---|---|---|---|")
    print(row("default hyp, short", args.final, short, t_short))
    print(row("default hyp, whole budget", budget, long, t_long))
    print(row(f"HPO ({searched_epochs} search epochs) + best hyp, short", searched_epochs + args.final, tuned,
              t_tuned + t_search * len(seeds)))  # per seed: its final training plus the search


if __name__ == "__main__":
    main()
