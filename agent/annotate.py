"""Frames with boxes, labels and scores drawn: for `detect --annotate`, reports and the review queue."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from agent.detections import Detections

_PALETTE = [(0, 0, 255), (0, 200, 255), (255, 128, 0), (0, 200, 0), (255, 0, 255), (255, 255, 0), (128, 0, 255)]


def draw_detections(frame: npt.NDArray[np.uint8], dets: Detections) -> npt.NDArray[np.uint8]:
    """A copy of `frame` with each box and `label score` drawn in a per-class colour."""
    out = frame.copy()
    thickness = max(1, round(min(frame.shape[:2]) / 300))
    for box in dets:
        color = _PALETTE[box.class_id % len(_PALETTE)]
        x1, y1, x2, y2 = (round(v) for v in box.xyxy)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        text = f"{box.label} {box.score:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        ty = max(th + 2, y1)
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty), color, -1)
        cv2.putText(out, text, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def write_annotated(frame: npt.NDArray[np.uint8], dets: Detections, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), draw_detections(frame, dets)):
        raise OSError(f"could not write annotated frame to {path}")
    return path
