"""decide: per-class thresholds turn scored boxes into the verdict the line acts on."""

from __future__ import annotations

from agent.decide import Thresholds, decide
from agent.detections import Detections
from agent.measure import Size, SizeRule

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


def sized(labels: list[str], scores: list[float], lengths: list[float]) -> tuple[Detections, list[Size]]:
    """Boxes with their (length, width = length / 4) on the belt."""
    return dets(labels, scores), [Size(n, n / 4, n * n / 4) for n in lengths]


SCRATCH_RULE = Thresholds({}, default=0.5, band=0.1, size_rules={"scratch": SizeRule(min_length_mm=2.0)})


def test_a_box_below_its_class_size_rule_is_reported_undersized_and_passes() -> None:
    boxes, sizes = sized(["scratch"], [0.95], [1.5])
    result = decide(boxes, SCRATCH_RULE, sizes)
    assert result.verdict == "pass"
    assert len(result.defects) == 0 and result.undersized.labels == ["scratch"]


def test_a_box_reaching_its_size_rule_fails_and_classes_without_a_rule_are_judged_by_score() -> None:
    boxes, sizes = sized(["scratch", "hole"], [0.95, 0.2], [2.0, 0.1])
    result = decide(boxes, SCRATCH_RULE, sizes)
    assert result.verdict == "fail" and result.defects.labels == ["scratch"] and len(result.undersized) == 0
    tiny_hole, hole_sizes = sized(["hole"], [0.95], [0.01])
    assert decide(tiny_hole, SCRATCH_RULE, hole_sizes).verdict == "fail"  # hole has no rule


def test_an_undersized_box_in_the_band_does_not_make_the_part_uncertain() -> None:
    boxes, sizes = sized(["scratch", "scratch"], [0.45, 0.55], [1.0, 1.0])
    result = decide(boxes, SCRATCH_RULE, sizes)
    assert result.verdict == "pass" and len(result.uncertain) == 0
    assert result.undersized.labels == ["scratch"]  # only the one at or above its threshold is reported


def test_without_sizes_a_size_rule_cannot_pass_a_defect() -> None:
    result = decide(dets(["scratch"], [0.95]), SCRATCH_RULE, None)  # no geometry for this camera
    assert result.verdict == "fail" and result.defects.labels == ["scratch"] and len(result.undersized) == 0
