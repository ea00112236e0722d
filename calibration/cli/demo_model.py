"""`edge-inspect model demo`: train the tiny demo model, then fit and write its per-class score calibration
(calibration.json) and thresholds on the calibrated scores (thresholds.json).

It lives in calibration because it needs both the training recipe (finetune) and the fitting (calibration);
`edge-inspect demo` (agent) runs it in a child process when the demo model is missing and reads thresholds.json; the
daemon reads both from the model directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from agent.detector.score_calibration import ScoreCalibration


def demo_model_command(
    out: Path = typer.Option(..., "--out", help="directory to write the trained demo model to"),
    steps: int = typer.Option(500, "--steps", min=1, help="training steps (batch 16)"),
    seed: int = typer.Option(0, "--seed", help="seed for initialisation, synthetic frames and batches"),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0 = torch's default)"),
    skip_training: bool = typer.Option(False, "--skip-training", help="keep the model already in --out: only "
                                       "measure it and refit its score calibration and thresholds"),
) -> None:
    """Train the tiny demo model from scratch on synthetic defects; measure per-class precision/recall on unseen
    frames through the daemon's detector; fit its score calibration and thresholds."""
    import torch
    from transformers.utils import logging as hf_logging

    from calibration.score_calibration import write_calibration
    from finetune.tiny_train.demo import DemoRecipe

    hf_logging.disable_progress_bar()  # one progress bar (ours), not one per save/load
    if threads:
        torch.set_num_threads(threads)
    metrics = out / "demo_metrics.json"
    summary = json.loads(metrics.read_text()) if skip_training else train_with_progress_bar(out, steps, seed)
    summary["production_path"] = production_quality(out, list(DemoRecipe().classes))
    metrics.write_text(json.dumps(summary, indent=2) + "\n")
    typer.echo(json.dumps(summary))
    calibration, thresholds = fit_demo_scores(out, list(DemoRecipe().classes))
    write_calibration(out, calibration)
    (out / "thresholds.json").write_text(json.dumps(thresholds, indent=2) + "\n")


def train_with_progress_bar(out: Path, steps: int, seed: int) -> dict[str, Any]:
    """`build_demo_model` behind a rich progress bar; returns the summary that demo_metrics.json holds."""
    from finetune.cli.progress import training_bar
    from finetune.tiny_train.demo import build_demo_model

    with training_bar(steps) as report:
        result, quality = build_demo_model(out, steps=steps, seed=seed, progress=report)
    return {"model": str(out), "steps": result.steps, "seconds": round(result.seconds, 1),
            "final_loss": {k: round(v, 4) for k, v in result.final.items()},
            "unseen_frames": quality.to_dict()}


def fit_demo_scores(model: Path, classes: list[str], frames: int = 300,
                    target_precision: float = 0.9) -> tuple[ScoreCalibration, dict[str, float]]:
    """Per-class score calibration, then per-class thresholds at `target_precision` on the calibrated scores (the
    recalibration's default rule), both on unseen synthetic frames (a seed training never used). 300 frames: the
    demo model makes so few false boxes (~2 %) that fewer frames hold fewer than the 5 that even the pooled fit of
    all classes needs, and every class would keep raw scores.

    The tiny model's raw scores are not probabilities (~0.1-0.6 whether a box is real or not), so raw scores
    against the default threshold of 0.5 would misjudge frames; a real box gets both from a recalibration run on its
    own line instead.
    """
    from agent.detector.florence2 import Florence2Detector
    from calibration.score_calibration import calibrate_predictions, fit_calibration
    from calibration.thresholds import fit_thresholds, thresholds_of
    from finetune.metrics import class_pr_data
    from finetune.tiny_train.demo import DemoRecipe

    typer.echo(f"fitting per-class score calibration and thresholds for precision {target_precision} on {frames} "
               "unseen synthetic frames")
    detector = Florence2Detector(model, class_names=classes)
    size = detector.image_size[0]
    truth = DemoRecipe(classes=tuple(classes), image_size=size).generator(424242).frames(frames)
    predictions = [d for i in range(0, frames, 8) for d in detector.detect([f.image for f in truth[i : i + 8]])]
    boxes = [f.detections for f in truth]
    calibration = fit_calibration(class_pr_data(boxes, predictions, classes))
    pr = class_pr_data(boxes, calibrate_predictions(predictions, calibration), classes)
    return calibration, thresholds_of(fit_thresholds(pr, target_precision, "precision", fallback=0.5))


def production_quality(model: Path, classes: list[str], frames: int = 200, seed: int = 777_777,
                       iou: float = 0.5) -> dict[str, Any]:
    """Per-class precision and recall of every box the daemon's detector (grammar-constrained decoding) answers on
    `frames` unseen synthetic frames, one-to-one matches of the same class at IoU >= `iou`."""
    from agent.detector.florence2 import Florence2Detector
    from finetune.tiny_train.demo import DemoRecipe
    from finetune.tiny_train.evaluation import match_count

    typer.echo(f"measuring per-class precision/recall on {frames} unseen synthetic frames (the daemon's detector)")
    detector = Florence2Detector(model, class_names=classes)
    truth = DemoRecipe(classes=tuple(classes)).generator(seed).frames(frames)  # the frames it was trained on
    counts: dict[str, dict[str, float]] = {
        name: {"true_positives": 0, "predictions": 0, "ground_truth": 0} for name in classes}
    for start in range(0, frames, 8):
        batch = truth[start : start + 8]
        for frame, pred in zip(batch, detector.detect([f.image for f in batch])):
            for class_id, name in enumerate(classes):
                mine_pred = pred[pred.class_id == class_id]
                mine_truth = frame.detections[frame.detections.class_id == class_id]
                counts[name]["true_positives"] += match_count(mine_pred, mine_truth, iou)
                counts[name]["predictions"] += len(mine_pred)
                counts[name]["ground_truth"] += len(mine_truth)
    for row in counts.values():
        row["precision"] = round(row["true_positives"] / max(1, row["predictions"]), 4)
        row["recall"] = round(row["true_positives"] / max(1, row["ground_truth"]), 4)
    return {"frames": frames, "seed": seed, "iou": iou, "decoding": "grammar-constrained (Florence2Detector)",
            "classes": counts}
