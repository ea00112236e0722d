"""`torch-eager` backend of the `maskrcnn` family: torchvision's Mask R-CNN, boxes with instance masks.

torchvision resizes each frame to the model's `min_size`/`max_size`, and scales boxes and pastes masks back onto the
frame, so every `Detections` is in the frame's own pixels; a mask pixel is defect where its probability reaches the
config's `mask_threshold`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from agent.detections import Detections
from agent.detector.base import DetectorError, check_frame
from agent.detector.florence2 import model_version, pick_device, read_class_names
from agent.detector.maskrcnn.config import MaskRcnnConfig
from agent.detector.maskrcnn.model import load_model


def model_classes(source: str, config: MaskRcnnConfig, class_names: Sequence[str] | None) -> tuple[str, ...]:
    """The given class names, else classes.txt; their count must be the network's class count."""
    names = read_class_names(source, class_names)
    if len(names) != config.num_classes:
        raise DetectorError(f"{len(names)} class names {list(names)} for a Mask R-CNN of {config.num_classes} "
                            f"classes ({source}/config.json num_classes)")
    return names


def to_detections(output: dict[str, Any], class_names: Sequence[str], image_size: tuple[int, int],
                  mask_threshold: float) -> Detections:
    """One frame's torchvision output (labels 1..K, masks N x 1 x H x W probabilities) as `Detections`."""
    masks = np.asarray(output["masks"]).reshape(-1, image_size[1], image_size[0]) >= mask_threshold
    return Detections(np.asarray(output["boxes"]), np.asarray(output["labels"]) - 1, np.asarray(output["scores"]),
                      class_names, image_size, mask=masks)


def frames_to_tensors(frames: Sequence[npt.NDArray[np.uint8]], device: torch.device) -> list[torch.Tensor]:
    """BGR uint8 frames -> RGB float 0..1 C x H x W tensors (torchvision normalises with its own mean/std)."""
    checked = [check_frame(frame, i) for i, frame in enumerate(frames)]
    return [torch.from_numpy(np.ascontiguousarray(f[:, :, ::-1])).to(device).permute(2, 0, 1).float().div_(255)
            for f in checked]


class MaskRcnnDetector:
    """Batched Mask R-CNN: `detect(frames)` -> one `Detections` (with masks) per BGR frame."""

    def __init__(self, model: str | Path, class_names: Sequence[str] | None = None, device: str = "auto") -> None:
        self.source = str(model)
        if not Path(self.source).is_dir():
            raise DetectorError(f"Mask R-CNN model directory {self.source} does not exist")
        self.device = pick_device(device)
        self.model, self.config = load_model(self.source, self.device)
        self.model.requires_grad_(False)
        self.class_names = model_classes(self.source, self.config, class_names)
        self.version = model_version(self.source, None)
        self.last_timing: dict[str, float] = {}

    @torch.inference_mode()
    def detect(self, frames: list[npt.NDArray[np.uint8]]) -> list[Detections]:
        if not frames:
            return []
        outputs = self.model(frames_to_tensors(frames, self.device))
        return [to_detections({k: v.cpu().numpy() for k, v in out.items()}, self.class_names,
                              (frame.shape[1], frame.shape[0]), self.config.mask_threshold)
                for out, frame in zip(outputs, frames, strict=True)]
