"""Turning parsed-but-unchecked annotations into a `Dataset`, with every problem reported where it was found.

Readers only parse: they produce `RawSample`s whose boxes still carry their source location. `build_dataset` checks
the image (present, fully decodable, declared size right, not annotated twice), each box (inside the image, positive
width and height, known class) and converts to `Detections`. A sample with any problem is dropped as a whole:
keeping its other boxes would leave an unlabelled defect in a training frame, which teaches the model to ignore it.
What was dropped (images, boxes) and assumed (defect-free frames, discovered classes) goes to `Dataset.notes`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.detections import Detections
from finetune.data.dataset import Dataset, Progress, ReadNotes, Sample, TaskSample, no_progress
from finetune.data.files import ImageProblem, decode_image, read_class_file
from finetune.data.issues import AnnotationError, AnnotationIssue, IssueKind, IssueLog, Location

_PIXEL_TOLERANCE = 1e-3  # float noise from normalised formats must not flag a box that touches the border


@dataclass(frozen=True)
class RawBox:
    """A box as written in the file: pixel xyxy, or fractions of the image size when `normalized`.

    `binned` boxes come from `<loc_N>` bins, where x1 == x2 means "narrower than one bin", not an empty box.
    `segmentation` is the instance's mask as the file has it (COCO polygons or RLE, or a decoded boolean mask).
    """

    label: str
    xyxy: tuple[float, float, float, float]
    location: Location
    normalized: bool = False
    binned: bool = False
    segmentation: Any = None


@dataclass
class RawSample:
    """An image path, its declared size (if the format stores one), boxes, and problems found while parsing.

    `unlabelled` marks an image without an annotation file that the caller chose to take as defect-free;
    `bad_boxes` counts box entries that did not parse, so a dropped image's box count includes them.
    """

    image: Path
    location: Location
    boxes: list[RawBox] = field(default_factory=list)
    declared_size: tuple[int, int] | None = None
    problems: list[AnnotationIssue] = field(default_factory=list)
    unlabelled: bool = False
    bad_boxes: int = 0

    def problem(self, location: Location, message: str, kind: IssueKind = IssueKind.OTHER) -> None:
        self.problems.append(AnnotationIssue(location, message, kind))

    def without_annotation(self, missing: Path, as_good: bool, what: str, remedy: str) -> None:
        """The image has no annotation file: defect-free when `as_good`, else a problem saying how to fix it."""
        self.unlabelled = as_good
        if not as_good:
            self.problem(self.location, f"no {what} {missing}; pass --unlabelled-as-good if images without one "
                         f"are defect-free, or {remedy}", IssueKind.NO_ANNOTATION)

    def box_problem(self, location: Location, message: str, kind: IssueKind = IssueKind.BAD_BOX) -> None:
        """A box entry that could not be used at all (still counted as a box when the image is dropped)."""
        self.bad_boxes += 1
        self.problem(location, message, kind)


def first_seen_classes(raws: Sequence[RawSample]) -> tuple[str, ...]:
    """Class names in the order they first appear, for formats without a class list."""
    return tuple(_label_counts(raws))


def _label_counts(raws: Sequence[RawSample]) -> Counter[str]:
    return Counter(box.label for raw in raws for box in raw.boxes)


def resolve_classes(
    given: tuple[str, ...] | None, class_file: Path, raws: Sequence[RawSample], discover: bool, log: IssueLog
) -> tuple[tuple[str, ...], str]:
    """The class list and where it came from: `given`, else `class_file`, else the labels (only if `discover`).

    Without a list a misspelt label would silently become a class of its own, so taking the labels as they are
    must be asked for; otherwise an unskippable issue lists the labels found and the ways to fix it.
    """
    if given is not None:
        return given, "given"
    if class_file.is_file():
        return read_class_file(class_file), "class file"
    counts = _label_counts(raws)
    if not discover:
        found = ", ".join(f"{name!r} ({count} box{'es' if count != 1 else ''})" for name, count in counts.items())
        message = (f"no class list (no --classes, no {class_file.name}); the labels name {len(counts)} class(es): "
                   f"{found or 'none'}. Write the names in order to {class_file} (one per line) or pass "
                   f"--classes {','.join(counts) or 'a,b'}, or pass --discover-classes to take them as found")
        log.add(Location(class_file.parent), message, IssueKind.NO_CLASS_LIST)
    return tuple(counts), "labels"


def build_dataset(
    raws: Sequence[RawSample],
    class_names: tuple[str, ...],
    log: IssueLog,
    skip_invalid: bool,
    progress: Progress = no_progress,
    root: Path | None = None,
    classes_from: str = "format",
    tasks: Sequence[TaskSample] = (),
    dropped_task_lines: int = 0,
) -> Dataset:
    """Check every raw sample; bad ones are dropped and their problems go to `log`, which then `finish`es.
    `tasks` are region-task lines already checked (finetune/data/tasks.py), their problems already in `log`."""
    _flag_duplicate_images(raws)
    samples: list[Sample] = []
    dropped: list[RawSample] = []
    for raw in progress(raws, "decoding images, checking boxes"):
        sample = assemble_one(raw, class_names)
        if isinstance(sample, Sample):
            samples.append(sample)
        else:
            log.extend(sample)
            dropped.append(raw)
    dropped_ids = {id(raw) for raw in dropped}
    unlabelled = tuple(raw.image for raw in raws if raw.unlabelled and id(raw) not in dropped_ids)
    notes = ReadNotes(tuple(raw.image for raw in dropped), sum(len(raw.boxes) + raw.bad_boxes for raw in dropped),
                      unlabelled, classes_from, dropped_task_lines)
    dataset = Dataset(class_names, samples, root=root, notes=notes, tasks=list(tasks))
    try:
        dataset.skipped = log.finish(skip_invalid)
    except AnnotationError as error:
        error.dataset = dataset
        raise
    return dataset


def _flag_duplicate_images(raws: Sequence[RawSample]) -> None:
    """An image described twice has two, likely conflicting, sets of boxes: every description is a problem."""
    by_image: dict[Path, list[RawSample]] = {}
    for raw in raws:
        by_image.setdefault(raw.image.absolute(), []).append(raw)
    for image, group in by_image.items():
        for raw in group if len(group) > 1 else ():
            others = ", ".join(str(other.location) for other in group if other is not raw)
            raw.problem(raw.location, f"image {image} is annotated more than once (also at {others})",
                        IssueKind.DUPLICATE)


def assemble_one(raw: RawSample, class_names: tuple[str, ...]) -> Sample | list[AnnotationIssue]:
    """The sample, once its image decodes and every box is inside it and of a known class; else its problems."""
    problems = list(raw.problems)
    try:
        size = decode_image(raw.image)
    except ImageProblem as error:
        return [*problems, AnnotationIssue(raw.location, str(error), error.kind)]
    if raw.declared_size is not None and tuple(raw.declared_size) != size:
        message = f"declared size {_wxh(raw.declared_size)} but {raw.image} is {_wxh(size)}"
        problems.append(AnnotationIssue(raw.location, message, IssueKind.SIZE_MISMATCH))
    pixel_boxes = [_to_pixels(box, size) for box in raw.boxes]
    for box, xyxy in zip(raw.boxes, pixel_boxes, strict=True):
        problems += [AnnotationIssue(box.location, message, kind)
                     for kind, message in box_problems(box, xyxy, size, class_names)]
    masks = instance_masks(raw.boxes, size, problems)
    if problems:
        return problems
    labels = [box.label for box in raw.boxes]
    xyxy_array = np.asarray(pixel_boxes, dtype=np.float32).reshape(-1, 4)
    return Sample(raw.image, Detections.from_labels(labels, xyxy_array, class_names, size, mask=masks))


def instance_masks(boxes: Sequence[RawBox], size: tuple[int, int], problems: list[AnnotationIssue]
                   ) -> np.ndarray | None:
    """The boxes' masks (None when no box has one); a box without one beside boxes with one, or a mask that does
    not fit the image, is a problem at that box."""
    from finetune.data.masks import segmentation_mask

    if all(box.segmentation is None for box in boxes):
        return None
    masks = []
    for box in boxes:
        if box.segmentation is None:
            problems.append(AnnotationIssue(box.location, "no segmentation, while other instances of this image "
                                            "have one: every instance needs its mask", IssueKind.BAD_BOX))
            continue
        try:
            mask = (box.segmentation if isinstance(box.segmentation, np.ndarray)
                    else segmentation_mask(box.segmentation, size))
        except ValueError as exc:
            problems.append(AnnotationIssue(box.location, f"segmentation: {exc}", IssueKind.BAD_BOX))
            continue
        masks.append(mask)
    return np.asarray(masks, dtype=bool) if len(masks) == len(boxes) else None


def box_problems(
    box: RawBox, xyxy: tuple[float, float, float, float], size: tuple[int, int], class_names: tuple[str, ...]
) -> list[tuple[IssueKind, str]]:
    """(kind, message) for everything wrong with one box (empty when it is fine); each message names the value."""
    x1, y1, x2, y2 = xyxy
    w, h = size
    shown = ", ".join(f"{v:g}" for v in box.xyxy)
    problems = []
    if box.label not in class_names:
        problems.append((IssueKind.UNKNOWN_CLASS, f"unknown class {box.label!r}; known classes: {list(class_names)}"))
    if not all(np.isfinite(xyxy)):
        return [*problems, (IssueKind.BAD_BOX, f"box ({shown}) has a non-finite coordinate")]
    for axis, low, high in (("x", x1, x2), ("y", y1, y2)):
        if high < low:
            problems.append((IssueKind.EMPTY_BOX, f"box ({shown}): {axis}2 < {axis}1"))
        elif high == low and not box.binned:
            extent = "width" if axis == "x" else "height"
            problems.append((IssueKind.EMPTY_BOX, f"box ({shown}): zero {extent} ({axis}1 = {axis}2)"))
    tol = _PIXEL_TOLERANCE
    if min(x1, x2, y1, y2) < -tol or max(x1, x2) > w + tol or max(y1, y2) > h + tol:
        problems.append((IssueKind.OUTSIDE, f"box ({shown}) lies outside the {_wxh(size)} image"))
    return problems


def _to_pixels(box: RawBox, size: tuple[int, int]) -> tuple[float, float, float, float]:
    if not box.normalized:
        return box.xyxy
    w, h = size
    x1, y1, x2, y2 = box.xyxy
    return (x1 * w, y1 * h, x2 * w, y2 * h)


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
