"""Several worker processes on one PostgreSQL study: no trial lost or run twice, and a worker
killed mid-trial is failed by its missing heartbeat and retried without blocking the study."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import FAST_HYP
from helpers import python, wait_for_line

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TRIALS = 6
FIRST = """
from tango_core import events as ev
from tango_core.autonn import tune
bus = ev.EventBus()
bus.subscribe(ev.TRIAL_START, lambda e: print("START", e["trial"], flush=True))
r = tune({digits!r}, "resnet-cifar20", trials={trials}, epochs=2, hyp={hyp!r}, storage={url!r}, study="dist",
         pruner="none", retrain=False, events=bus, imgsz=16, batch_size=16, threads=1)
print("BEST", r.best_trial, flush=True)
"""
JOIN = """
from tango_core.autonn._worker import main
main(["--storage", {url!r}, "--study", "dist", "--threads", "1", "--wait-s", "120"])
"""


def test_workers_share_one_postgres_study_and_survive_a_killed_worker(tmp_path, digits, pg_url):
    import optuna
    from optuna.trial import TrialState

    env = {"TANGO_HEARTBEAT_S": "1"}
    first = python(FIRST.format(digits=str(digits), trials=TRIALS, hyp=FAST_HYP, url=pg_url), tmp_path, env)
    joiner = python(JOIN.format(url=pg_url), tmp_path, env)
    # this one plays a worker on another machine: only its heartbeat can tell that it died
    doomed = python(JOIN.format(url=pg_url), tmp_path, dict(env, TANGO_WORKER_HOST="another-machine"))
    logs: dict[str, list[str]] = {"first": [], "joiner": [], "doomed": []}
    try:
        line = wait_for_line(doomed, "started", logs["doomed"])
        killed_trial = int(line.split("trial ")[1].split()[0])
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(30)
        for name, proc in (("first", first), ("joiner", joiner)):
            out, _ = proc.communicate(timeout=400)
            logs[name].append(out)
            assert proc.returncode == 0, f"{name} failed:\n{''.join(logs[name])}"
    finally:
        for proc in (first, joiner, doomed):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    study = optuna.load_study(study_name="dist", storage=pg_url)
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    killed = trials[killed_trial]
    assert killed.state == TrialState.FAIL and killed.user_attrs["worker"]["host"] == "another-machine"
    retries = [t for t in trials if t.user_attrs.get("retry_of") == [killed_trial]]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == killed.params
    # every trial of the budget finished once (a worker may start one more as the budget runs out)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert TRIALS <= len(done) <= TRIALS + 1
    assert [t for t in trials if t.state == TrialState.FAIL] == [killed]
    params = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(params)) == len(params), "a set of hyper-parameters ran twice"
    # both surviving workers took trials
    hosts = {(t.user_attrs["worker"]["host"], t.user_attrs["worker"]["pid"]) for t in done}
    assert len(hosts) == 2
    assert "BEST" in "".join(logs["first"])
