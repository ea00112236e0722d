"""What `data validate`, `data convert` and `data split` tell the user: summaries and the full list of problems.

`validate_dataset` reads a set the way `convert --skip-invalid` would, so every problem is collected (even one that
cannot be skipped, like a missing class list) and the summary shows what would be kept. A console shows at most
`LISTED` problems; the full list then goes to a file (`report_path`), never silently cut.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from finetune.data.convert import ReadOptions, read_dataset
from finetune.data.dataset import Dataset, Progress, Sample, no_progress
from finetune.data.issues import AnnotationError, AnnotationIssue, count_by_kind
from finetune.data.tasks import task_counts

LISTED = 50
NO_DEFECT = "(no defect)"
CLASS_SOURCES = {"given": "--classes", "class file": "classes.txt", "format": "the format",
                 "labels": "the labels, in first-seen order"}


@dataclass(frozen=True)
class Validation:
    """A checked data set: what reading kept (None when the annotation file could not be parsed) and every problem."""

    fmt: str
    src: Path
    dataset: Dataset | None
    issues: tuple[AnnotationIssue, ...]


def validate_dataset(
    fmt: str, src: Path, options: ReadOptions = ReadOptions(), progress: Progress = no_progress
) -> Validation:
    """Decode every image and check every annotation of `src`; raises only when the layout itself is wrong."""
    try:
        dataset = read_dataset(fmt, src, replace(options, skip_invalid=True), progress)
    except AnnotationError as error:
        return Validation(fmt, src, error.dataset, tuple(error.issues))
    return Validation(fmt, src, dataset, dataset.skipped)


def report_path(given: Path | None, src: Path) -> Path:
    """`given`, else `<data set name>-problems.txt` in the current folder (the data set may be read-only)."""
    if given is not None:
        return given
    resolved = src.resolve()
    name = resolved.stem if resolved.is_file() else resolved.name
    return Path.cwd() / f"{name or 'dataset'}-problems.txt"


def class_table(samples: Iterable[Sample], class_names: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """(class, images, boxes) per class in class order, then the images without boxes."""
    images: Counter[str] = Counter()
    boxes: Counter[str] = Counter()
    for sample in samples:
        labels = sample.detections.labels
        boxes.update(labels)
        images.update(set(labels) or {NO_DEFECT})
    rows = [(name, images[name], boxes[name]) for name in class_names]
    return [*rows, (NO_DEFECT, images[NO_DEFECT], 0)]


def summary_lines(validation: Validation) -> list[str]:
    """Images, boxes per class, what was dropped or assumed, and problems per kind."""
    dataset, issues = validation.dataset, validation.issues
    lines = [f"{validation.fmt} set {validation.src}"]
    if dataset is not None:
        lines += dataset_lines(dataset)
    if issues:
        lines.append(f"{len(issues)} problem(s), by kind:")
        lines += [f"  {count:>7}  {kind.value}" for kind, count in count_by_kind(issues)]
    else:
        lines.append("no problems")
    return lines


def dataset_lines(dataset: Dataset) -> list[str]:
    notes = dataset.notes
    total = len(dataset) + len(notes.dropped_images)
    lines = [f"{total} images, {dataset.box_count + notes.dropped_boxes} boxes; classes from "
             f"{CLASS_SOURCES.get(notes.classes_from, notes.classes_from)}",
             f"  {'class':<24} {'images':>7} {'boxes':>7}   (images without problems)"]
    rows = class_table(dataset, dataset.class_names)
    lines += [f"  {name:<24} {images:>7} {boxes:>7}" for name, images, boxes in rows]
    if notes.unlabelled_as_good:
        lines.append(f"{len(notes.unlabelled_as_good)} image(s) without annotation file taken as defect-free "
                     "(--unlabelled-as-good)")
    if notes.dropped_images:
        lines.append(f"{len(notes.dropped_images)} image(s) with problems, {notes.dropped_boxes} box(es) in them: "
                     "--skip-invalid drops them entirely")
    if dataset.tasks or notes.dropped_task_lines:
        lines.append(f"region-task lines (captions and phrases are not classes; {notes.dropped_task_lines} with "
                     "problems not counted):")
        lines += task_counts(dataset.tasks)
    return lines


def problem_lines(issues: Sequence[AnnotationIssue], full_list: Path | None, limit: int = LISTED) -> list[str]:
    """The first `limit` problems, then how many more and where the full list is."""
    lines = [f"  {issue}" for issue in issues[:limit]]
    if len(issues) > limit:
        where = f"full list in {full_list}" if full_list is not None else "full list could not be written"
        lines.append(f"  ... and {len(issues) - limit} more ({where})")
    return lines


def write_report(path: Path, summary: list[str], issues: Sequence[AnnotationIssue]) -> None:
    """The summary and every problem with its kind, one per line."""
    body = [*summary, "", f"{len(issues)} problem(s):", *(f"{issue}  [{issue.kind.value}]" for issue in issues)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(body) + "\n", encoding="utf-8")


def split_lines(class_names: tuple[str, ...], splits: dict[str, list[Sample]]) -> tuple[list[str], list[str]]:
    """A per-class table of images and boxes per split, and warnings for classes missing from a non-empty split."""
    names = [name for name, samples in splits.items() if samples]
    tables = {name: class_table(splits[name], class_names) for name in names}
    header = f"  {'class':<24}" + "".join(f" {name + ' images':>13} {'boxes':>7}" for name in names)
    lines = [header]
    for row, label in enumerate([*class_names, NO_DEFECT]):
        lines.append(f"  {label:<24}" + "".join(f" {tables[n][row][1]:>13} {tables[n][row][2]:>7}" for n in names))
    lines.append(f"  {'all':<24}" + "".join(f" {len(splits[n]):>13} {sum(t[2] for t in tables[n]):>7}"
                                           for n in names))
    warnings = [f"warning: class {label!r} has no image in {n}" for row, label in enumerate(class_names)
                for n in names if tables[n][row][1] == 0 and any(tables[m][row][1] for m in names)]
    return lines, warnings
