"""Mask R-CNN model directories: the tiny configuration for tests and demos, and writing a directory from a network.

The tiny model is torchvision's Mask R-CNN (v2 heads) on a MobileNetV3-small backbone with 32-channel FPN and
heads (~1.3 M parameters), sized for `image_size` input: anchors from 1/16 to the whole frame, few proposals. It is
randomly initialised (no download) and learns the synthetic frames' defects in a few dozen CPU steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from agent.detector.maskrcnn.config import MaskRcnnConfig
from agent.detector.maskrcnn.model import build_model, load_weights, save_weights
from agent.modeldir import write_class_names


def tiny_config(num_classes: int, image_size: int) -> MaskRcnnConfig:
    """A small network for `image_size` x `image_size` frames (anchors 1/16 .. 1 of the side)."""
    base = max(4, image_size // 16)
    return MaskRcnnConfig(
        num_classes=num_classes, heads="v2", backbone="mobilenet_v3_small", backbone_norm="batch",
        fpn_channels=32, box_head_channels=32, representation_size=128, mask_head_channels=32,
        min_size=image_size, max_size=image_size, anchor_sizes=(base, base * 2, base * 4, base * 8, base * 16),
        rpn_pre_nms_top_n_train=300, rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_train=150,
        rpn_post_nms_top_n_test=100, box_batch_size_per_image=64, box_detections_per_img=50,
    )


def write_model_dir(model: torch.nn.Module, config: MaskRcnnConfig, class_names: Sequence[str], out: Path) -> Path:
    """`config.json`, `model.safetensors` and `classes.txt` under `out` (created); returns `out`."""
    if len(class_names) != config.num_classes:
        raise ValueError(f"{len(class_names)} class names {list(class_names)} for {config.num_classes} classes")
    out.mkdir(parents=True, exist_ok=True)
    config.write(out)
    save_weights(model, out)
    write_class_names(out, class_names)
    return out


def build_tiny(class_names: Sequence[str], out: Path, image_size: int = 256, seed: int = 0) -> Path:
    """`edge-inspect model tiny --family maskrcnn`: an untrained tiny model directory."""
    names = list(class_names)
    if not names:
        raise ValueError("--classes: at least one class name is needed")
    if image_size < 64 or image_size % 32:
        raise ValueError(f"--image-size {image_size}: must be a multiple of 32, at least 64")
    torch.manual_seed(seed)
    config = tiny_config(len(names), image_size)
    return write_model_dir(build_model(config), config, names, Path(out))


def model_from_weights(config: MaskRcnnConfig, class_names: Sequence[str], weights: Path, out: Path) -> Path:
    """A model directory from user-supplied safetensors weights of this architecture (checked tensor by tensor)."""
    from agent.detector.base import DetectorError

    model = build_model(config)
    try:
        load_weights(model, weights)
    except DetectorError as exc:
        raise ValueError(str(exc)) from None
    return write_model_dir(model, config, class_names, out)

