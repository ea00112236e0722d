"""`onnx` backend of the `maskrcnn` family: ONNX Runtime over the one graph `edge-inspect export onnx` writes.

The graph takes one RGB frame of the export's fixed input size (1 x 3 x H x W, 0..1) and returns torchvision's
boxes, labels, scores and mask probabilities at that size. Each frame is resized to the input size (bilinear, as
torchvision resizes), and boxes and masks are scaled back to the frame. The export directory holds `model.onnx`,
`classes.txt` and `export.json` (`"family": "maskrcnn"`, `input_size`, `mask_threshold`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from agent.detections import Detections
from agent.detector.base import DetectorError, check_frame
from agent.detector.families import EXPORT_MANIFEST
from agent.detector.florence2 import model_version, read_class_names

GRAPH = "model.onnx"
EXPORT_FORMAT = "edge-inspect-maskrcnn-onnx/1"


def read_export_manifest(export_dir: Path) -> dict[str, Any]:
    """`export.json` of a Mask R-CNN export; a directory that is not one is a `DetectorError` saying what is missing."""
    path = export_dir / EXPORT_MANIFEST
    if not path.is_file() or not (export_dir / GRAPH).is_file():
        raise DetectorError(f"{export_dir} is not a Mask R-CNN ONNX export (needs {EXPORT_MANIFEST} and {GRAPH}); "
                            f"create one with `edge-inspect export onnx --model DIR --out {export_dir}`")
    manifest: dict[str, Any] = json.loads(path.read_text())
    if manifest.get("format") != EXPORT_FORMAT:
        raise DetectorError(f"{path}: format {manifest.get('format')!r} is not {EXPORT_FORMAT!r}")
    return manifest


class MaskRcnnOnnxDetector:
    """`detect(frames)` -> one `Detections` (with masks) per BGR frame, one graph run per frame."""

    def __init__(self, export_dir: str | Path, class_names: Sequence[str] | None = None, device: str = "auto") -> None:
        import onnxruntime as ort

        from agent.detector.onnx import choose_providers

        self.export_dir = Path(export_dir)
        manifest = read_export_manifest(self.export_dir)
        self.input_size = (int(manifest["input_size"][0]), int(manifest["input_size"][1]))  # width, height
        self.mask_threshold = float(manifest["mask_threshold"])
        self.class_names = read_class_names(str(self.export_dir), class_names)
        if len(self.class_names) != int(manifest["num_classes"]):
            raise DetectorError(f"{len(self.class_names)} class names {list(self.class_names)} for an export of "
                                f"{manifest['num_classes']} classes ({self.export_dir / EXPORT_MANIFEST})")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # torchvision's mask-pasting loop makes ORT warn about shapes on every run
        self.session = ort.InferenceSession(str(self.export_dir / GRAPH), options,
                                            providers=choose_providers(device))
        self.version = model_version(str(self.export_dir), None)
        self.last_timing: dict[str, float] = {}

    def detect(self, frames: list[npt.NDArray[np.uint8]]) -> list[Detections]:
        return [self._detect_one(check_frame(frame, i)) for i, frame in enumerate(frames)]

    def _detect_one(self, frame: npt.NDArray[np.uint8]) -> Detections:
        height, width = frame.shape[:2]
        resized = cv2.resize(frame, self.input_size, interpolation=cv2.INTER_LINEAR)
        pixels = (resized[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
        boxes, labels, scores, masks = self.session.run(None, {"pixels": np.ascontiguousarray(pixels)})
        scale = np.array([width / self.input_size[0], height / self.input_size[1]] * 2, dtype=np.float32)
        full = [cv2.resize(m[0], (width, height), interpolation=cv2.INTER_LINEAR) for m in masks]
        mask = np.asarray(full, dtype=np.float32).reshape(-1, height, width) >= self.mask_threshold
        return Detections(boxes * scale, labels - 1, scores, self.class_names, (width, height), mask=mask)
