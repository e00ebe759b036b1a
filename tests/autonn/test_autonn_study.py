"""The study machinery on a cheap objective: storage URLs, the budget across calls, a dead
worker's trial reaped and retried, samplers, and the events a dashboard replays."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tango_core import events as ev
from tango_core.autonn._storage import _redact, open_storage, reap_dead_trials, storage_url
from tango_core.autonn._study import budget_used, make_sampler, open_study, run_worker, study_events
from tango_core.errors import ConfigError, UnknownNameError


def test_storage_urls(tmp_path):
    assert storage_url(tmp_path / "a.db") == f"sqlite:///{tmp_path / 'a.db'}"
    assert storage_url(tmp_path / "a.log") == f"journal:///{tmp_path / 'a.log'}"
    # the bare scheme gets the driver the autonn extra installs (psycopg2) unless psycopg 3 is there
    assert storage_url("postgres://u@h/db") in ("postgresql+psycopg2://u@h/db", "postgresql://u@h/db")
    assert storage_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert storage_url(None).endswith("/autonn/studies.db")
    with pytest.raises(ConfigError, match="neither a URL nor"):
        storage_url(tmp_path / "a.txt")
    with pytest.raises(ConfigError, match="unknown scheme 'redis'"):
        storage_url("redis://h")
    assert _redact("postgresql://me:secret@h:5432/db") == "postgresql://me:***@h:5432/db"
    with pytest.raises(ConfigError, match="cannot open postgresql.*://me:\\*\\*\\*@127.0.0.1:9/db"):
        open_storage("postgresql://me:secret@127.0.0.1:9/db")


def _spec(sampler="tpe"):
    return {"kind": "hpo", "model": "m", "task": "classification", "data": "d", "space": {}, "epochs": 1,
            "directions": ["minimize"], "sampler": sampler, "pruner": "none"}


def _objective(bus):
    def objective(trial):
        x = trial.suggest_float("x", -3, 3)
        bus.emit(ev.TRIAL_START, study=trial.study.study_name, trial=trial.number, params=trial.params)
        trial.report((x - 1) ** 2 + 1, 0)
        return (x - 1) ** 2
    return objective


def test_the_budget_counts_the_whole_study_across_calls(tmp_path):
    storage = open_storage(tmp_path / "s.db")
    study, spec = open_study(storage, "s", _spec(), seed=0)
    bus = ev.EventBus()
    rec = ev.Recorder(bus)
    assert run_worker(study, spec, _objective(bus), bus, trials=5, timeout_s=None) == 5
    assert run_worker(study, spec, _objective(bus), bus, trials=5, timeout_s=None) == 0
    assert run_worker(study, spec, _objective(bus), bus, trials=7, timeout_s=None) == 2
    assert len(study.trials) == 7 == budget_used(study)
    assert [e["state"] for e in rec.of(ev.TRIAL_COMPLETE)] == ["complete"] * 7
    assert all(t.user_attrs["worker"]["pid"] for t in study.trials)
    with pytest.raises(ConfigError, match="no budget"):
        run_worker(study, spec, _objective(bus), bus, trials=None, timeout_s=None)


@pytest.mark.slow
def test_the_gaussian_process_sampler_closes_in(tmp_path):
    storage = open_storage(tmp_path / "s.db")
    study, spec = open_study(storage, "s", _spec("gp"), seed=0)
    bus = ev.EventBus()
    run_worker(study, spec, _objective(bus), bus, trials=6, timeout_s=None)
    # past its 4 random start-up trials the GP model proposes points near the minimum at x = 1
    assert min(abs(t.params["x"] - 1) for t in study.trials[4:]) < min(abs(t.params["x"] - 1) for t in study.trials[:4])


def test_samplers_by_name():
    import optuna

    assert isinstance(make_sampler("gp", 0), optuna.samplers.GPSampler)
    assert isinstance(make_sampler("nsga2", 0, population=6), optuna.samplers.NSGAIISampler)
    with pytest.raises(UnknownNameError, match="'tpe'"):
        make_sampler("tep", 0)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # study.ask() makes the trial by hand
@pytest.mark.filterwarnings("ignore:The reported value is ignored:UserWarning")  # the retry inherits step 0
@pytest.mark.parametrize("file", ["s.db", "s.log"])  # SQLite (with a heartbeat) and a journal file (without)
def test_a_dead_workers_trial_on_this_machine_is_failed_and_retried(tmp_path, file):
    import optuna

    storage = open_storage(tmp_path / file)
    study, spec = open_study(storage, "s", _spec(), seed=0)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(-3, 3)})
    trial.report(4.0, 0)
    import socket

    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": int(dead.stdout)})
    assert reap_dead_trials(study) == [trial.number]
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    retry = trials[1]
    assert retry.params == trials[0].params and retry.user_attrs["retry_of"] == [0]
    assert "worker" not in retry.user_attrs and retry.intermediate_values == {0: 4.0}
    assert budget_used(study) == 1  # the retry replaces the trial it repeats
    bus = ev.EventBus()
    run_worker(study, spec, _objective(bus), bus, trials=2, timeout_s=None)
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[1].params == study.trials[0].params  # the retry ran the lost trial's parameters


@pytest.mark.parametrize("where", ["s.db", "s.log", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_workers_checking_the_budget_at_once_never_run_more_than_it(tmp_path, where, request, monkeypatch):
    """Two workers find the budget spent but for a queued retry at the same instant: one takes the
    retry, and the other must not make a trial of its own (it did without the budget lock: the
    multi-worker PostgreSQL study ran one trial more than its budget)."""
    import threading

    import optuna

    from tango_core.autonn import _study
    from tango_core.autonn._storage import retry_trial

    url = request.getfixturevalue("pg_url") if where == "postgres" else tmp_path / where
    name = f"race-{tmp_path.name}"
    storage = open_storage(url)
    study, spec = open_study(storage, name, _spec(), seed=0)
    bus = ev.EventBus()
    run_worker(study, spec, _objective(bus), bus, trials=1, timeout_s=None)  # trial 0 done
    lost = study.ask({"x": optuna.distributions.FloatDistribution(-3, 3)})  # trial 1: its worker died
    study.tell(lost, state=optuna.trial.TrialState.FAIL)
    retry_trial(study, study.trials[1])  # trial 2: the retry, waiting
    assert budget_used(study) == 2 and _study.waiting(study) == 1

    together = threading.Barrier(2, timeout=2)
    waiting = _study.waiting

    def waiting_together(s):  # both workers look at the queue at the same moment (when they can)
        try:
            together.wait()
        except threading.BrokenBarrierError:  # the other one cannot come: it waits for the lock
            pass
        return waiting(s)

    monkeypatch.setattr(_study, "waiting", waiting_together)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            mine, _ = open_study(storage, name, None)
            run_worker(mine, spec, _objective(ev.EventBus()), ev.EventBus(), trials=2, timeout_s=None, poll_s=0.1)
        except BaseException as exc:  # noqa: B036 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"], states  # the retry ran, and nothing more


def test_a_stored_study_replays_as_valid_events(tmp_path):
    storage = open_storage(tmp_path / "s.db")
    study, spec = open_study(storage, "s", _spec(), seed=0)
    bus = ev.EventBus()
    run_worker(study, spec, _objective(bus), bus, trials=3, timeout_s=None)
    events = study_events("s", tmp_path / "s.db")
    check = ev.EventBus()
    for e in events:  # emitting validates the documented fields
        check.emit(e.name, **e.payload)
    names = [e.name for e in events]
    assert names.count(ev.TRIAL_START) == names.count(ev.TRIAL_COMPLETE) == names.count(ev.TRIAL_REPORT) == 3
    assert names[-1] == ev.STUDY_END and events[-1]["best"]["trial"] == study.best_trial.number
