"""`finetune` and `export onnx` for the model families that are not Florence-2: the commands find the model's
family (`agent.detector.families.family_of`) and, for any other, hand over here; the family's `TrainingKit`
(finetune/families.py) does the work. Florence-2's LoRA options do not apply to these families."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer

from agent.detector.families import DEFAULT_FAMILY


def model_family(model: str | Path) -> str:
    """The model's family; an unreadable or foreign config.json ends the command with its message (exit 2)."""
    from agent.detector.base import DetectorError
    from agent.detector.families import family_of

    try:
        return family_of(model)
    except DetectorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc


def is_other_family(family: str) -> bool:
    """A family that fine-tunes whole model directories (Mask R-CNN); adapter families (Florence-2, PaliGemma 2)
    keep the LoRA path of `finetune` and `export onnx`."""
    from finetune.families import kit_for

    return family != DEFAULT_FAMILY and kit_for(family).trains_whole_models


def finetune_family(family: str, data_format: str, data: Path, val: Path | None, **recipe: object) -> None:
    """Read the data, run the family's fine-tuning with progress lines on stderr, print the JSON summary."""
    from finetune.data import AnnotationError, read_dataset
    from finetune.families import kit_for
    from finetune.family_requests import FinetuneRequest
    from finetune.train.config import TrainError

    kit = kit_for(family)
    if kit.finetune is None:
        _fail(f"the {kit.title} family cannot be fine-tuned here")
    try:
        train_set = read_dataset(data_format, data)
        val_set = read_dataset(data_format, val) if val is not None else None
        request = FinetuneRequest(train_set=train_set, val_set=val_set, progress=_progress, **recipe)  # type: ignore[arg-type]
        summary = kit.finetune(request)  # type: ignore[misc]
    except (AnnotationError, TrainError, OSError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(summary, default=str))


def export_family(family: str, model: str, out: Path, precision: str, class_names: list[str] | None) -> Path:
    from agent.detector.base import DetectorError
    from finetune.families import kit_for
    from finetune.family_requests import ExportRequest

    kit = kit_for(family)
    if kit.export_onnx is None:
        _fail(f"the {kit.title} family has no ONNX export")
    try:
        return kit.export_onnx(ExportRequest(Path(model), out, precision, class_names))  # type: ignore[misc]
    except (DetectorError, OSError, ValueError) as exc:
        _fail(str(exc))


def _progress(line: str) -> None:
    typer.echo(line, err=True)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)
