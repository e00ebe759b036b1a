"""Trials per minute: 2 workers vs 1 on one shared study storage (PostgreSQL by default).

The same HPO study (digits, ResNet-20, no pruning so every trial costs the same) runs three
ways, each on a fresh study: one worker on 1 thread, one worker on 2 threads, two workers
(``tune(workers=2)``: this process and one more) on 1 thread each.  Wall time counts from the
call to its return, worker start-up included.  The ratio 2 workers / 1 worker (1 thread) is the
scaling of the study itself; the 2-thread row shows what one worker gets from the second core.

    OMP_NUM_THREADS=1 .venv/bin/python bench/hpo_workers.py [--trials 16] [--storage sqlite:///x.db]

Without --storage it starts a private PostgreSQL (tests/autonn/autonn_pg_server.py; needs the Debian
postgresql package).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "autonn"))

from tango_core.autonn import tune  # noqa: E402
from tango_core.data import make_sample  # noqa: E402

HYP = {"fliplr": 0.0, "ema": False, "nbs": 32}


def run(data: Path, storage: str, name: str, workers: int, threads: int, args) -> float:
    t0 = time.perf_counter()
    tune(data, args.model, trials=args.trials, epochs=args.epochs, hyp=HYP, imgsz=args.size, batch_size=32,
         storage=storage, study=name, workers=workers, threads=threads, pruner="none", retrain=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet-cifar20")
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--n-per-class", type=int, default=40)
    ap.add_argument("--storage", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tango-bench-workers-"))
    data = make_sample("digits", tmp / "digits", n_per_class=args.n_per_class, size=args.size).root
    server = None
    storage = args.storage
    if storage is None:
        from autonn_pg_server import PostgresServer

        server = PostgresServer()
        storage = server.start()
    try:
        rows = []
        for label, workers, threads in (("1 worker, 1 thread", 1, 1), ("1 worker, 2 threads", 1, 2),
                                        ("2 workers, 1 thread each", 2, 1)):
            seconds = run(data, storage, f"bench-{workers}w{threads}t-{int(time.time())}", workers, threads, args)
            rows.append((label, seconds, args.trials / seconds * 60))
    finally:
        if server is not None:
            server.stop()
    kind = storage.split("://")[0].split("+")[0]
    print(f"{args.trials} trials x {args.epochs} epochs, digits {args.n_per_class}/class at {args.size} px, "
          f"{args.model}, storage {kind}")
    print("| run | wall time | trials per minute | vs 1 worker, 1 thread |")
    print("|---|---|---|---|")
    for label, seconds, tpm in rows:
        print(f"| {label} | {seconds:.1f} s | {tpm:.2f} | {tpm / rows[0][2]:.2f}x |")


if __name__ == "__main__":
    main()
