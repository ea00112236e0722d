"""`edge-inspect data ...`: synthetic data sets, and validating, converting and splitting the sets users bring.

Nothing a user brings is silently changed: `validate` lists every problem, `convert` and `split` refuse a set with
problems unless `--skip-invalid` drops the affected images (counted), and what the formats leave open (an image
without annotation file, a set without class list) is an error unless a flag says what to do (counted too).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import track

from finetune.data.convert import ReadOptions, convert, read_dataset
from finetune.data.dataset import Dataset
from finetune.data.issues import AnnotationError, AnnotationIssue, IssueKind
from finetune.data.layouts import LAYOUTS
from finetune.data.report import (
    CLASS_SOURCES,
    LISTED,
    Validation,
    problem_lines,
    report_path,
    split_lines,
    summary_lines,
    validate_dataset,
    write_report,
)
from finetune.data.split import SplitResult, split_dataset, write_splits

data_app = typer.Typer(no_args_is_help=True, help="Data sets: synthetic frames; validate, convert and split yours.")

_T = TypeVar("_T")
_stderr = Console(stderr=True)


class SourceFormat(str, Enum):
    """Choices for --from (a test checks they match `finetune.data.convert.READ_FORMATS`)."""

    coco = "coco"
    voc = "voc"
    yolo = "yolo"
    deeppcb = "deeppcb"
    jsonl = "jsonl"
    masks = "masks"
    paligemma = "paligemma"


class TargetFormat(str, Enum):
    jsonl = "jsonl"
    coco = "coco"
    yolo = "yolo"
    voc = "voc"
    paligemma = "paligemma"


class Split(str, Enum):
    trainval = "trainval"
    test = "test"
    all = "all"


_SRC = typer.Argument(..., help="the data set (folder, or the annotation file for coco/jsonl)")
_FROM = typer.Option(..., "--from", help="source format (folder layouts below)")
_SKIP = typer.Option(False, "--skip-invalid",
                     help="drop every image whose annotation has a problem, with all its boxes; list and count them")
_SPLIT = typer.Option(None, "--split", help="deeppcb: which split list to read (default all)")
_TEMPLATES = typer.Option(False, "--include-templates", help="deeppcb: add the defect-free ID_temp.jpg frames")
_CLASSES = typer.Option(None, "--classes",
                        help="jsonl/voc/paligemma: the class list in order, e.g. a,b,c (over classes.txt)")
_DISCOVER = typer.Option(False, "--discover-classes",
                         help="jsonl/voc/paligemma without a class list: take the labels as found, in first-seen "
                              "order")
_UNLABELLED = typer.Option(False, "--unlabelled-as-good",
                           help="voc/yolo: an image without annotation file is a defect-free frame (else an error)")
_REPORT = typer.Option(None, "--report", help=f"file for the full problem list, written when over {LISTED} "
                       "(default: DIRNAME-problems.txt in the current folder)")
_OVERWRITE = typer.Option(False, "--overwrite", help="write into a non-empty output folder")


def rich_progress(items: Sequence[_T], description: str) -> Iterable[_T]:
    """Progress bar on stderr (so stdout stays a clean summary), only on a terminal; vanishes when done."""
    if not _stderr.is_terminal:
        return items
    return track(items, description=description, console=_stderr, transient=True)


def _options(skip_invalid: bool, split: Split | None, include_templates: bool, classes: str | None,
             unlabelled_as_good: bool, discover_classes: bool) -> ReadOptions:
    names = _split_names(classes) if classes is not None else None
    return ReadOptions(skip_invalid, split.value if split else None, include_templates, names, unlabelled_as_good,
                       discover_classes)


@data_app.command("validate", epilog=LAYOUTS)
def validate_command(
    src: Path = _SRC,
    from_format: SourceFormat = _FROM,
    split: Split | None = _SPLIT,
    include_templates: bool = _TEMPLATES,
    classes: str | None = _CLASSES,
    discover_classes: bool = _DISCOVER,
    unlabelled_as_good: bool = _UNLABELLED,
    report: Path | None = _REPORT,
) -> None:
    """Check a data set without writing anything: decode every image, check every box; list every problem.

    Prints images and boxes per class, and problems per kind.
    Exit code 0: no problems; 1: problems (listed); 2: the set cannot be read at all (wrong folder, bad option).
    """
    options = _options(False, split, include_templates, classes, unlabelled_as_good, discover_classes)
    try:
        validation = validate_dataset(from_format.value, src, options, rich_progress)
    except (ValueError, OSError) as error:
        _fail(error)
    summary = summary_lines(validation)
    typer.echo("\n".join(summary))
    issues = validation.issues
    full = _write_full_list(report_path(report, src), summary, issues) if report or len(issues) > LISTED else None
    if full is not None:
        typer.echo(f"report: {full}")
    if issues:
        typer.echo(f"problems{f' (first {LISTED})' if len(issues) > LISTED else ''}:")
        typer.echo("\n".join(problem_lines(issues, full)))
        raise typer.Exit(code=1)


@data_app.command("convert", epilog=LAYOUTS)
def convert_command(
    src: Path = _SRC,
    dst: Path = typer.Argument(..., help="output folder (created; must be empty unless --overwrite)"),
    from_format: SourceFormat = _FROM,
    to_format: TargetFormat = typer.Option(TargetFormat.jsonl, "--to", help="target format"),
    skip_invalid: bool = _SKIP,
    split: Split | None = _SPLIT,
    include_templates: bool = _TEMPLATES,
    classes: str | None = _CLASSES,
    discover_classes: bool = _DISCOVER,
    unlabelled_as_good: bool = _UNLABELLED,
    overwrite: bool = _OVERWRITE,
    report: Path | None = _REPORT,
) -> None:
    """Convert a detection data set between formats; every image is decoded, bad annotations are listed."""
    options = _options(skip_invalid, split, include_templates, classes, unlabelled_as_good, discover_classes)
    try:
        dataset = convert(from_format.value, to_format.value, src, dst, options, overwrite, rich_progress)
    except AnnotationError as error:
        _fail_with_problems(error, from_format.value, src, report)
    except (ValueError, OSError) as error:
        _fail(error)
    _warn_skipped(dataset, from_format.value, src, report)
    typer.echo(_summary(dataset, f"as {to_format.value} to {dst}"))


@data_app.command("split", epilog=LAYOUTS)
def split_command(
    src: Path = _SRC,
    out: Path = typer.Argument(..., help="output folder: OUT/train, OUT/val, OUT/test as Florence JSONL sets"),
    from_format: SourceFormat = typer.Option(SourceFormat.jsonl, "--from", help="source format (layouts below)"),
    val: float = typer.Option(0.2, "--val", help="fraction of images for validation"),
    test: float = typer.Option(0.0, "--test", help="fraction of images for test (0: no test split)"),
    seed: int = typer.Option(0, "--seed", help="same seed and images, same split"),
    skip_invalid: bool = _SKIP,
    split: Split | None = _SPLIT,
    include_templates: bool = _TEMPLATES,
    classes: str | None = _CLASSES,
    discover_classes: bool = _DISCOVER,
    unlabelled_as_good: bool = _UNLABELLED,
    overwrite: bool = _OVERWRITE,
) -> None:
    """Split a data set into train / val / test, stratified by class, reproducible from the image bytes and --seed.

    Each image goes with its rarest class; identical images stay together.
    Prints images and boxes per class per split.
    """
    options = _options(skip_invalid, split, include_templates, classes, unlabelled_as_good, discover_classes)
    try:
        dataset = read_dataset(from_format.value, src, options, rich_progress)
        result = split_dataset(dataset, val, test, seed, rich_progress)
        written = write_splits(dataset, result.splits, out, overwrite, rich_progress, result.tasks)
    except AnnotationError as error:
        _fail_with_problems(error, from_format.value, src, None)
    except (ValueError, OSError) as error:
        _fail(error)
    _warn_skipped(dataset, from_format.value, src, None)
    typer.echo(_summary(dataset, f"with seed {seed} into {out}", verb="split"))
    _print_split(dataset, result, written)


def _print_split(dataset: Dataset, result: SplitResult, written: dict[str, Path]) -> None:
    table, warnings = split_lines(dataset.class_names, result.splits)
    typer.echo("\n".join(table))
    if result.duplicates:
        typer.echo(f"{result.duplicates} image(s) repeat another image's bytes; each stays in its twin's split")
    if dataset.tasks:
        typer.echo("region-task lines (with their image): " + ", ".join(
            f"{name} {len(lines)}" for name, lines in result.tasks.items() if lines))
    for warning in warnings:
        typer.echo(warning, err=True)
    typer.echo("wrote " + ", ".join(f"{name}: {path}" for name, path in written.items()))


@data_app.command("synth")
def synth_command(
    out: Path = typer.Option(..., "--out", help="output folder for annotations.jsonl + images/"),
    count: int = typer.Option(..., "--count", min=1, help="number of frames"),
    seed: int = typer.Option(0, "--seed", help="generator seed (same seed, same bytes)"),
    size: int = typer.Option(256, "--size", help="frame width and height in pixels"),
    classes: str = typer.Option("scratch,hole,stain", "--classes", help="comma-separated defect class names"),
    overwrite: bool = _OVERWRITE,
) -> None:
    """Write synthetic defect frames as a Florence JSONL data set."""
    from finetune.data.synth import write_synthetic

    try:
        dataset = write_synthetic(out, count, seed, size, _split_names(classes), overwrite, rich_progress)
    except (ValueError, OSError) as error:
        _fail(error)
    typer.echo(_summary(dataset, f"as jsonl to {out}"))


def _split_names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _fail(error: Exception) -> NoReturn:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(code=2) from error


def _fail_with_problems(error: AnnotationError, fmt: str, src: Path, report: Path | None) -> NoReturn:
    """Every problem (the first `LISTED` here, all in the report file when more), then what the user can do."""
    issues = error.issues
    full = None
    if report or len(issues) > LISTED:
        full = _write_full_list(report_path(report, src), summary_lines(Validation(fmt, src, error.dataset,
                                                                                   tuple(issues))), issues)
    typer.echo(f"error: {len(issues)} annotation problem(s):", err=True)
    typer.echo("\n".join(problem_lines(issues, full)), err=True)
    if any(issue.kind is IssueKind.NO_CLASS_LIST for issue in issues):
        typer.echo("nothing written; a missing class list cannot be skipped (see its problem above)", err=True)
    else:
        typer.echo("nothing written; fix these or pass --skip-invalid to drop the affected images", err=True)
    raise typer.Exit(code=1) from error


def _warn_skipped(dataset: Dataset, fmt: str, src: Path, report: Path | None) -> None:
    skipped = dataset.skipped
    if not skipped:
        return
    full = None
    if report or len(skipped) > LISTED:
        full = _write_full_list(report_path(report, src), summary_lines(Validation(fmt, src, dataset, skipped)),
                                skipped)
    files = {issue.location.file for issue in skipped}
    typer.echo(f"warning: skipped invalid annotations in {len(files)} file(s): {len(skipped)} annotation "
               "problem(s):", err=True)
    typer.echo("\n".join(problem_lines(skipped, full)), err=True)


def _write_full_list(path: Path, summary: list[str], issues: Sequence[AnnotationIssue]) -> Path | None:
    try:
        write_report(path, summary, issues)
    except OSError as error:
        typer.echo(f"warning: could not write the full problem list to {path}: {error}", err=True)
        return None
    return path


def _summary(dataset: Dataset, where: str, verb: str = "wrote") -> str:
    """One line; every image or class a choice added or dropped is counted in it."""
    notes = dataset.notes
    text = (f"{verb} {len(dataset)} images, {dataset.box_count} boxes, {len(dataset.class_names)} classes "
            f"{list(dataset.class_names)}")
    if dataset.tasks:
        text += f", {len(dataset.tasks)} region-task line(s)"
    text += f" {where}"
    if dataset.skipped:
        text += (f", {len(dataset.skipped)} problem(s) skipped: dropped {len(notes.dropped_images)} image(s) "
                 f"with their {notes.dropped_boxes} box(es)")
        if notes.dropped_task_lines:
            text += f" and {notes.dropped_task_lines} region-task line(s)"
    if notes.unlabelled_as_good:
        text += f"; {len(notes.unlabelled_as_good)} image(s) without annotation file taken as defect-free"
    if notes.classes_from == "labels":
        text += f"; classes from {CLASS_SOURCES['labels']} (--discover-classes)"
    return text
