"""The data set model every reader returns and every writer, trainer and evaluator consumes.

A `Sample` is one image file and its ground truth as `Detections` (pixels, scores 1.0, `image_size` = the file's
(width, height)). A `Dataset` is a class list plus samples; `root` is the folder image names are taken relative
to when the set is written out again (so `group1/1/x_test.jpg` keeps its sub-folders and cannot collide).

Besides its `<OD>` samples a Florence JSONL set may hold lines of the region tasks (`TaskSample`: region captions,
phrase grounding; finetune/data/tasks.py): they live in `Dataset.tasks`, apart from the samples, so everything that
counts, scores or converts defects sees exactly what it saw before.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol, TypeVar

from agent.detections import Detections
from finetune.data.issues import AnnotationIssue

_T = TypeVar("_T")


@dataclass(frozen=True)
class Sample:
    """One image and its boxes; `detections.class_names` is the data set's class list."""

    image: Path
    detections: Detections

    @property
    def image_size(self) -> tuple[int, int]:
        return self.detections.image_size


@dataclass(frozen=True)
class TaskSample:
    """One region-task line: an image, its task token (`<DENSE_REGION_CAPTION>`, `<CAPTION_TO_PHRASE_GROUNDING>`),
    the phrase a grounding line asks for, and its answer as `Detections` whose class names are the texts (the
    captions, or the phrase), in pixels. `detections` names them as a `Sample` does, so the same augmentation and
    image reading apply."""

    image: Path
    task: str
    detections: Detections
    phrase: str = ""

    @property
    def image_size(self) -> tuple[int, int]:
        return self.detections.image_size

    @property
    def prompt(self) -> str:
        return self.task + self.phrase

    def target(self, regions: Detections | None = None) -> str:
        """The answer text for `regions` (default: its own, as stored): `caption<loc_N>x4` per region, or for grounding
        Florence-2's form, the phrase once followed by every box; empty when there is nothing."""
        from agent.detector.loc import to_loc_text

        regions = self.detections if regions is None else regions
        return grounding_answer(self.phrase, regions) if self.phrase else to_loc_text(regions)


def grounding_answer(phrase: str, boxes: Detections) -> str:
    """Florence-2's phrase-grounding answer: the phrase once, then every box's four `<loc_N>`; empty without boxes."""
    from agent.detector.loc import to_bins

    if not len(boxes):
        return ""
    return phrase + "".join(f"<loc_{int(b)}>" for row in to_bins(boxes) for b in row)


@dataclass(frozen=True)
class ReadNotes:
    """What reading decided beyond the annotations themselves, so every summary can count it.

    `dropped_images` lost all their boxes (`dropped_boxes`, counting entries that did not even parse) because their
    annotation had a problem; `unlabelled_as_good` had no annotation file and were taken as defect-free on request;
    `classes_from` says where the class list came from: "given", "class file", "format" or "labels" (discovered);
    `dropped_task_lines` counts region-task lines dropped for a problem.
    """

    dropped_images: tuple[Path, ...] = ()
    dropped_boxes: int = 0
    unlabelled_as_good: tuple[Path, ...] = ()
    classes_from: str = "given"
    dropped_task_lines: int = 0


@dataclass
class Dataset:
    """Class names, samples, the issues skipped while reading (empty unless `skip_invalid`), what that dropped, and
    the region-task lines (`tasks`, Florence JSONL only)."""

    class_names: tuple[str, ...]
    samples: list[Sample]
    root: Path | None = None
    skipped: tuple[AnnotationIssue, ...] = field(default_factory=tuple)
    notes: ReadNotes = field(default_factory=ReadNotes)
    tasks: list[TaskSample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        if self.root is None and (self.samples or self.tasks):
            self.root = common_image_root([*self.samples, *self.tasks])

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def box_count(self) -> int:
        return sum(len(sample.detections) for sample in self.samples)

    def relative_name(self, sample: Sample | TaskSample) -> PurePosixPath:
        """The image's path relative to `root` (its bare file name when it lies elsewhere)."""
        image = sample.image.absolute()
        if self.root is not None and image.is_relative_to(self.root.absolute()):
            return PurePosixPath(image.relative_to(self.root.absolute()).as_posix())
        return PurePosixPath(sample.image.name)


def common_image_root(samples: Sequence[Sample | TaskSample]) -> Path:
    """The deepest folder holding every sample's image."""
    return Path(os.path.commonpath([sample.image.parent.absolute() for sample in samples]))


class Progress(Protocol):
    """Wraps an iteration to show progress (the CLI passes rich's `track`); must yield every item."""

    def __call__(self, items: Sequence[_T], description: str) -> Iterable[_T]: ...


def no_progress(items: Sequence[_T], description: str) -> Iterable[_T]:
    """The silent default `Progress`."""
    return items
