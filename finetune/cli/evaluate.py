"""`edge-inspect evaluate`: run a model over a labelled data set and write metrics, plots and annotated frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from finetune.cli.data import SourceFormat, rich_progress


def parse_thresholds(text: str) -> float | dict[str, float]:
    """`0.4` (every class) or `scratch=0.4,hole=0.6`; a malformed item raises `typer.BadParameter` naming it."""
    text = text.strip()
    if "=" not in text:
        try:
            return float(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is neither a number nor class=value pairs") from None
    pairs: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        try:
            pairs[name.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"threshold {item!r}: {value!r} is not a number") from None
    return pairs


def evaluate_command(
    model: str = typer.Option(..., "--model", "-m", help="model directory (save_pretrained layout) or hub id"),
    data: Path = typer.Option(..., "--data", help="labelled data set (folder, or annotation file for coco/jsonl)"),
    out: Path = typer.Option(..., "--out", help="report folder (metrics.json, plots, annotated frames)"),
    adapter: Path | None = typer.Option(None, "--adapter", help="PEFT LoRA adapter directory, merged for inference"),
    data_format: SourceFormat = typer.Option(SourceFormat.jsonl, "--format", help="data set format"),
    iou: float = typer.Option(0.5, "--iou", min=0.05, max=1.0, help="IoU for PR data and confusion matrix"),
    thresholds: str = typer.Option("0.5", "--thresholds", help="score threshold(s): 0.5 or scratch=0.4,hole=0.6"),
    batch: int = typer.Option(4, "--batch", min=1, help="frames per forward pass"),
    annotated: int = typer.Option(8, "--annotated", min=0, help="how many annotated frames to write (worst first)"),
    classes: str | None = typer.Option(None, "--classes", help="model class names (default: the model's classes.txt)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    backend: str = typer.Option("torch-eager", "--backend", help="detector backend"),
    raw_scores: bool = typer.Option(False, "--raw-scores",
                                    help="ignore the model's calibration.json: judge the detector's own scores"),
) -> None:
    """Evaluate a detector: COCO mAP, per-class AP, PR curves, confusion matrix, false rejects on good frames, and
    how calibrated its scores are (ECE, reliability diagram). Scores are calibrated with the model directory's
    calibration.json when it has one, as the daemon publishes them."""
    from agent.detector.base import DetectorError
    from agent.detector.factory import create_detector
    from agent.detector.score_calibration import IDENTITY, calibrated, read_calibration
    from agent.imageio import ImageReadError
    from finetune.data import AnnotationError, read_dataset
    from finetune.evaluate import EvalOptions, evaluate
    from finetune.metrics import EvalError

    cut = parse_thresholds(thresholds)
    try:
        dataset = read_dataset(data_format.value, data, progress=rich_progress)
        calibration = IDENTITY if raw_scores else read_calibration(model)
        detector = calibrated(create_detector(backend, model, adapter, classes.split(",") if classes else None,
                                              device=device), calibration)
        report = evaluate(detector, dataset, out, cut, EvalOptions(iou=iou, batch_size=batch,
                                                                   annotated_frames=annotated), rich_progress)
    except (AnnotationError, DetectorError, EvalError, ImageReadError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    if not calibration.is_identity:
        typer.echo(f"scores calibrated with {model}/calibration.json (--raw-scores to judge the detector's own)")
    typer.echo(summary(report.to_json(), out))


def summary(metrics: dict[str, Any], out: Path) -> str:
    """A few lines for the terminal; the full numbers are in metrics.json."""
    per_class = ", ".join(f"{name} {ap:.3f}" if ap is not None else f"{name} -"
                          for name, ap in metrics["per_class"].items())
    fr = metrics["false_rejects"]
    rate = f"{fr['rate']:.1%}" if fr["rate"] is not None else "n/a"
    segm = metrics.get("segm")
    masks = f"\nmask mAP {segm['map']:.3f}, mask mAP50 {segm['map50']:.3f}" if segm else ""
    return (f"{metrics['images']} images, {metrics['gt_boxes']} boxes: mAP {metrics['map']:.3f}, "
            f"mAP50 {metrics['map50']:.3f}{masks}\nAP per class: {per_class}\n"
            f"false rejects: {fr['count']} of {fr['known_good_frames']} known-good frames ({rate})\n"
            f"{calibration_line(metrics['score_calibration'])}\n"
            f"report written to {out}/metrics.json")


def calibration_line(calibration: dict[str, Any]) -> str:
    """ECE of the box scores, overall and per class (`-`: no predicted box of that class)."""
    def ece(value: float | None) -> str:
        return f"{value:.3f}" if value is not None else "-"

    per_class = ", ".join(f"{name} {ece(value)}" for name, value in calibration["per_class_ece"].items())
    return (f"score calibration error (ECE, {calibration['binning']}, {calibration['boxes']} boxes): "
            f"{ece(calibration['ece'])}; per class: {per_class}")
