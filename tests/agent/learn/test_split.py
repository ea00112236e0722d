"""Golden or training: a stable assignment by frame hash at the configured fraction, and per-class set counts."""

from __future__ import annotations

import numpy as np

from agent.detections import Detections
from agent.learn.split import count_set, golden_by_hash, hash_position, is_golden
from tests.agent.learn.helpers import CLASSES, entry_with, unsure


def test_hash_positions_are_stable_and_spread_evenly() -> None:
    assert hash_position(0xFF) == hash_position(0xFF)
    positions = np.array([hash_position(h) for h in range(4000)])
    assert ((positions >= 0) & (positions < 1)).all()
    assert abs(float(np.mean(positions < 0.2)) - 0.2) < 0.03  # about the fraction asked for


def test_raising_the_fraction_only_moves_frames_into_the_golden_set() -> None:
    low = {h for h in range(2000) if golden_by_hash(h, 0.1)}
    high = {h for h in range(2000) if golden_by_hash(h, 0.3)}
    assert low < high
    assert not any(golden_by_hash(h, 0.0) for h in range(200)) and all(golden_by_hash(h, 1.0) for h in range(200))


def test_the_manual_toggle_overrides_the_hash() -> None:
    golden_hash = next(h for h in range(100) if golden_by_hash(h, 0.2))
    assert is_golden(golden_hash, None, 0.2) and not is_golden(golden_hash, False, 0.2)
    assert is_golden(next(h for h in range(100) if not golden_by_hash(h, 0.2)), True, 0.2)


def test_set_counts_list_every_class_with_boxes_and_frames() -> None:
    two = Detections.from_labels(["hole", "hole"], [[1, 1, 5, 5], [9, 9, 20, 20]], CLASSES, (64, 64))
    entries = [entry_with(1, labels=two), entry_with(2, labels=unsure(1.0)),
               entry_with(3, labels=Detections.empty(CLASSES, (64, 64)))]
    counts = count_set(entries)
    assert (counts.frames, counts.defect_free) == (3, 1)
    assert counts.boxes == {"scratch": 1, "hole": 2, "stain": 0}
    assert counts.frames_with == {"scratch": 1, "hole": 1, "stain": 0}
    assert counts.to_json()["boxes"]["hole"] == 2
    assert count_set([], CLASSES).boxes == {"scratch": 0, "hole": 0, "stain": 0}
