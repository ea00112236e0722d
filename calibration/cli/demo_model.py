"""`edge-inspect model demo`: train the tiny demo model, then fit and write its per-class thresholds.

It lives in calibration because it needs both the training recipe (finetune) and threshold fitting (calibration);
`edge-inspect demo` (agent) runs it in a child process when the demo model is missing and reads thresholds.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def demo_model_command(
    out: Path = typer.Option(..., "--out", help="directory to write the trained demo model to"),
    steps: int = typer.Option(500, "--steps", min=1, help="training steps (batch 16)"),
    seed: int = typer.Option(0, "--seed", help="seed for initialisation, synthetic frames and batches"),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0 = torch's default)"),
) -> None:
    """Train the tiny demo model from scratch on synthetic defects and report precision/recall on unseen frames."""
    import torch
    from transformers.utils import logging as hf_logging

    from finetune.tiny_train.demo import DemoRecipe

    hf_logging.disable_progress_bar()  # one progress bar (ours), not one per save/load
    if threads:
        torch.set_num_threads(threads)
    summary = train_with_progress_bar(out, steps, seed)
    (out / "demo_metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    typer.echo(json.dumps(summary))
    thresholds = fit_demo_thresholds(out, list(DemoRecipe().classes))
    (out / "thresholds.json").write_text(json.dumps(thresholds, indent=2) + "\n")


def train_with_progress_bar(out: Path, steps: int, seed: int) -> dict[str, Any]:
    """`build_demo_model` behind a rich progress bar; returns the summary that demo_metrics.json holds."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from finetune.tiny_train.demo import build_demo_model

    columns = (TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[loss]}"))
    with Progress(*columns) as bar:
        task = bar.add_task("train", total=steps, loss="")

        def report(step: int, total: int, values: dict[str, float]) -> None:
            bar.update(task, completed=step, loss=f"loss {values['loss']:.3f}")

        result, quality = build_demo_model(out, steps=steps, seed=seed, progress=report)
    return {"model": str(out), "steps": result.steps, "seconds": round(result.seconds, 1),
            "final_loss": {k: round(v, 4) for k, v in result.final.items()},
            "unseen_frames": quality.to_dict()}


def fit_demo_thresholds(model: Path, classes: list[str], frames: int = 48,
                        target_recall: float = 0.5) -> dict[str, float]:
    """Per-class thresholds at `target_recall` on unseen synthetic frames (a seed training never used).

    The tiny demo model is far less sure of itself than a real fine-tuned Florence-2 (its correct boxes score
    ~0.1-0.2), so the default threshold of 0.5 would pass every frame; a real box gets its thresholds from a
    recalibration run on its own line instead.
    """
    from agent.capture.synthetic import SyntheticGenerator
    from agent.detector.florence2 import Florence2Detector
    from calibration.thresholds import fit_thresholds, thresholds_of
    from finetune.metrics import class_pr_data

    typer.echo(f"fitting per-class thresholds for recall {target_recall} on {frames} unseen synthetic frames")
    detector = Florence2Detector(model, class_names=classes)
    size = detector.image_size[0]
    truth = SyntheticGenerator(seed=424242, size=size, classes=classes).frames(frames)
    predictions = [d for i in range(0, frames, 8) for d in detector.detect([f.image for f in truth[i : i + 8]])]
    pr = class_pr_data([f.detections for f in truth], predictions, classes)
    return thresholds_of(fit_thresholds(pr, target_recall, "recall", fallback=0.5))
