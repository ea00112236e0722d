"""`edge-inspect export onnx` on a Mask R-CNN model directory: one ONNX graph at a fixed input size.

The graph is torchvision's whole Mask R-CNN (normalisation, RPN, box and mask heads, mask pasting) traced by torch's
TorchScript-based exporter (the path torchvision's own ONNX tests use; opset 17) for one RGB frame of
`input_size`: inputs `pixels` (1 x 3 x H x W, 0..1), outputs `boxes`, `labels`, `scores`, `masks` (N x 1 x H x W
probabilities). The `onnx` backend (agent/detector/maskrcnn/onnx_detector.py) resizes frames to that size. Only
fp32 is offered: the graph is small, and the mask pasting loop does not survive fp16 conversion unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agent.detector.families import EXPORT_MANIFEST
from agent.detector.maskrcnn.config import MaskRcnnConfig
from agent.detector.maskrcnn.detector import MaskRcnnDetector
from agent.detector.maskrcnn.onnx_detector import EXPORT_FORMAT, GRAPH
from agent.modeldir import write_class_names
from finetune.family_requests import ExportRequest

OPSET = 17
OUTPUTS = ("boxes", "labels", "scores", "masks")


class ExportError(ValueError):
    """A request this family cannot export; names the value."""


class OneFrame(nn.Module):
    """torchvision's list-of-images interface as a tensor graph: one frame in, four tensors out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model([pixels[0]])[0]
        return out["boxes"], out["labels"], out["scores"], out["masks"]


def default_input_size(config: MaskRcnnConfig) -> tuple[int, int]:
    """A square of the model's short side: what torch-eager sees of a square frame."""
    return config.min_size, config.min_size


def export_maskrcnn_onnx(request: ExportRequest, input_size: tuple[int, int] | None = None) -> Path:
    """Write `model.onnx`, `classes.txt` and `export.json` to `request.out`; returns it."""
    if request.precision != "fp32":
        raise ExportError(f"precision {request.precision!r}: the maskrcnn family exports fp32 only")
    detector = MaskRcnnDetector(request.model, request.class_names, device="cpu")
    width, height = input_size or default_input_size(detector.config)
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    graph = OneFrame(detector.model).eval()
    with torch.no_grad():
        torch.onnx.export(graph, (torch.zeros(1, 3, height, width),), str(out / GRAPH), dynamo=False,
                          opset_version=OPSET, input_names=["pixels"], output_names=list(OUTPUTS),
                          dynamic_axes={name: {0: "detections"} for name in OUTPUTS})
    write_class_names(out, detector.class_names)
    manifest: dict[str, Any] = {
        "family": "maskrcnn", "format": EXPORT_FORMAT, "input_size": [width, height], "opset": OPSET,
        "precision": "fp32", "num_classes": detector.config.num_classes,
        "mask_threshold": detector.config.mask_threshold, "source": str(request.model),
    }
    (out / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return out
