"""Turning parsed-but-unchecked annotations into `Sample`s, with every problem reported where it was found.

Readers only parse: they produce `RawSample`s whose boxes still carry their source location. `assemble` checks
the image (present, readable, declared size right), each box (inside the image, x1 <= x2, y1 <= y2, known class)
and converts to `Detections`. A sample with any problem is dropped as a whole: keeping its other boxes would
leave an unlabelled defect in a training frame, which teaches the model to ignore it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.detections import Detections
from finetune.data.dataset import Progress, Sample, no_progress
from finetune.data.files import probe_image
from finetune.data.issues import AnnotationIssue, IssueLog, Location

_PIXEL_TOLERANCE = 1e-3  # float noise from normalised formats must not flag a box that touches the border


@dataclass(frozen=True)
class RawBox:
    """A box as written in the file: pixel xyxy, or fractions of the image size when `normalized`."""

    label: str
    xyxy: tuple[float, float, float, float]
    location: Location
    normalized: bool = False


@dataclass
class RawSample:
    """An image path, its declared size (if the format stores one), boxes, and problems found while parsing."""

    image: Path
    location: Location
    boxes: list[RawBox] = field(default_factory=list)
    declared_size: tuple[int, int] | None = None
    problems: list[AnnotationIssue] = field(default_factory=list)

    def problem(self, location: Location, message: str) -> None:
        self.problems.append(AnnotationIssue(location, message))


def first_seen_classes(raws: Sequence[RawSample]) -> tuple[str, ...]:
    """Class names in the order they first appear, for formats without a class list."""
    names: dict[str, None] = {}
    for raw in raws:
        for box in raw.boxes:
            names.setdefault(box.label, None)
    return tuple(names)


def assemble(
    raws: Sequence[RawSample], class_names: tuple[str, ...], log: IssueLog, progress: Progress = no_progress
) -> list[Sample]:
    """Validated samples, in input order; every problem goes to `log` and drops its sample."""
    samples: list[Sample] = []
    for raw in progress(raws, "checking annotations"):
        sample = _assemble_one(raw, class_names)
        if isinstance(sample, Sample):
            samples.append(sample)
        else:
            log.extend(sample)
    return samples


def _assemble_one(raw: RawSample, class_names: tuple[str, ...]) -> Sample | list[AnnotationIssue]:
    problems = list(raw.problems)
    size = probe_image(raw.image)
    if isinstance(size, str):
        return [*problems, AnnotationIssue(raw.location, size)]
    if raw.declared_size is not None and tuple(raw.declared_size) != size:
        problems.append(
            AnnotationIssue(raw.location, f"declared size {_wxh(raw.declared_size)} but {raw.image} is {_wxh(size)}")
        )
    pixel_boxes = [_to_pixels(box, size) for box in raw.boxes]
    for box, xyxy in zip(raw.boxes, pixel_boxes, strict=True):
        problems += [AnnotationIssue(box.location, message) for message in box_problems(box, xyxy, size, class_names)]
    if problems:
        return problems
    labels = [box.label for box in raw.boxes]
    xyxy_array = np.asarray(pixel_boxes, dtype=np.float32).reshape(-1, 4)
    return Sample(raw.image, Detections.from_labels(labels, xyxy_array, class_names, size))


def box_problems(
    box: RawBox, xyxy: tuple[float, float, float, float], size: tuple[int, int], class_names: tuple[str, ...]
) -> list[str]:
    """Messages for everything wrong with one box (empty when it is fine); each names the bad value."""
    x1, y1, x2, y2 = xyxy
    w, h = size
    shown = ", ".join(f"{v:g}" for v in box.xyxy)
    problems = []
    if box.label not in class_names:
        problems.append(f"unknown class {box.label!r}; known classes: {list(class_names)}")
    if not all(np.isfinite(xyxy)):
        problems.append(f"box ({shown}) has a non-finite coordinate")
        return problems
    if x2 < x1:
        problems.append(f"box ({shown}): x2 < x1")
    if y2 < y1:
        problems.append(f"box ({shown}): y2 < y1")
    tol = _PIXEL_TOLERANCE
    if min(x1, x2, y1, y2) < -tol or max(x1, x2) > w + tol or max(y1, y2) > h + tol:
        problems.append(f"box ({shown}) lies outside the {_wxh(size)} image")
    return problems


def _to_pixels(box: RawBox, size: tuple[int, int]) -> tuple[float, float, float, float]:
    if not box.normalized:
        return box.xyxy
    w, h = size
    x1, y1, x2, y2 = box.xyxy
    return (x1 * w, y1 * h, x2 * w, y2 * h)


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
