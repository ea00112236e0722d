"""Evaluate a detector on a data set and write the report: the orchestration around `finetune.metrics`.

`evaluate(detector, dataset, out_dir)` runs the detector over the set (batched), scores the predictions with
`finetune.metrics.score_predictions` (faster-coco-eval on the detector's real per-box scores), and writes
`metrics.json` (with the scores' calibration error, `score_calibration`), `confusion_matrix.json`, `pr_curves.json`
and PNG plots (`finetune.plots`: PR curves, confusion matrix, reliability diagram) plus a few annotated frames to
`out_dir`. The scoring itself has no I/O and lives in `finetune.metrics`, so the recalibration run can
reuse it on cached predictions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from agent.detections import Detections
from finetune.data.dataset import Dataset, Progress, no_progress
from finetune.metrics import BACKGROUND, EvalError, EvalReport, Thresholds, pr_curves_json, score_predictions


class DetectorLike(Protocol):
    class_names: tuple[str, ...]

    def detect(self, frames: list[npt.NDArray[np.uint8]]) -> list[Detections]: ...


@dataclass(frozen=True)
class EvalOptions:
    iou: float = 0.5  # IoU for PR data, the confusion matrix and the operating point (mAP uses COCO's .5:.95)
    batch_size: int = 4
    annotated_frames: int = 8
    plots: bool = True


# ----- running a detector over a data set ----------------------------------------------------------------------------
def align_ground_truth(dataset: Dataset, class_names: Sequence[str]) -> list[Detections]:
    """The data set's boxes re-indexed into the model's class list; a class the model lacks raises `EvalError`."""
    missing = [name for name in dataset.class_names if name not in class_names]
    if missing:
        raise EvalError(f"data set class(es) {missing} are unknown to the model (model classes: {list(class_names)})")
    return [Detections.from_labels(s.detections.labels, s.detections.xyxy, class_names, s.image_size,
                                   mask=s.detections.mask) for s in dataset.samples]


def predict(
    detector: DetectorLike, dataset: Dataset, batch_size: int = 4, progress: Progress = no_progress
) -> list[Detections]:
    """Run `detector` over every image of `dataset`, `batch_size` frames per call; one `Detections` per sample."""
    from agent.imageio import read_image

    if batch_size < 1:
        raise EvalError(f"batch_size={batch_size}: must be at least 1")
    starts = list(range(0, len(dataset.samples), batch_size))
    predictions: list[Detections] = []
    for start in progress(starts, f"detecting ({len(dataset.samples)} images)"):
        batch = dataset.samples[start : start + batch_size]
        results = detector.detect([read_image(sample.image) for sample in batch])
        if len(results) != len(batch):
            raise EvalError(f"detector returned {len(results)} results for a batch of {len(batch)} frames")
        predictions.extend(results)
    return predictions


def evaluate(
    detector: DetectorLike,
    dataset: Dataset,
    out_dir: Path,
    thresholds: Thresholds = None,
    options: EvalOptions = EvalOptions(),
    progress: Progress = no_progress,
) -> EvalReport:
    """Run, score and write the report (metrics.json, confusion_matrix.json, pr_curves.json, PNGs, frames)."""
    class_names = tuple(detector.class_names)
    align_ground_truth(dataset, class_names)  # an unknown class fails before the detector runs
    predictions = predict(detector, dataset, options.batch_size, progress)
    return report_predictions(dataset, predictions, class_names, out_dir, thresholds, options,
                              getattr(detector, "version", None))


def report_predictions(
    dataset: Dataset,
    predictions: Sequence[Detections],
    class_names: Sequence[str],
    out_dir: Path,
    thresholds: Thresholds = None,
    options: EvalOptions = EvalOptions(),
    model: str | None = None,
) -> EvalReport:
    """Score predictions made elsewhere (one per sample, e.g. kept to compare two models frame by frame) and write
    the same report as `evaluate`."""
    ground_truth = align_ground_truth(dataset, class_names)
    names = [dataset.relative_name(sample).as_posix() for sample in dataset.samples]
    report = score_predictions(ground_truth, predictions, class_names, names, thresholds, options.iou)
    report.model = model
    if options.annotated_frames:
        write_annotated_frames(report, dataset, ground_truth, predictions, Path(out_dir), options.annotated_frames)
    write_report(report, Path(out_dir), options)
    return report


def write_report(report: EvalReport, out_dir: Path, options: EvalOptions = EvalOptions()) -> None:
    """JSON files and (with `options.plots`) PNG plots; records their names in `report.files`, metrics.json last."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "confusion_matrix.json", report.confusion_json())
    _write_json(out_dir / "pr_curves.json", pr_curves_json(report.pr, report.iou))
    report.files.update({"metrics": "metrics.json", "confusion_matrix": "confusion_matrix.json",
                         "pr_curves": "pr_curves.json"})
    if options.plots:
        from finetune.plots import plot_confusion_matrix, plot_pr_curves, plot_reliability

        plot_pr_curves(report.pr, report.coco.per_class_ap50, out_dir / "pr_curves.png", report.iou)
        plot_confusion_matrix(report.confusion, [*report.class_names, BACKGROUND], out_dir / "confusion_matrix.png")
        plot_reliability(report.reliability(), out_dir / "reliability.png",
                         f"Score reliability (real: IoU >= {report.iou:g} with a box of its class)")
        report.files.update({"pr_curves_png": "pr_curves.png", "confusion_matrix_png": "confusion_matrix.png",
                             "reliability_png": "reliability.png"})
    _write_json(out_dir / "metrics.json", report.to_json())


def write_annotated_frames(
    report: EvalReport,
    dataset: Dataset,
    ground_truth: Sequence[Detections],
    predictions: Sequence[Detections],
    out_dir: Path,
    count: int,
) -> list[Path]:
    """The `count` frames with the most errors at the operating thresholds, ground truth and predictions drawn."""
    from agent.imageio import read_image
    from finetune.plots import draw_comparison

    worst = sorted(range(len(ground_truth)), key=lambda i: (-report.frame_errors[i], i))[:count]
    written = []
    for index in worst:
        sample = dataset.samples[index]
        kept = predictions[index].above(report.thresholds)
        path = out_dir / "annotated" / f"{index:05d}_{sample.image.stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), draw_comparison(read_image(sample.image), ground_truth[index], kept)):
            raise OSError(f"could not write annotated frame {path}")
        written.append(path)
    report.files["annotated"] = "annotated/"
    return written


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
