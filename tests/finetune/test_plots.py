"""Pictures: PR curves, confusion matrix, training curves and predictions drawn against ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.detections import Detections
from agent.imageio import read_image
from finetune.metrics import ClassPR
from finetune.plots import GT_COLOUR, draw_comparison, plot_confusion_matrix, plot_pr_curves, plot_training

CLASSES = ("scratch", "hole")


def test_each_plot_is_written_as_a_png(tmp_path: Path) -> None:
    pr = {"scratch": ClassPR("scratch", np.array([0.9, 0.4]), np.array([True, False]), 1),
          "hole": ClassPR("hole", np.zeros(0), np.zeros(0, dtype=bool), 0)}
    history = [{"step": 1.0, "loss": 2.0}, {"step": 2.0, "loss": 1.0}]
    epochs = [{"step": 2, "val_loss": 1.5, "map": 0.25}]
    paths = [plot_pr_curves(pr, {"scratch": 1.0, "hole": None}, tmp_path / "pr.png"),
             plot_confusion_matrix(np.eye(3, dtype=np.int64), [*CLASSES, "background"], tmp_path / "cm.png"),
             plot_training(history, epochs, tmp_path / "run" / "training.png")]
    for path in paths:
        assert read_image(path).shape[0] > 100


def test_a_pr_plot_without_ground_truth_still_renders(tmp_path: Path) -> None:
    empty = {"hole": ClassPR("hole", np.zeros(0), np.zeros(0, dtype=bool), 0)}
    assert read_image(plot_pr_curves(empty, {}, tmp_path / "pr.png")).shape[0] > 100


def test_ground_truth_is_drawn_in_green_beside_the_predictions() -> None:
    frame = np.zeros((64, 64, 3), np.uint8)
    truth = Detections.from_labels(["hole"], [[10, 10, 30, 30]], CLASSES, (64, 64))
    drawn = draw_comparison(frame, truth, Detections.empty(CLASSES, (64, 64)))
    assert drawn.shape == frame.shape and tuple(drawn[10, 20]) == GT_COLOUR and frame.sum() == 0
