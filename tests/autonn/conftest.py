"""Fixtures of the AutoNN tests: the digits sample at 16 px, 16 shapes pictures with boxes at
64 px, and a private PostgreSQL server (started once per session, stopped at the end)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    from tango_core.data import make_sample

    root = tmp_path_factory.mktemp("autonn") / "digits"
    make_sample("digits", root, n_per_class=50, size=16)
    return root


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> Path:
    """16 pictures of 64 px with boxes (13 to train, 3 to validate): a YOLO model trains an epoch
    on them in seconds."""
    from tango_core.data import make_sample

    root = tmp_path_factory.mktemp("autonn") / "shapes"
    make_sample("shapes", root, n=16, size=64, seed=0)
    return root


@pytest.fixture(scope="session")
def pg_url():
    url = os.environ.get("TANGO_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    from autonn_pg_server import PostgresServer

    server = PostgresServer()
    yield server.start()
    server.stop()


@pytest.fixture(autouse=True)
def forget_searched_models():
    """NAS tests register the architectures they choose; other tests' registry listings must not
    see them, so each test's new registrations are dropped when it ends."""
    from tango_core.models import _registry, list_models

    list_models()  # load the built-in families first, so they are not counted as new
    before = set(_registry._MODELS._entries)
    yield
    for name in set(_registry._MODELS._entries) - before:
        _registry._MODELS._entries.pop(name, None)
        _registry._MODELS._meta.pop(name, None)
