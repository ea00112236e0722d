"""The data set model every reader returns and every writer, trainer and evaluator consumes.

A `Sample` is one image file and its ground truth as `Detections` (pixels, scores 1.0, `image_size` = the file's
(width, height)). A `Dataset` is a class list plus samples; `root` is the folder image names are taken relative
to when the set is written out again (so `group1/1/x_test.jpg` keeps its sub-folders and cannot collide).
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
class ReadNotes:
    """What reading decided beyond the annotations themselves, so every summary can count it.

    `dropped_images` lost all their boxes (`dropped_boxes`, counting entries that did not even parse) because their
    annotation had a problem; `unlabelled_as_good` had no annotation file and were taken as defect-free on request;
    `classes_from` says where the class list came from: "given", "class file", "format" or "labels" (discovered).
    """

    dropped_images: tuple[Path, ...] = ()
    dropped_boxes: int = 0
    unlabelled_as_good: tuple[Path, ...] = ()
    classes_from: str = "given"


@dataclass
class Dataset:
    """Class names, samples, the issues skipped while reading (empty unless `skip_invalid`) and what that dropped."""

    class_names: tuple[str, ...]
    samples: list[Sample]
    root: Path | None = None
    skipped: tuple[AnnotationIssue, ...] = field(default_factory=tuple)
    notes: ReadNotes = field(default_factory=ReadNotes)

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        if self.root is None and self.samples:
            self.root = common_image_root(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def box_count(self) -> int:
        return sum(len(sample.detections) for sample in self.samples)

    def relative_name(self, sample: Sample) -> PurePosixPath:
        """The image's path relative to `root` (its bare file name when it lies elsewhere)."""
        image = sample.image.absolute()
        if self.root is not None and image.is_relative_to(self.root.absolute()):
            return PurePosixPath(image.relative_to(self.root.absolute()).as_posix())
        return PurePosixPath(sample.image.name)


def common_image_root(samples: Sequence[Sample]) -> Path:
    """The deepest folder holding every sample's image."""
    return Path(os.path.commonpath([sample.image.parent.absolute() for sample in samples]))


class Progress(Protocol):
    """Wraps an iteration to show progress (the CLI passes rich's `track`); must yield every item."""

    def __call__(self, items: Sequence[_T], description: str) -> Iterable[_T]: ...


def no_progress(items: Sequence[_T], description: str) -> Iterable[_T]:
    """The silent default `Progress`."""
    return items
