"""`edge-inspect data ...`: synthetic data sets and format conversion."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.progress import track

from finetune.data.convert import ReadOptions, convert
from finetune.data.dataset import Dataset
from finetune.data.issues import AnnotationError, AnnotationIssue, describe_issues

data_app = typer.Typer(no_args_is_help=True, help="Data sets: synthetic frames and format conversion.")

_T = TypeVar("_T")
_LISTED_ISSUES = 50
_stderr = Console(stderr=True)


class SourceFormat(str, Enum):
    """Choices for --from (a test checks they match `finetune.data.convert.READ_FORMATS`)."""

    coco = "coco"
    voc = "voc"
    yolo = "yolo"
    deeppcb = "deeppcb"
    jsonl = "jsonl"


class TargetFormat(str, Enum):
    jsonl = "jsonl"
    coco = "coco"
    yolo = "yolo"
    voc = "voc"


class Split(str, Enum):
    trainval = "trainval"
    test = "test"
    all = "all"


def rich_progress(items: Sequence[_T], description: str) -> Iterable[_T]:
    """Progress bar on stderr (so stdout stays a clean summary), only on a terminal; vanishes when done."""
    if not _stderr.is_terminal:
        return items
    return track(items, description=description, console=_stderr, transient=True)


@data_app.command("convert")
def convert_command(
    src: Path = typer.Argument(..., help="source data set (folder, or annotation file for coco/jsonl)"),
    dst: Path = typer.Argument(..., help="output folder (created; must be empty unless --overwrite)"),
    from_format: SourceFormat = typer.Option(..., "--from", help="source format"),
    to_format: TargetFormat = typer.Option(TargetFormat.jsonl, "--to", help="target format"),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="drop images with bad annotations, warn"),
    split: Split | None = typer.Option(None, "--split", help="deeppcb: which split list to read (default all)"),
    include_templates: bool = typer.Option(False, "--include-templates",
                                           help="deeppcb: add the defect-free {ID}_temp.jpg frames, no boxes"),
    classes: str | None = typer.Option(None, "--classes", help="jsonl/voc: fixed class order, e.g. a,b,c"),
    overwrite: bool = typer.Option(False, "--overwrite", help="write into a non-empty output folder"),
) -> None:
    """Convert a detection data set between formats; bad annotations are listed with file and line."""
    names = _split_names(classes) if classes is not None else None
    options = ReadOptions(skip_invalid, split.value if split else None, include_templates, names)
    try:
        dataset = convert(from_format.value, to_format.value, src, dst, options, overwrite, rich_progress)
    except AnnotationError as error:
        typer.echo(f"error: {describe_issues(error.issues, _LISTED_ISSUES)}", err=True)
        typer.echo("nothing written; fix these or pass --skip-invalid to drop the affected images", err=True)
        raise typer.Exit(code=1) from error
    except (ValueError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error
    _warn_skipped(dataset.skipped)
    typer.echo(_summary(dataset, to_format.value, dst))


@data_app.command("synth")
def synth_command(
    out: Path = typer.Option(..., "--out", help="output folder for annotations.jsonl + images/"),
    count: int = typer.Option(..., "--count", min=1, help="number of frames"),
    seed: int = typer.Option(0, "--seed", help="generator seed (same seed, same bytes)"),
    size: int = typer.Option(256, "--size", help="frame width and height in pixels"),
    classes: str = typer.Option("scratch,hole,stain", "--classes", help="comma-separated defect class names"),
    overwrite: bool = typer.Option(False, "--overwrite", help="write into a non-empty output folder"),
) -> None:
    """Write synthetic defect frames as a Florence JSONL data set."""
    from finetune.data.synth import write_synthetic

    try:
        dataset = write_synthetic(out, count, seed, size, _split_names(classes), overwrite, rich_progress)
    except (ValueError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error
    typer.echo(_summary(dataset, "jsonl", out))


def _split_names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _warn_skipped(skipped: tuple[AnnotationIssue, ...]) -> None:
    if not skipped:
        return
    files = {issue.location.file for issue in skipped}
    typer.echo(f"warning: skipped invalid annotations in {len(files)} file(s): "
               f"{describe_issues(list(skipped), _LISTED_ISSUES)}", err=True)


def _summary(dataset: Dataset, fmt: str, dst: Path) -> str:
    skipped = f", {len(dataset.skipped)} problem(s) skipped" if dataset.skipped else ""
    return (f"wrote {len(dataset)} images, {dataset.box_count} boxes, {len(dataset.class_names)} classes "
            f"{list(dataset.class_names)} as {fmt} to {dst}{skipped}")
