"""Review order: the frame whose box scored closest to its class threshold comes first."""

from __future__ import annotations

import pytest

from agent.detections import Detections
from agent.learn.uncertainty import box_margins, margin, most_unsure_first
from tests.agent.learn.helpers import CLASSES, entry_with


def boxes(labels: list[str], scores: list[float]) -> Detections:
    return Detections.from_labels(labels, [[1 + i, 1, 9 + i, 9] for i in range(len(labels))], CLASSES, (64, 64),
                                  score=scores)


def test_a_frames_margin_is_its_closest_box_to_the_class_threshold() -> None:
    entry = entry_with(predictions=boxes(["scratch", "hole"], [0.9, 0.35]), thresholds={
        "scratch": 0.5, "hole": 0.3, "stain": 0.5})
    assert box_margins(entry) == pytest.approx([0.4, 0.05], abs=1e-6)
    assert margin(entry) == pytest.approx(0.05, abs=1e-6)


def test_a_frame_without_boxes_counts_as_every_class_scoring_zero() -> None:
    empty = entry_with(predictions=Detections.empty(CLASSES, (64, 64)),
                       thresholds={"scratch": 0.6, "hole": 0.4, "stain": 0.5})
    assert margin(empty) == pytest.approx(0.4)


def test_most_unsure_first_then_oldest() -> None:
    entries = [entry_with(1, boxes(["scratch"], [0.7])), entry_with(2, boxes(["scratch"], [0.52])),
               entry_with(3, boxes(["hole"], [0.48])), entry_with(4, Detections.empty(CLASSES, (64, 64)))]
    assert [e.id for e in most_unsure_first(entries)] == [2, 3, 1, 4]
