"""Where studies live: one Optuna storage URL, the seam between one machine and many.

* nothing given: ``sqlite:///<project>/autonn/studies.db`` (or ``./autonn/studies.db``);
* a file path: ``*.db`` / ``*.sqlite`` -> SQLite, ``*.log`` / ``*.jsonl`` -> a journal file;
* a URL: ``sqlite:///…``, ``postgresql://user@host/db`` (many machines), ``journal:///path``.

RDB storages (SQLite, PostgreSQL, MySQL) get Optuna's heartbeat: a worker that dies mid-trial
stops beating, another worker marks its trial failed after ``grace_period`` seconds and a retry
with the same parameters is queued.  On the same machine a dead worker is noticed at once, by
its process id, which also covers journal files (they have no heartbeat).

A worker checks the budget and takes its next trial under :class:`BudgetLock`, so that the
budget is exact with any number of workers.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, require

try:
    import fcntl
except ImportError:  # not POSIX: budget_lock falls back to a lock of this process
    fcntl = None  # type: ignore[assignment]

#: seconds between heartbeats (TANGO_HEARTBEAT_S overrides); a trial is stale after GRACE_FACTOR
#: heartbeats are missed
HEARTBEAT_S = 10
GRACE_FACTOR = 3
#: how often a trial lost with its worker is retried with the same parameters
MAX_RETRY = 2
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")


def default_url(root: str | os.PathLike | None = None) -> str:
    path = Path(root or ".") / "autonn" / "studies.db"
    return f"sqlite:///{path.resolve()}"


def storage_url(where: str | os.PathLike | None = None, project: Any = None) -> str:
    """Normalise ``where`` (a URL, a file path, or None for the project's SQLite file) to a URL."""
    if where is None:
        return default_url(project.root if project is not None else None)
    text = str(where)
    if "://" in text:
        scheme = text.split("://", 1)[0].split("+", 1)[0]
        if scheme not in ("sqlite", "postgresql", "postgres", "mysql", "journal"):
            raise ConfigError("storage", "url", f"{text!r} has an unknown scheme {scheme!r}",
                              "use sqlite:///file.db, postgresql://user@host/db or journal:///file.log")
        if scheme == "postgres":  # SQLAlchemy knows only the long name
            text = "postgresql" + text[len("postgres"):]
        if text.startswith("postgresql://") and not _has("psycopg"):
            # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the autonn extra installs psycopg2
            text = "postgresql+psycopg2://" + text[len("postgresql://"):]
        return text
    path = Path(text)
    if path.suffix in _SQLITE_SUFFIXES:
        return f"sqlite:///{path.resolve()}"
    if path.suffix in _JOURNAL_SUFFIXES:
        return f"journal:///{path.resolve()}"
    raise ConfigError("storage", "path", f"{text!r} is neither a URL nor a .db / .log file",
                      "give sqlite:///x.db, postgresql://…, or a path ending in .db (SQLite) or .log (journal)")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def open_storage(where: str | os.PathLike | None = None, project: Any = None, heartbeat_s: int | None = None):
    """An Optuna storage for ``where`` (see :func:`storage_url`), created if missing."""
    import warnings

    optuna = require("optuna", "autonn", "hyper-parameter and architecture search")
    url = storage_url(where, project)
    heartbeat_s = heartbeat_s or int(os.environ.get("TANGO_HEARTBEAT_S", HEARTBEAT_S))
    if url.startswith("journal://"):
        path = Path(url[len("journal://"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        storage = JournalStorage(JournalFileBackend(str(path)))
        storage._tango_url = url  # type: ignore[attr-defined]  (what budget_lock locks)
        return storage
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        # several local workers share one file: wait for the lock instead of failing at once
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        if url.startswith("postgresql"):
            require("psycopg2", "autonn", "studies on PostgreSQL")
        engine_kwargs = {"pool_pre_ping": True}
    import inspect

    import sqlalchemy.exc
    from optuna.storages import RDBStorage

    # Optuna 4.9 renamed failed_trial_callback to heartbeat_stale_trial_callback
    callback = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in \
        inspect.signature(RDBStorage).parameters else "failed_trial_callback"
    for attempt in range(6):
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                                     grace_period=GRACE_FACTOR * heartbeat_s, **{callback: retry_trial})
                storage._tango_url = url  # type: ignore[attr-defined]
                return storage
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # workers started together on an empty database race to create Optuna's tables: the
            # loser finds them made on its next try
            if attempt == 5:
                raise
            time.sleep(0.3 * (attempt + 1))
        except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError) as exc:
            raise ConfigError("storage", "url", f"cannot open {_redact(url)}: {exc.__cause__ or exc}",
                              "check that the server runs, the database exists and the user may connect") from exc
    raise AssertionError("unreachable")


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    cred, host = rest.rsplit("@", 1)
    return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}" if ":" in cred else url


# --- workers ------------------------------------------------------------------------------------
WORKER_ATTR = "worker"  # user attribute {host, pid} of the process running a trial


def retry_trial(study, trial) -> None:
    """Queue a failed trial again with its parameters and intermediate values (at most MAX_RETRY
    times), as Optuna's RetryHeartbeatStaleTrialCallback does, minus the dead worker's id: the
    retry must not look like a running trial of a dead process while it waits.  ``retry_of`` (a
    user attribute, readable from the trial) lists the trials it repeats, oldest first."""
    import optuna

    user = {k: v for k, v in trial.user_attrs.items() if k != WORKER_ATTR}
    history = [*user.get("retry_of", []), trial.number]
    if len(history) > MAX_RETRY:
        return
    user["retry_of"] = history
    system = {**trial.system_attrs, "failed_trial": history[0], "retry_history": history}
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.WAITING, params=trial.params,
                                        distributions=trial.distributions, user_attrs=user,
                                        system_attrs=system, intermediate_values=trial.intermediate_values))


