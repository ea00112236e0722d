"""What a technician may send to the review API, and the checks that need the entry (frame size, the model's classes).

A review is one `action`: `accept` (the model's suggestions as they are), `no_defect` (a reviewed good frame, no
boxes), `reject` (never trained on) or `boxes` (exactly the given boxes, in frame pixels). Shape errors (a missing
field, NaN/Infinity, a negative coordinate, too many boxes) are caught by the models and answered 422 by the app;
`box_problems` then checks each box against the entry's frame and classes, naming the field of every problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agent.detections import Detections
from agent.detector.tasks import MAX_PHRASE_CHARS
from agent.learn.entry import EntryStatus, QueueEntry

MAX_BOXES = 100  # far more defects than one frame ever shows; bounds the work one request can cause
Action = Literal["accept", "no_defect", "reject", "boxes"]
STATUS_OF: dict[str, EntryStatus] = {"accept": "labelled", "no_defect": "labelled", "reject": "rejected",
                                     "boxes": "labelled"}
FieldError = dict[str, str]


class BoxIn(BaseModel):
    """One box in pixels of the frame: left, top, right, bottom."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    label: str = Field(min_length=1, max_length=64)
    x1: float = Field(ge=0)
    y1: float = Field(ge=0)
    x2: float = Field(ge=0)
    y2: float = Field(ge=0)


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    boxes: list[BoxIn] | None = Field(default=None, max_length=MAX_BOXES)


class GroundIn(BaseModel):
    """A "find the ..." query: the phrase to ground on the entry's frame."""

    model_config = ConfigDict(extra="forbid")

    phrase: str = Field(min_length=1, max_length=MAX_PHRASE_CHARS)


class GoldenIn(BaseModel):
    """The manual golden toggle: true golden set, false training set, null back to the frame hash's choice."""

    model_config = ConfigDict(extra="forbid")

    golden: bool | None


def box_problems(review: ReviewIn, width: int, height: int, class_names: Sequence[str]) -> list[FieldError]:
    """Every problem of the review's boxes on a `width` x `height` frame of a model with `class_names`."""
    if review.action != "boxes":
        return [] if review.boxes is None else [{"field": "boxes", "message": "only with action 'boxes'"}]
    if review.boxes is None:
        return [{"field": "boxes", "message": "required with action 'boxes' (an empty list: no defect)"}]
    problems: list[FieldError] = []
    for i, box in enumerate(review.boxes):
        problems.extend(_one_box(box, f"boxes.{i}", width, height, class_names))
    return problems


def _one_box(box: BoxIn, where: str, width: int, height: int, class_names: Sequence[str]) -> list[FieldError]:
    problems: list[FieldError] = []
    if box.label not in class_names:
        problems.append({"field": f"{where}.label", "message": f"unknown class; the model's classes are "
                                                               f"{list(class_names)}"})
    for name, value, limit, side in (("x2", box.x2, width, "width"), ("y2", box.y2, height, "height")):
        if value > limit:
            problems.append({"field": f"{where}.{name}", "message": f"outside the frame (its {side} is {limit})"})
    for name, low, high in (("x2", box.x1, box.x2), ("y2", box.y1, box.y2)):
        if high <= low:
            problems.append({"field": f"{where}.{name}", "message": f"must be greater than {name[0]}1 (an empty box)"})
    return problems


def labels_of(review: ReviewIn, entry: QueueEntry) -> Detections | None:
    """The labels a checked review stores: the suggestions (scored 1: a person vouches for them), none, or the boxes;
    None for a rejected frame."""
    names, size = entry.detections.class_names, (entry.width, entry.height)
    if review.action == "reject":
        return None
    if review.action == "accept":
        return Detections.from_labels(entry.detections.labels, entry.detections.xyxy, names, size)
    boxes = review.boxes or []
    xyxy = np.asarray([[b.x1, b.y1, b.x2, b.y2] for b in boxes], dtype=np.float32).reshape(-1, 4)
    return Detections.from_labels([b.label for b in boxes], xyxy, names, size)
