"""Fixtures for data-format tests (helpers live in `helpers.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.data.dataset import Dataset
from tests.finetune.data.helpers import random_dataset


@pytest.fixture
def dataset(tmp_path: Path) -> Dataset:
    return random_dataset(tmp_path / "source")
