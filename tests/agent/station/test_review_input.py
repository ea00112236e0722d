"""Review bodies: the shape checks of the models and the checks against the entry's frame and classes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.station.review_input import MAX_BOXES, BoxIn, ReviewIn, box_problems, labels_of
from tests.agent.learn.helpers import entry_with
from tests.agent.station.conftest import CLASSES


def box(label: str = "scratch", x1: float = 1, y1: float = 1, x2: float = 5, y2: float = 5) -> BoxIn:
    return BoxIn(label=label, x1=x1, y1=y1, x2=x2, y2=y2)


def test_shape_errors_are_caught_by_the_models() -> None:
    for bad in ({"label": "scratch", "x1": float("nan"), "y1": 0, "x2": 1, "y2": 1},
                {"label": "scratch", "x1": -0.5, "y1": 0, "x2": 1, "y2": 1},
                {"label": "x" * 65, "x1": 0, "y1": 0, "x2": 1, "y2": 1}):
        with pytest.raises(ValidationError):
            BoxIn.model_validate(bad)
    with pytest.raises(ValidationError):
        ReviewIn.model_validate({"action": "boxes", "boxes": [box().model_dump()] * (MAX_BOXES + 1)})


def test_problems_name_each_field_against_the_frame_and_classes() -> None:
    review = ReviewIn(action="boxes", boxes=[box(), box("dent", 3, 2, 3, 70)])
    assert [p["field"] for p in box_problems(review, 64, 64, CLASSES)] == [
        "boxes.1.label", "boxes.1.y2", "boxes.1.x2"]
    assert box_problems(ReviewIn(action="boxes", boxes=[box(x2=64, y2=64)]), 64, 64, CLASSES) == []  # the edge


def test_boxes_go_with_the_boxes_action_only() -> None:
    assert box_problems(ReviewIn(action="boxes"), 64, 64, CLASSES)[0]["field"] == "boxes"
    assert box_problems(ReviewIn(action="reject", boxes=[]), 64, 64, CLASSES)[0]["message"] == \
        "only with action 'boxes'"
    assert box_problems(ReviewIn(action="accept"), 64, 64, CLASSES) == []


def test_labels_of_each_action() -> None:
    entry = entry_with()
    accepted = labels_of(ReviewIn(action="accept"), entry)
    assert accepted is not None and accepted.labels == ["scratch"] and accepted.score.tolist() == [1.0]
    assert accepted.xyxy.tolist() == entry.detections.xyxy.tolist()
    none = labels_of(ReviewIn(action="no_defect"), entry)
    assert none is not None and len(none) == 0
    assert labels_of(ReviewIn(action="reject"), entry) is None
    drawn = labels_of(ReviewIn(action="boxes", boxes=[box("hole", 2, 3, 4, 5)]), entry)
    assert drawn is not None and drawn.labels == ["hole"] and drawn.xyxy.tolist() == [[2, 3, 4, 5]]
    assert drawn.image_size == (64, 64)