def worker_id() -> dict[str, Any]:
    """Who runs a trial.  TANGO_WORKER_HOST names the machine where hostnames are not unique
    (containers started from one image may share one)."""
    return {"host": os.environ.get("TANGO_WORKER_HOST") or socket.gethostname(), "pid": os.getpid()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_dead_trials(study) -> list[int]:
    """Fail the running trials of workers on this machine whose process is gone, and queue their
    retries; returns the failed trial numbers.  (Other machines' trials go stale by heartbeat.)"""
    import optuna
    from optuna.trial import TrialState

    me = worker_id()
    reaped: list[int] = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(WORKER_ATTR) or {}
        if owner.get("host") != me["host"] or not owner.get("pid") or _pid_alive(int(owner["pid"])):
            continue
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker reaped it first
            continue
        retry_trial(study, t)
        reaped.append(t.number)
    return reaped


# --- the budget ---------------------------------------------------------------------------------
_LOCAL_LOCK = threading.Lock()


class BudgetLock:
    """A study-wide lock that a worker holds from its budget check until its next trial exists
    (a queued one popped, or a new one made), so that workers checking the budget at the same
    instant cannot together run more trials than it, nor two of them take one queued trial.

    PostgreSQL: a session advisory lock (every machine sees it; the server drops it with a dead
    worker's connection).  SQLite and journal files: an ``flock`` on ``<file>.tango-budget.lock``
    (one machine, like the file; the kernel drops it with a dead process).  Any other storage: a
    lock of this process only.  ``release()`` may be called more than once."""

    def __init__(self, study) -> None:
        self.name = study.study_name
        storage = study._storage
        backend = getattr(storage, "_backend", None)
        self.url = str(getattr(storage, "_tango_url", None) or getattr(backend, "_tango_url", None) or "")
        self.engine = getattr(backend, "engine", None) or getattr(storage, "engine", None)
        self._release: Any = None

    def acquire(self) -> BudgetLock:
        if self._release is not None:
            return self
        if self.url.startswith("postgresql") and self.engine is not None:
            self._release = self._advisory()
        elif self.url.startswith(("sqlite:///", "journal:///")) and fcntl is not None:
            self._release = self._flock(self.url.split(":///", 1)[1])
        else:
            _LOCAL_LOCK.acquire()
            self._release = _LOCAL_LOCK.release
        return self

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> BudgetLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _advisory(self):
        import zlib

        from sqlalchemy import text

        key = zlib.crc32(f"tango-budget:{self.name}".encode())  # fits PostgreSQL's bigint key
        conn = self.engine.connect()
        try:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
        except BaseException:
            conn.close()
            raise

        def release() -> None:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
            finally:
                conn.close()

        return release

    def _flock(self, path: str):
        lock_path = Path(f"{path}.tango-budget.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise

        def release() -> None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

        return release
