"""The paligemma2 model family on the serving side: its backends, registered in `FAMILIES`.

A model directory whose config.json says `model_type: paligemma` (PaliGemma and PaliGemma 2 checkpoints, and
`edge-inspect model tiny --family paligemma2`) is served by `agent/detector/paligemma/detector.py`. Light on purpose:
agent/detector/factory.py imports it so the family registers; torch is imported only when a builder runs.

There is no ONNX export of this family: the `onnx` backend says so and names the backends that serve it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.detector.base import Detector, DetectorError
from agent.detector.families import DetectorRequest, Family, register_family

if TYPE_CHECKING:
    from agent.detector.florence2 import DetectorOptions

NAME = "paligemma2"


def _options(request: DetectorRequest) -> DetectorOptions:
    from agent.detector.florence2 import DetectorOptions

    return DetectorOptions(device=request.device, max_new_tokens=request.max_new_tokens)


def _eager(request: DetectorRequest) -> Detector:
    from agent.detector.paligemma.detector import PaliGemma2Detector

    return PaliGemma2Detector(request.model, request.adapter, request.class_names, _options(request))


def _fast(request: DetectorRequest) -> Detector:
    from agent.detector.paligemma.fast import FastPaliGemma2Detector

    return FastPaliGemma2Detector(request.model, request.adapter, request.class_names, _options(request))


def _onnx(request: DetectorRequest) -> Detector:
    raise DetectorError(f"backend 'onnx' serves ONNX exports, and ONNX export is not implemented for the {NAME} "
                        f"family ({request.model}): serve it with backend {', '.join(PALIGEMMA2_TORCH)}")


PALIGEMMA2_TORCH = ("torch-eager", "torch-fast")
PALIGEMMA2 = register_family(Family(name=NAME, model_types=("paligemma",),
                                    backends={"torch-eager": _eager, "torch-fast": _fast, "onnx": _onnx}))
