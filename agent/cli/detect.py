"""`edge-inspect detect`: run the detector on image files and print one JSON line per image."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import typer

from agent.detections import Detections
from agent.detector.score_calibration import ScoreCalibration

if TYPE_CHECKING:
    from agent.detector.tasks import Task


def detect(
    images: list[Path] = typer.Argument(..., help="image files (anything OpenCV reads)"),
    model: str = typer.Option(..., "--model", "-m", help="model directory (save_pretrained layout) or hub id"),
    adapter: Path | None = typer.Option(None, "--adapter", help="PEFT LoRA adapter directory, merged for inference"),
    classes: str | None = typer.Option(None, "--classes", help="comma-separated class names (default: classes.txt)"),
    annotate: Path | None = typer.Option(None, "--annotate", help="write frames with boxes and scores drawn here"),
    batch: int = typer.Option(4, "--batch", min=1, help="frames per forward pass"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    backend: str = typer.Option("torch-eager", "--backend", help="detector backend"),
    quantize: str = typer.Option("none", "--quantize", help="none | int8-weight (torch-fast: int8 text weights)"),
    raw_scores: bool = typer.Option(False, "--raw-scores", help="print the detector's raw scores, not the "
                                    "calibrated ones the daemon publishes (the model's calibration.json, or the "
                                    "adapter's manifest)"),
    task: str = typer.Option("od", "--task", help="od (defects, what the daemon serves) | dense-region-caption "
                             "(free-text captions with boxes) | phrase-grounding (boxes of --phrase); the last two "
                             "run on torch-eager and torch-fast, print 'regions' and raw scores"),
    phrase: str | None = typer.Option(None, "--phrase", help="phrase-grounding: what to find, e.g. 'scratch'"),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=8, help="decode budget per frame (tokens)"),
) -> None:
    """Detect defects in images (or run another Florence-2 task): one JSON line per image on stdout."""
    from agent.detector.base import DetectorError
    from agent.detector.tasks import TaskError, check_phrase, task_named

    try:
        chosen = task_named(task)
        phrase = check_phrase(chosen, phrase)
        answer = _answerer(chosen, phrase, backend, model, adapter, classes, device, max_new_tokens, raw_scores,
                          quantize)
    except (DetectorError, TaskError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    failures = 0
    try:
        for start in range(0, len(images), batch):
            failures += _detect_batch(images[start : start + batch], answer, annotate)
    except (DetectorError, TaskError) as exc:  # e.g. a backend that cannot run the task (onnx: <OD> only)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    sys.stdout.flush()
    if failures:
        raise typer.Exit(code=1)


Answer = Callable[[list[npt.NDArray[np.uint8]]], list[tuple[dict[str, Any], Detections]]]


def _answerer(task: Task, phrase: str, backend: str, model: str, adapter: Path | None, classes: str | None,
              device: str, max_new_tokens: int, raw_scores: bool, quantize: str = "none") -> Answer:
    """Frames -> (JSON fields, boxes to draw) per frame: `<OD>` defects (calibrated unless `raw_scores`), or regions."""
    from agent.detector.factory import create_detector
    from agent.detector.score_calibration import calibrated
    from agent.detector.tasks import OD, regions_as_detections, run_task_on

    detector = create_detector(backend, model, adapter, classes.split(",") if classes else None, device=device,
                               max_new_tokens=max_new_tokens, quantize=quantize)
    if task is OD:
        if not raw_scores:
            detector = calibrated(detector, score_calibration_of(model, adapter))
        return lambda frames: [({"defects": d.to_json()}, d) for d in detector.detect(frames)]
    fields = {"task": task.name, **({"phrase": phrase} if phrase else {})}

    def regions(frames: list[npt.NDArray[np.uint8]]) -> list[tuple[dict[str, Any], Detections]]:
        found = run_task_on(detector, frames, task, phrase)
        return [({**fields, "regions": [r.to_json() for r in rs]},
                 regions_as_detections(rs, (f.shape[1], f.shape[0]))) for f, rs in zip(frames, found, strict=True)]

    return regions


def _detect_batch(paths: list[Path], answer: Answer, annotate: Path | None) -> int:
    """Print one line per image of the batch (an unreadable one says why); returns how many could not be read."""
    from agent.annotate import write_annotated
    from agent.imageio import ImageReadError, read_image

    read, frames, failures = [], [], 0
    for path in paths:
        try:
            frames.append(read_image(path))
            read.append(path)
        except ImageReadError as exc:
            failures += 1
            typer.echo(json.dumps({"image": str(path), "error": str(exc)}))
    if not frames:
        return failures
    t0 = time.perf_counter()
    results = answer(frames)
    latency = (time.perf_counter() - t0) * 1e3 / len(frames)
    for path, frame, (fields, dets) in zip(read, frames, results, strict=True):
        typer.echo(json.dumps({"image": str(path), **fields, "latency_ms": round(latency, 2)}))
        if annotate is not None:
            write_annotated(frame, dets, annotate / f"{path.stem}.png")
    return failures


def score_calibration_of(model: str, adapter: Path | None) -> ScoreCalibration:
    """What the daemon would apply: an adapter's manifest calibration (a store version), else the model folder's."""
    from agent.detector.base import DetectorError
    from agent.detector.score_calibration import read_calibration
    from agent.model_choice import store_calibration
    from agent.store.files import StoreError
    from agent.store.manifest import MANIFEST, read_manifest

    if adapter is not None and (adapter / MANIFEST).is_file():
        try:
            return store_calibration(read_manifest(adapter).extra, adapter)
        except StoreError as exc:
            raise DetectorError(str(exc)) from exc
    return read_calibration(model) if Path(model).is_dir() else ScoreCalibration()
