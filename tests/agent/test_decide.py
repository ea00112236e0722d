"""decide: per-class thresholds turn scored boxes into the verdict the line acts on."""

from __future__ import annotations

from agent.decide import Thresholds, decide
from agent.detections import Detections

CLASSES = ("scratch", "hole")


def dets(labels: list[str], scores: list[float]) -> Detections:
    return Detections.from_labels(labels, [[0, 0, 5, 5]] * len(labels), CLASSES, (10, 10), scores)


def test_no_boxes_passes() -> None:
    assert decide(dets([], []), Thresholds({})).verdict == "pass"


def test_a_confident_defect_fails_and_is_reported() -> None:
    result = decide(dets(["hole", "scratch"], [0.9, 0.05]), Thresholds({}, default=0.5, band=0.1))
    assert result.verdict == "fail"
    assert result.defects.labels == ["hole"]


def test_a_box_near_its_threshold_makes_the_frame_uncertain() -> None:
    result = decide(dets(["scratch"], [0.45]), Thresholds({}, default=0.5, band=0.1))
    assert result.verdict == "uncertain"
    assert len(result.defects) == 0 and result.uncertain.labels == ["scratch"]


def test_a_confident_defect_wins_over_an_uncertain_one() -> None:
    assert decide(dets(["scratch", "hole"], [0.52, 0.95]), Thresholds({})).verdict == "fail"


def test_per_class_thresholds_override_the_default() -> None:
    strict_holes = Thresholds({"hole": 0.2}, default=0.9, band=0.05)
    assert decide(dets(["hole"], [0.3]), strict_holes).verdict == "fail"
    assert decide(dets(["scratch"], [0.3]), strict_holes).verdict == "pass"
