"""A study worker: ``python -m tango_core.autonn._worker --storage URL --study NAME``.

It reads everything else (data, model, space, budget) from the study itself, so the same command
joins a study from any machine that sees the storage and the data.  ``tune(workers=N)`` starts
N - 1 of these beside itself; ``tango tune --join`` runs one in the foreground.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .. import events as ev
from ..errors import ConfigError

_ROOT = Path(__file__).resolve().parents[2]  # the folder holding tango_core (for an uninstalled checkout)


def objective_for(spec: dict[str, Any], bus: ev.EventBus, threads: int | None, data: Any = None):
    """The objective of a stored study: HPO trains with sampled hyp, NAS with a sampled architecture."""
    if data is None:
        if spec["data"] == "<memory>":
            raise ConfigError(f"study ({spec['kind']})", "data", "the study trains on in-memory data, which "
                              "another process cannot see", "run it with workers=1, or save the dataset to a folder")
        data = spec["data"]
    if spec["kind"] == "hpo":
        from .hpo import make_objective

        return make_objective(spec, data, bus, threads)
    if spec["kind"] == "nas":
        from .nas import make_objective

        return make_objective(spec, data, bus, threads)
    raise ConfigError("study", "kind", f"{spec['kind']!r} is not a study kind", "the study was not made by tango")


def work(storage: str, study: str, *, trials: int | None = None, timeout_min: float | None = None,
         threads: int | None = None, seed_offset: int | None = None, bus: ev.EventBus | None = None,
         wait_s: float = 0.0) -> int:
    """Join ``study`` and run trials until its budget is spent; returns how many this worker ran.
    ``wait_s``: how long to wait for the study to be created (workers may start first)."""
    from . import _study
    from ._storage import open_storage

    st = open_storage(storage)
    deadline = time.time() + wait_s
    while True:
        try:
            _, spec = _study.open_study(st, study, None)
            break
        except ConfigError:
            if time.time() >= deadline:
                raise
            time.sleep(0.5)
    offset = seed_offset if seed_offset is not None else os.getpid()
    optuna_study, spec = _study.open_study(st, study, None, seed=(spec.get("seed") or 0) + offset)
    bus = bus or ev.EventBus()
    budget = trials if trials is not None else spec.get("trials")
    catch = ()
    if spec["kind"] == "nas":
        from .nas import tolerated_errors

        catch = tolerated_errors()
    return _study.run_worker(optuna_study, spec, objective_for(spec, bus, threads), bus, trials=budget, catch=catch,
                             timeout_s=timeout_min * 60 if timeout_min else None)


def _print_trials(event: ev.Event) -> None:
    p = event.payload
    if event.name == ev.TRIAL_START:
        print(f"[{os.getpid()}] trial {p['trial']} started params={p['params']}", flush=True)
    elif event.name == ev.TRIAL_COMPLETE:
        print(f"[{os.getpid()}] trial {p['trial']} {p['state']} values={p['values']} params={p['params']}",
              flush=True)


def spawn(storage: str, study: str, *, trials: int | None, timeout_min: float | None, threads: int | None,
          seed_offset: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tango_core.autonn._worker", "--storage", storage, "--study", study,
           "--seed-offset", str(seed_offset)]
    if trials is not None:
        cmd += ["--trials", str(trials)]
    if timeout_min:
        cmd += ["--timeout-min", str(timeout_min)]
    if threads:
        cmd += ["--threads", str(threads)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(cmd, env=env)


def join(procs: list[subprocess.Popen]) -> None:
    failed = []
    for p in procs:
        if p.wait() != 0:
            failed.append(p.returncode)
    if failed:
        raise RuntimeError(f"{len(failed)} worker process(es) failed (exit codes {failed}); their output is above")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tango_core.autonn._worker", description=__doc__.splitlines()[0])
    ap.add_argument("--storage", required=True)
    ap.add_argument("--study", required=True)
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--timeout-min", type=float, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed-offset", type=int, default=None)
    ap.add_argument("--wait-s", type=float, default=60.0, help="how long to wait for the study to appear")
    args = ap.parse_args(argv)
    import tango_core.engine  # noqa: F401  (the trials need it: load it before saying "ready")

    print(f"[{os.getpid()}] worker ready for study {args.study}", flush=True)
    bus = ev.EventBus()
    bus.subscribe(ev.TRIAL_START, _print_trials)
    bus.subscribe(ev.TRIAL_COMPLETE, _print_trials)
    work(args.storage, args.study, trials=args.trials, timeout_min=args.timeout_min, threads=args.threads,
         seed_offset=args.seed_offset, bus=bus, wait_s=args.wait_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
