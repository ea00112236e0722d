"""The `maskrcnn` family on the serving side: torchvision Mask R-CNN (boxes + instance masks).

A model directory is this family's when its `config.json` says `"model_type": "edge-inspect-maskrcnn"`; an ONNX
export of it says `"family": "maskrcnn"` in `export.json`. Backends: `torch-eager` (the reference) and `onnx`
(ONNX Runtime on an export at a fixed input size). The builders import torch, torchvision and onnxruntime only when
called. There are no LoRA adapters in this family: fine-tuning writes a whole model directory.
"""

from __future__ import annotations

from agent.detector.base import Detector, DetectorError
from agent.detector.families import DetectorRequest, Family, register_family
from agent.detector.maskrcnn.config import MODEL_TYPE

NAME = "maskrcnn"


def _no_adapter(request: DetectorRequest) -> None:
    if request.adapter is not None:
        raise DetectorError(f"the {NAME} family has no adapters (got {request.adapter}): `edge-inspect finetune` "
                            "writes a whole model directory; serve that as model.path")


def _torch_eager(request: DetectorRequest) -> Detector:
    from agent.detector.maskrcnn.detector import MaskRcnnDetector

    _no_adapter(request)
    return MaskRcnnDetector(request.model, request.class_names, request.device)


def _onnx(request: DetectorRequest) -> Detector:
    from agent.detector.maskrcnn.onnx_detector import MaskRcnnOnnxDetector

    _no_adapter(request)
    return MaskRcnnOnnxDetector(request.model, request.class_names, request.device)


MASKRCNN = register_family(Family(name=NAME, model_types=(MODEL_TYPE,),
                                  backends={"torch-eager": _torch_eager, "onnx": _onnx}))
