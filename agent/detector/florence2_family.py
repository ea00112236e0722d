"""The `florence2` family on the serving side: Florence-2's three backends (torch-eager, torch-fast, onnx).

A model directory is this family's when its `config.json` says `"model_type": "florence2"`; an ONNX export from
before families existed (no `family` in `export.json`) and a hub id are Florence-2 too. Each builder imports its
backend only when called, so the daemon loads no more than it serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.detector.base import Detector, DetectorError
from agent.detector.families import DetectorRequest, Family, register_family

if TYPE_CHECKING:
    from agent.detector.florence2 import DetectorOptions


def _florence_options(request: DetectorRequest) -> DetectorOptions:
    from agent.detector.florence2 import DetectorOptions

    return DetectorOptions(device=request.device, max_new_tokens=request.max_new_tokens, quantize=request.quantize)


def _florence_eager(request: DetectorRequest) -> Detector:
    from agent.detector.florence2 import Florence2Detector

    return Florence2Detector(request.model, request.adapter, request.class_names, _florence_options(request))


def _florence_fast(request: DetectorRequest) -> Detector:
    from agent.detector.fast import FastFlorence2Detector

    return FastFlorence2Detector(request.model, request.adapter, request.class_names, _florence_options(request))


def _florence_onnx(request: DetectorRequest) -> Detector:
    from agent.detector.onnx import OnnxDetector

    if request.adapter is not None:
        raise DetectorError(f"backend 'onnx' runs a merged export, not adapter {request.adapter}: run `edge-inspect "
                            "export onnx --model M --adapter A --out DIR` and use DIR as the model")
    return OnnxDetector(request.model, request.class_names, _florence_options(request))


FAMILY = register_family(Family(
    name="florence2",
    model_types=("florence2",),
    backends={"torch-eager": _florence_eager, "torch-fast": _florence_fast, "onnx": _florence_onnx},
    quantizes=True,
))
