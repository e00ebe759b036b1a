"""Several worker processes on one PostgreSQL study: no trial lost or run twice, and a worker
killed mid-trial is failed by its missing heartbeat and retried without blocking the study."""

from __future__ import annotations

import os
import signal
import socket
import threading

import pytest
from autonn_helpers import FAST_HYP, python, wait_for_line

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TRIALS = 4
JOIN = """
from tango_core.autonn._worker import main
main(["--storage", {url!r}, "--study", "dist", "--threads", "1", "--wait-s", "120"])
"""


def test_workers_share_one_postgres_study_and_survive_a_killed_worker(tmp_path, digits, pg_url, monkeypatch):
    import optuna
    from optuna.trial import TrialState

    from tango_core import events as ev
    from tango_core.autonn import tune

    monkeypatch.setenv("TANGO_HEARTBEAT_S", "1")
    env = {"TANGO_HEARTBEAT_S": "1"}
    joiner = python(JOIN.format(url=pg_url), tmp_path, env)
    # this one plays a worker on another machine: only its heartbeat can tell that it died
    doomed = python(JOIN.format(url=pg_url), tmp_path, dict(env, TANGO_WORKER_HOST="another-machine"))
    logs: dict[str, list[str]] = {"joiner": [], "doomed": []}
    killed: list[int] = []

    def kill_when_busy() -> None:
        line = wait_for_line(doomed, "started", logs["doomed"])
        killed.append(int(line.split("trial ")[1].split()[0]))
        os.kill(doomed.pid, signal.SIGKILL)

    for name, proc in (("joiner", joiner), ("doomed", doomed)):  # both loaded and polling for the study
        wait_for_line(proc, "worker ready", logs[name])
    killer = threading.Thread(target=kill_when_busy, daemon=True)
    killer.start()
    try:
        # this process is the first worker: it creates the study the others wait for
        bus = ev.EventBus()
        rec = ev.Recorder(bus, ev.TRIAL_START)
        result = tune(digits, "resnet-cifar20", trials=TRIALS, epochs=1, hyp=FAST_HYP, storage=pg_url, study="dist",
                      pruner="none", retrain=False, events=bus, imgsz=16, batch_size=16, threads=1)
        killer.join(120)
        out, _ = joiner.communicate(timeout=300)
        logs["joiner"].append(out)
        assert joiner.returncode == 0, f"the joining worker failed:\n{''.join(logs['joiner'])}"
    finally:
        for proc in (joiner, doomed):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert killed, f"the doomed worker never started a trial:\n{''.join(logs['doomed'])}"
    study = optuna.load_study(study_name="dist", storage=pg_url)
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    lost = trials[killed[0]]
    assert lost.state == TrialState.FAIL and lost.user_attrs["worker"]["host"] == "another-machine"
    retries = [t for t in trials if t.user_attrs.get("retry_of") == [lost.number]]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == lost.params
    # every trial of the budget finished once, and no more: the lost trial's retry replaces it
    # (budget_used skips a failed trial that was queued again). Before the budget lock the surviving
    # workers could both see the queued retry (or one trial left) at the same moment and each take
    # one; the one that did not get the retry made a new trial, TRIALS + 1 in all. Now the check and
    # the taking of a trial are one step under a PostgreSQL advisory lock (_storage.BudgetLock).
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == TRIALS, [(t.number, t.state.name, t.user_attrs.get("retry_of")) for t in trials]
    assert [t for t in trials if t.state == TrialState.FAIL] == [lost]
    params = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(params)) == len(params), "a set of hyper-parameters ran twice"
    # both surviving workers took trials; this one reported what it ran
    workers = {(t.user_attrs["worker"]["host"], t.user_attrs["worker"]["pid"]) for t in done}
    assert len(workers) == 2 and (socket.gethostname(), os.getpid()) in workers
    assert {e["trial"] for e in rec.events} == {t.number for t in done if t.user_attrs["worker"]["pid"] == os.getpid()}
    assert result.best_trial in {t.number for t in done}
