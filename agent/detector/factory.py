"""Backend registry: config/CLI name -> detector instance (like Frigate's detector plugins), per model family.

`create_detector` finds the model's family (agent/detector/families.py:family_of) and calls that family's builder
for the backend. Florence-2's builders live here; each imports its backend only when called, so the daemon loads
no more than it serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import agent.detector.maskrcnn.family  # noqa: F401  (registers the maskrcnn family)
from agent.detector.base import Detector, DetectorError
from agent.detector.families import DetectorRequest, Family, family_of, register_family

if TYPE_CHECKING:
    from agent.detector.florence2 import DetectorOptions

BACKENDS = ("torch-eager", "torch-fast", "onnx")


def _florence_options(request: DetectorRequest) -> DetectorOptions:
    from agent.detector.florence2 import DetectorOptions

    return DetectorOptions(device=request.device, max_new_tokens=request.max_new_tokens)


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


FLORENCE2 = register_family(Family(
    name="florence2",
    model_types=("florence2",),
    backends={"torch-eager": _florence_eager, "torch-fast": _florence_fast, "onnx": _florence_onnx},
))


def create_detector(
    backend: str,
    model: str | Path,
    adapter: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    device: str = "auto",
    max_new_tokens: int = 64,
) -> Detector:
    """Build the named backend for the model's family; an unknown name raises `DetectorError` listing the family's
    backends."""
    from agent.detector.families import FAMILIES

    request = DetectorRequest(model, adapter, class_names, device, max_new_tokens)
    return FAMILIES[family_of(model)].build(backend, request)
