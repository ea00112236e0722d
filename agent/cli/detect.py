"""`edge-inspect detect`: run the detector on image files and print one JSON line per image."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

from agent.detector.score_calibration import ScoreCalibration


def detect(
    images: list[Path] = typer.Argument(..., help="image files (anything OpenCV reads)"),
    model: str = typer.Option(..., "--model", "-m", help="model directory (save_pretrained layout) or hub id"),
    adapter: Path | None = typer.Option(None, "--adapter", help="PEFT LoRA adapter directory, merged for inference"),
    classes: str | None = typer.Option(None, "--classes", help="comma-separated class names (default: classes.txt)"),
    annotate: Path | None = typer.Option(None, "--annotate", help="write frames with boxes and scores drawn here"),
    batch: int = typer.Option(4, "--batch", min=1, help="frames per forward pass"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    backend: str = typer.Option("torch-eager", "--backend", help="detector backend"),
    raw_scores: bool = typer.Option(False, "--raw-scores", help="print the detector's raw scores, not the "
                                    "calibrated ones the daemon publishes (the model's calibration.json, or the "
                                    "adapter's manifest)"),
) -> None:
    """Detect defects in images: one JSON line per image on stdout."""
    from agent.annotate import write_annotated
    from agent.detector.base import DetectorError
    from agent.detector.factory import create_detector
    from agent.detector.score_calibration import CalibrationError, calibrated
    from agent.imageio import ImageReadError, read_image

    try:
        detector = create_detector(backend, model, adapter, classes.split(",") if classes else None, device=device)
        if not raw_scores:
            detector = calibrated(detector, score_calibration_of(model, adapter))
    except (DetectorError, CalibrationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    failures = 0
    for start in range(0, len(images), batch):
        paths, frames = [], []
        for path in images[start : start + batch]:
            try:
                frames.append(read_image(path))
                paths.append(path)
            except ImageReadError as exc:
                failures += 1
                typer.echo(json.dumps({"image": str(path), "error": str(exc)}))
        if not frames:
            continue
        t0 = time.perf_counter()
        results = detector.detect(frames)
        latency = (time.perf_counter() - t0) * 1e3 / len(frames)
        for path, frame, dets in zip(paths, frames, results):
            line = {"image": str(path), "defects": dets.to_json(), "latency_ms": round(latency, 2)}
            typer.echo(json.dumps(line))
            if annotate is not None:
                write_annotated(frame, dets, annotate / f"{path.stem}.png")
    sys.stdout.flush()
    if failures:
        raise typer.Exit(code=1)


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
