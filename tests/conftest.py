"""Shared test set-up: the repository root on sys.path, quiet threads, a temp project factory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# keep matplotlib / TF / tokenizers quiet and off the network
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def project_factory(tmp_path):
    from tango_core.project import Project

    def make(name: str = "p", **kw):
        return Project.create(tmp_path / name, **kw)

    return make


_KIND_MARKERS = {"slow", "notebook", "browser", "postgres"}


def pytest_collection_modifyitems(config, items):
    """Tests that carry no kind marker are unit tests (so `-m unit` selects the quick ones)."""
    for item in items:
        if not _KIND_MARKERS & {m.name for m in item.iter_markers()}:
            item.add_marker(pytest.mark.unit)
