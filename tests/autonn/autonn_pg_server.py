"""A private PostgreSQL server for the distributed-study tests and the worker benchmark.

Debian's ``postgresql`` package (``scripts/setup.sh --system`` installs it) provides ``initdb`` and
``pg_ctl``; this starts a throw-away cluster in a temporary folder on a free localhost port with
``trust`` authentication, and stops it at the end.  PostgreSQL refuses to run as root, so under
root the cluster belongs to the ``postgres`` user the package creates.  ``TANGO_TEST_POSTGRES_URL``
points the tests at a server you run yourself instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                       None)
    if not found:
        raise RuntimeError(f"PostgreSQL's '{name}' was not found: install the server with "
                           "'bash scripts/setup.sh --system' (or apt-get install postgresql), "
                           "or set TANGO_TEST_POSTGRES_URL to a server you run")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """``with PostgresServer() as url: ...`` gives ``postgresql+psycopg2://...`` of an empty database."""

    def __init__(self, database: str = "tango") -> None:
        self.database = database
        self.root: Path | None = None
        self.port = _free_port()
        self._as: list[str] = []

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as, *args], check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> str:
        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
        self.root = Path(tempfile.mkdtemp(prefix="tango-pg-"))
        data = self.root / "data"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            os.chmod(self.root, 0o700)
            self._as = ["runuser", "-u", "postgres", "--"]
        try:
            self._run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
            opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                    f"-c max_connections=60 -c shared_buffers=32MB")
            self._run(pg_ctl, "-D", str(data), "-o", opts, "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        except subprocess.CalledProcessError as exc:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            self.stop()
            raise RuntimeError(f"could not start PostgreSQL: {exc.stderr or exc.stdout}\n{log}") from exc
        self._run(_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", self.database)
        return self.url

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{self.database}"

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.root / "data" / "postmaster.pid").exists():
            self._run(_bin("pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop", check=False)
        for _ in range(50):
            if not (self.root / "data" / "postmaster.pid").exists():
                break
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
