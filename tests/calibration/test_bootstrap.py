"""The bootstrap interval of the golden mAP50 change: seeded, paired, and zero-width for identical models."""

from __future__ import annotations

import numpy as np
import pytest

from agent.detections import Detections
from calibration.bootstrap import map50_delta_interval

CLASSES = ("scratch", "hole")


def frames(count: int) -> list[Detections]:
    return [Detections.from_labels(["scratch"], [[4, 4, 20 + i, 20]], CLASSES, (64, 64)) for i in range(count)]


def misses(truth: list[Detections], every: int) -> list[Detections]:
    return [t[np.zeros(1, dtype=bool)] if i % every == 0 else t for i, t in enumerate(truth)]


def test_the_same_seed_gives_the_same_interval_and_the_delta_is_inside() -> None:
    truth = frames(12)
    worse, better = misses(truth, 2), misses(truth, 6)
    first = map50_delta_interval(truth, worse, better, CLASSES, resamples=60, seed=3)
    assert first == map50_delta_interval(truth, worse, better, CLASSES, resamples=60, seed=3)
    assert first.low <= first.delta <= first.high and first.delta > 0
    assert (first.confidence, first.resamples, first.seed) == (0.95, 60, 3)


def test_identical_predictions_have_no_spread() -> None:
    truth = frames(5)
    same = misses(truth, 3)
    interval = map50_delta_interval(truth, same, same, CLASSES, resamples=30, seed=0)
    assert interval.to_json() == {"delta": 0.0, "low": 0.0, "high": 0.0, "confidence": 0.95, "resamples": 30,
                                  "seed": 0}


def test_prediction_lists_must_match_the_golden_frames() -> None:
    truth = frames(3)
    with pytest.raises(ValueError, match="3 frames, 2 current"):
        map50_delta_interval(truth, truth[:2], truth, CLASSES, resamples=20, seed=0)
