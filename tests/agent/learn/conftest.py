"""A fresh learning queue per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.learn.queue import LearningQueue
from tests.agent.learn.helpers import config


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[LearningQueue]:
    q = LearningQueue(tmp_path / "queue", config())
    yield q
    q.close()
