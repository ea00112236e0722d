"""The `store` fixture of the model-store tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.store.model_store import ModelStore
from tests.agent.store.helpers import new_store


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return new_store(tmp_path)
