"""torchvision's Mask R-CNN built from a `MaskRcnnConfig`, offline: no weights are ever downloaded (weights=None and
weights_backbone=None throughout); trained weights come only from the model directory's `model.safetensors`.

The heads are chosen as data (`HEADS`): `v1` as `maskrcnn_resnet50_fpn`, `v2` as `maskrcnn_resnet50_fpn_v2`; the
state dict keys are torchvision's, so a torchvision checkpoint converted to safetensors loads into the same shape.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agent.detector.base import DetectorError
from agent.detector.maskrcnn.config import WEIGHTS_FILE, MaskRcnnConfig, read_config

ASPECT_RATIOS = (0.5, 1.0, 2.0)


def _v1_heads(config: MaskRcnnConfig, channels: int, anchors: int) -> dict[str, nn.Module]:
    from torchvision.models.detection.faster_rcnn import TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
    from torchvision.models.detection.rpn import RPNHead

    return {"rpn_head": RPNHead(channels, anchors),
            "box_head": TwoMLPHead(channels * 7 * 7, config.representation_size),
            "mask_head": MaskRCNNHeads(channels, [config.mask_head_channels] * 4, 1)}


def _v2_heads(config: MaskRcnnConfig, channels: int, anchors: int) -> dict[str, nn.Module]:
    from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
    from torchvision.models.detection.rpn import RPNHead

    return {"rpn_head": RPNHead(channels, anchors, conv_depth=2),
            "box_head": FastRCNNConvFCHead((channels, 7, 7), [config.box_head_channels] * 4,
                                           [config.representation_size], norm_layer=nn.BatchNorm2d),
            "mask_head": MaskRCNNHeads(channels, [config.mask_head_channels] * 4, 1, norm_layer=nn.BatchNorm2d)}


HEADS: dict[str, Callable[[MaskRcnnConfig, int, int], dict[str, nn.Module]]] = {"v1": _v1_heads, "v2": _v2_heads}


def _backbone(config: MaskRcnnConfig) -> nn.Module:
    """The body's last layer of each stride level (/4, /8, /16, /32) + FPN (v2 normalises the FPN too, as
    torchvision's v2 does); random initialisation."""
    from torchvision.models.detection.backbone_utils import BackboneWithFPN

    body, layers = BODIES[config.backbone.split("_")[0]](config)
    widths = [_out_channels(body, name) for name in layers]
    fpn_norm = nn.BatchNorm2d if config.heads == "v2" else None
    return BackboneWithFPN(body, {name: str(i) for i, name in enumerate(layers)}, widths, config.fpn_channels,
                           norm_layer=fpn_norm)


def _resnet(config: MaskRcnnConfig) -> tuple[nn.Module, list[str]]:
    import torchvision.models as tvm
    from torchvision.ops import FrozenBatchNorm2d

    norm = FrozenBatchNorm2d if config.backbone_norm == "frozen" else nn.BatchNorm2d
    return getattr(tvm, config.backbone)(weights=None, norm_layer=norm), ["layer1", "layer2", "layer3", "layer4"]


def _mobilenet(config: MaskRcnnConfig) -> tuple[nn.Module, list[str]]:
    import torchvision.models as tvm
    from torchvision.ops import FrozenBatchNorm2d

    norm = FrozenBatchNorm2d if config.backbone_norm == "frozen" else nn.BatchNorm2d
    features = getattr(tvm, config.backbone)(weights=None, width_mult=config.backbone_width,
                                             norm_layer=partial(norm, eps=0.001)).features
    downsampling = [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
    ends = [i - 1 for i in downsampling[1:]] + [len(features) - 1]  # the last block before each stride-2 block
    return features, [str(i) for i in ends]


BODIES: dict[str, Callable[[MaskRcnnConfig], tuple[nn.Module, list[str]]]] = {
    "resnet18": _resnet, "resnet34": _resnet, "resnet50": _resnet, "resnet101": _resnet, "mobilenet": _mobilenet}


def _out_channels(body: nn.Module, name: str) -> int:
    """Output width of a named layer: a ResNet stage's last block (`conv3` in a bottleneck, else `conv2`), or a
    MobileNet block's `out_channels`."""
    layer: Any = body.get_submodule(name)
    if hasattr(layer, "out_channels"):
        return int(layer.out_channels)
    last = layer[-1]
    conv = last.conv3 if hasattr(last, "conv3") else last.conv2
    return int(conv.out_channels)


def build_model(config: MaskRcnnConfig) -> Any:
    """An untrained `torchvision.models.detection.MaskRCNN` of this architecture (class 0 is the background)."""
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNPredictor
    from torchvision.models.detection.rpn import AnchorGenerator

    backbone = _backbone(config)
    anchors = AnchorGenerator(tuple((size,) for size in config.anchor_sizes), (ASPECT_RATIOS,) * 5)
    channels = int(backbone.out_channels)  # type: ignore[arg-type]
    heads = HEADS[config.heads](config, channels, anchors.num_anchors_per_location()[0])
    classes = config.num_classes + 1
    return MaskRCNN(
        backbone, num_classes=None, rpn_anchor_generator=anchors, **heads,
        box_predictor=FastRCNNPredictor(config.representation_size, classes),
        mask_predictor=MaskRCNNPredictor(config.mask_head_channels, config.mask_head_channels, classes),
        min_size=config.min_size, max_size=config.max_size,
        rpn_pre_nms_top_n_train=config.rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=config.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
        box_batch_size_per_image=config.box_batch_size_per_image, box_score_thresh=config.box_score_thresh,
        box_detections_per_img=config.box_detections_per_img,
    )


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a safetensors state dict (never a pickle); a missing file or a tensor of the wrong name or shape is a
    `DetectorError` naming the file and the first few keys at fault."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise DetectorError(f"{path} does not exist: a Mask R-CNN model directory needs its {WEIGHTS_FILE}")
    state = load_file(str(path))
    expected = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (model: {tuple(expected[k].shape)})"
             for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    # a checkpoint saved with frozen BatchNorm has no step counters; trained BatchNorm keeps its own
    missing = sorted(k for k in set(expected) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(expected))
    if wrong or missing or unexpected:
        raise DetectorError(f"{path} does not fit the architecture in config.json: wrong shape: {wrong[:3]}, "
                            f"missing: {missing[:3]}, unexpected: {unexpected[:3]}")
    model.load_state_dict(state, strict=False)  # only step counters can be missing (checked above)


def load_model(model_dir: str | Path, device: torch.device | str = "cpu") -> tuple[Any, MaskRcnnConfig]:
    """The trained network of a model directory (config.json + model.safetensors), in eval mode on `device`."""
    config = read_config(model_dir)
    model = build_model(config)
    load_weights(model, Path(model_dir) / WEIGHTS_FILE)
    return model.to(device).eval(), config


def save_weights(model: nn.Module, model_dir: Path) -> Path:
    """`model.safetensors` (contiguous CPU copies of the state dict; tensors shared in memory are written once each)."""
    from safetensors.torch import save_file

    path = Path(model_dir) / WEIGHTS_FILE
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}, str(path))
    return path
