"""Frames, predictions and configs the learning-queue tests share."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from agent.capture.synthetic import SyntheticGenerator
from agent.capture.worker import Frame
from agent.config import QueueConfig
from agent.detections import Detections
from agent.learn.entry import QueueEntry

CLASSES = ("scratch", "hole", "stain")
THRESHOLDS = {"scratch": 0.5, "hole": 0.5, "stain": 0.5}
GEN = SyntheticGenerator(seed=5, size=64)


def frame(index: int, camera: str = "cam0", expect: Any = None, part_id: str | None = None) -> Frame:
    return Frame(camera, index, datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=index),
                 GEN.frame(index).image, part_id=part_id, expect=expect)


def unsure(score: float = 0.55, box: tuple[float, ...] = (10, 12, 30, 40)) -> Detections:
    return Detections.from_labels(["scratch"], [box], CLASSES, (64, 64), score=[score])


def config(**overrides: Any) -> QueueConfig:
    base: dict[str, Any] = {"per_minute": 1000, "per_hour": 1000, "per_day": 1000, "dedup_max_distance": 6,
                            "samplers": ["threshold-band", "flagged-miss"]}
    return QueueConfig(**{**base, **overrides})


WHEN = datetime(2025, 1, 1, tzinfo=timezone.utc)


def entry_with(entry_id: int = 7, predictions: Detections | None = None, **fields: Any) -> QueueEntry:
    """A queue entry built by hand (no queue, no frame file); `fields` set status, thresholds, labels, review facts."""
    base: dict[str, Any] = {"status": "new", "thresholds": dict(THRESHOLDS)}
    values = {**base, **fields}
    return QueueEntry(entry_id, WHEN, "cam0", 3, None, WHEN, "threshold-band", "m@1", values.pop("status"), 64, 64,
                      255, Path(f"frames/{entry_id:09d}.png"), 100, predictions if predictions is not None
                      else unsure(0.55), values.pop("thresholds"), **values)
