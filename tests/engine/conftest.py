from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from engine_data import make_image_dataset, quadrant_data  # noqa: E402


@pytest.fixture
def quadrants():
    return quadrant_data()


@pytest.fixture
def image_dataset(tmp_path):
    return make_image_dataset(tmp_path / "ds")
