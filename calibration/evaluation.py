"""Judging a model the way the line would serve it: on the configured backend (`model.backend`), with the thresholds
the daemon would use, keeping every golden frame's predictions so the gate can bootstrap and the report can list
the frames whose verdict changes.

On an onnx line the daemon serves merged ONNX exports, never adapters: the current model is the store version's
export (or `model.path`, the base's export), and the candidate is exported first (`export_candidate`, at
`recalibration.onnx_precision`) into `<run_dir>/candidate/onnx/`, where the model store finds it when the candidate
is added (so a promotion by the run or an override from the station both store it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.decide import Thresholds
from agent.detections import Detections
from agent.detector.score_calibration import ScoreCalibration, calibrated
from finetune.data.dataset import Dataset, Progress, no_progress
from finetune.evaluate import DetectorLike, EvalOptions, predict, report_predictions
from finetune.metrics import EvalReport

EXPORT_DIR = "onnx"  # inside the candidate adapter folder, as the model store expects it


@dataclass(frozen=True)
class Contender:
    """A model the run evaluates, as the line would serve it."""

    name: str  # "current" or "candidate": also the folder of its evaluation report in the run folder
    adapter: Path | None
    thresholds: Thresholds
    export: Path | None = None  # onnx lines: its merged export (None: `model.path`, the base's own export)
    calibration: ScoreCalibration = field(default_factory=ScoreCalibration)  # its scores as the daemon publishes them


@dataclass
class GoldenResult:
    """One model's evaluation on the golden set: the report (written to `<run_dir>/<name>/`) and its predictions."""

    report: EvalReport
    predictions: list[Detections]
    files: dict[str, str] = field(default_factory=dict)  # plots, relative to the run folder


def line_detector(settings: Settings, base_dir: Path, contender: Contender) -> DetectorLike:
    """The detector the daemon would build for `contender` on this line's backend, device and token budget, with
    its score calibration (a candidate has none until the thresholds step fits one)."""
    from agent.detector.factory import create_detector

    m = settings.model
    if m.backend == "onnx":
        detector = create_detector("onnx", contender.export or m.path, None, m.classes, device=m.device,
                                   max_new_tokens=m.max_new_tokens)
    else:
        detector = create_detector(m.backend, base_dir, contender.adapter, m.classes, device=m.device,
                                   max_new_tokens=m.max_new_tokens, quantize=m.quantize)
    return calibrated(detector, contender.calibration)


def export_candidate(base_dir: Path, adapter: Path, precision: str, class_names: Sequence[str]) -> Path:
    """The candidate merged and exported for the onnx backend, into `adapter/onnx`."""
    from finetune.export import export_onnx

    return export_onnx(base_dir, adapter / EXPORT_DIR, adapter=adapter, precision=precision,
                       class_names=list(class_names))


def predict_golden(detector: DetectorLike, golden: Dataset, progress: Progress = no_progress) -> list[Detections]:
    return predict(detector, golden, EvalOptions().batch_size, progress)


def write_golden_report(golden: Dataset, predictions: list[Detections], contender: Contender, run_dir: Path,
                        model: str | None) -> GoldenResult:
    """Score `predictions` and write the report, plots and a few annotated frames into `<run_dir>/<name>/`."""
    class_names = golden.class_names
    thresholds = contender.thresholds.for_classes(class_names)
    report = report_predictions(golden, predictions, class_names, run_dir / contender.name, thresholds,
                                EvalOptions(annotated_frames=4), model)
    files = {key: f"{contender.name}/{report.files[key + '_png']}"
             for key in ("pr_curves", "confusion_matrix", "reliability")}
    return GoldenResult(report, predictions, files)


def summary(result: GoldenResult, images: int) -> dict[str, Any]:
    """What report.json's evaluation section says about one model."""
    report = result.report
    return {"map": report.map, "map50": report.map50, "per_class": report.per_class,
            "per_class_ap50": report.coco.per_class_ap50, "model": report.model, "images": images,
            "thresholds": report.thresholds, "files": dict(result.files)}
