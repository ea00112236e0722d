"""What a Mask R-CNN model directory says about its network: `config.json` (no torch needed to read it).

A model directory of the `maskrcnn` family holds `config.json` (`"model_type": "edge-inspect-maskrcnn"` and the
architecture below), `model.safetensors` (the state dict, torchvision's key names) and `classes.txt`. The
architecture is torchvision's Mask R-CNN: a ResNet (or, for small models, MobileNetV3) + FPN backbone, and the heads
of `maskrcnn_resnet50_fpn` (`v1`) or `maskrcnn_resnet50_fpn_v2` (`v2`: two-conv RPN head, four-conv + one-FC box
head and mask head with BatchNorm). Unknown keys are refused, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.detector.base import DetectorError

MODEL_TYPE = "edge-inspect-maskrcnn"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class MaskRcnnConfig(BaseModel):
    """The network a `maskrcnn` model directory holds; every field has the default of torchvision's COCO model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: Literal["edge-inspect-maskrcnn"] = "edge-inspect-maskrcnn"
    num_classes: int = Field(ge=1, description="defect classes (classes.txt), without the background")
    heads: Literal["v1", "v2"] = Field("v2", description="torchvision's maskrcnn_resnet50_fpn (v1) or _v2 heads")
    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_small", "mobilenet_v3_large"] = (
        Field("resnet50", description="torchvision classification network under the FPN (its 4 stride levels)"))
    backbone_width: float = Field(default=1.0, gt=0.0, le=2.0, description="width multiplier (MobileNet only)")
    backbone_norm: Literal["batch", "frozen"] = Field(
        "frozen", description="BatchNorm in the backbone: trained (batch) or frozen statistics (pretrained weights)")
    fpn_channels: int = Field(256, ge=8)
    box_head_channels: int = Field(256, ge=8, description="v2: channels of the box head's four convolutions")
    representation_size: int = Field(1024, ge=8, description="features per box before the class/box predictor")
    mask_head_channels: int = Field(256, ge=8)
    min_size: int = Field(800, ge=32, description="frames are resized so their short side is this (pixels)")
    max_size: int = Field(1333, ge=32, description="... and their long side at most this")
    anchor_sizes: tuple[int, int, int, int, int] = Field(
        (32, 64, 128, 256, 512), description="anchor side (pixels at the resized input) for each FPN level")
    rpn_pre_nms_top_n_train: int = Field(2000, ge=1)
    rpn_pre_nms_top_n_test: int = Field(1000, ge=1)
    rpn_post_nms_top_n_train: int = Field(2000, ge=1)
    rpn_post_nms_top_n_test: int = Field(1000, ge=1)
    box_batch_size_per_image: int = Field(512, ge=1, description="proposals sampled per frame for the box head")
    box_score_thresh: float = Field(default=0.05, ge=0.0, le=1.0, description="boxes scoring less are not reported")
    box_detections_per_img: int = Field(100, ge=1)
    mask_threshold: float = Field(default=0.5, gt=0.0, lt=1.0, description="mask probability of a defect pixel")

    @model_validator(mode="after")
    def _sizes_in_order(self) -> MaskRcnnConfig:
        if self.max_size < self.min_size:
            raise ValueError(f"max_size {self.max_size} is smaller than min_size {self.min_size}")
        if self.backbone_width != 1.0 and not self.backbone.startswith("mobilenet"):
            raise ValueError(f"backbone_width {self.backbone_width}: only a MobileNet backbone has a width multiplier")
        return self

    def write(self, model_dir: Path) -> Path:
        path = Path(model_dir) / CONFIG_FILE
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        return path


def read_config(model_dir: str | Path) -> MaskRcnnConfig:
    """The directory's `config.json`; a missing, malformed or foreign file is a `DetectorError` naming it."""
    path = Path(model_dir) / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DetectorError(f"{path} is not readable JSON: {exc}") from exc
    try:
        return MaskRcnnConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']} (got {e.get('input')!r})"
                             for e in exc.errors())
        raise DetectorError(f"{path}: not a Mask R-CNN configuration: {problems}") from None
