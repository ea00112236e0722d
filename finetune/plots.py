"""Pictures of an evaluation and a training run: PR curves, confusion matrix, predictions vs ground truth, loss
and mAP curves. Drawing only: the numbers come from `finetune.metrics` and the training history.

matplotlib runs on the non-interactive Agg backend (no display on a factory box or in CI).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from agent.annotate import draw_detections
from agent.detections import Detections

if TYPE_CHECKING:
    from finetune.metrics import ClassPR
    from finetune.reliability import Reliability

GT_COLOUR = (0, 200, 0)  # BGR green


def plot_pr_curves(
    pr: Mapping[str, ClassPR], ap50: Mapping[str, float | None], path: Path, iou: float = 0.5
) -> Path:
    """Precision (interpolated envelope) against recall, one line per class with ground truth."""
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    drawn = 0
    for name, data in pr.items():
        if data.n_gt == 0:
            continue
        precision, recall, _ = data.curve()
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        ap = ap50.get(name)
        label = f"{name} (AP50 {ap:.3f}, {data.n_gt} boxes)" if ap is not None else name
        ax.step(np.concatenate([[0.0], recall]), np.concatenate([envelope[:1] if len(envelope) else [0.0], envelope]),
                where="post", label=label)
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no ground-truth boxes", ha="center", va="center", transform=ax.transAxes)
    _finish_axes(ax, "recall", "precision", f"Precision-recall per class (IoU {iou:g})")
    if drawn:
        ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def plot_reliability(curves: Mapping[str, Reliability], path: Path, title: str = "Score reliability") -> Path:
    """Fraction of boxes that are real against their mean score, per score bin: bars for all boxes, a line per
    class; on the diagonal a score means what it says. Bins with no box are left out."""
    from finetune.reliability import OVERALL

    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    for name, curve in curves.items():
        used = curve.count > 0
        ece = f"ECE {curve.ece:.3f}" if curve.ece is not None else "no boxes"
        label = f"{name} ({ece}, {curve.boxes} boxes)"
        if name == OVERALL:
            width = float(curve.edges[1] - curve.edges[0])
            ax.bar(curve.edges[:-1][used], curve.fraction_real[used], width=width, align="edge", alpha=0.3,
                   edgecolor="tab:blue", label=label)
        else:
            ax.plot(curve.mean_score[used], curve.fraction_real[used], "o-", markersize=4, label=label)
    _finish_axes(ax, "score (bin mean for classes, bin edges for all boxes)", "fraction of boxes that are real",
                 title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_confusion_matrix(matrix: npt.NDArray[np.int64], labels: Sequence[str], path: Path) -> Path:
    """Counts with ground truth on rows and predictions on columns; the last row/column is background."""
    size = max(5.0, 0.6 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    high = matrix.max() if matrix.size else 0
    for (row, col), value in np.ndenumerate(matrix):
        colour = "white" if high and value > high / 2 else "black"
        ax.text(col, row, str(int(value)), ha="center", va="center", color=colour, fontsize=9)
    ax.set_xlabel("prediction (background = missed)")
    ax.set_ylabel("ground truth (background = false alarm)")
    ax.set_title("Confusion matrix")
    return _save(fig, path)


def draw_comparison(frame: npt.NDArray[np.uint8], truth: Detections, predicted: Detections) -> npt.NDArray[np.uint8]:
    """Predictions drawn in their class colours with scores, ground truth as thin green boxes with `gt:` labels."""
    out = draw_detections(frame, predicted)
    for box in truth:
        x1, y1, x2, y2 = (round(v) for v in box.xyxy)
        cv2.rectangle(out, (x1, y1), (x2, y2), GT_COLOUR, 1)
        cv2.putText(out, f"gt:{box.label}", (x1, min(y2 + 10, out.shape[0] - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    GT_COLOUR, 1, cv2.LINE_AA)
    return out


def plot_training(history: list[dict[str, float]], epochs: list[dict[str, Any]], path: Path) -> Path:
    """Training loss per step, validation loss and mAP per epoch (right axis)."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="train loss", color="tab:blue")
    val = [(e["step"], e["val_loss"]) for e in epochs if e.get("val_loss") is not None]
    if val:
        ax.plot(*zip(*val), "o-", label="val loss", color="tab:orange")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    maps = [(e["step"], e["map"]) for e in epochs if e.get("map") is not None]
    if maps:
        right = ax.twinx()
        right.plot(*zip(*maps), "s--", label="val mAP", color="tab:green")
        right.set_ylim(0, 1)
        right.set_ylabel("mAP@[.5:.95]")
        right.legend(loc="upper center", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("LoRA fine-tuning")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _finish_axes(ax: Any, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
