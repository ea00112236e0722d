"""Backend registry: config/CLI name -> detector instance (like Frigate's detector plugins)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent.detector.base import Detector, DetectorError

BACKENDS = ("torch-eager", "torch-fast", "onnx")


def create_detector(
    backend: str,
    model: str | Path,
    adapter: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    device: str = "auto",
    max_new_tokens: int = 64,
) -> Detector:
    """Build the named backend; an unknown name raises `DetectorError` listing the known ones."""
    from agent.detector.florence2 import DetectorOptions

    options = DetectorOptions(device=device, max_new_tokens=max_new_tokens)
    if backend == "torch-eager":
        from agent.detector.florence2 import Florence2Detector

        return Florence2Detector(model, adapter, class_names, options)
    if backend == "torch-fast":
        from agent.detector.fast import FastFlorence2Detector

        return FastFlorence2Detector(model, adapter, class_names, options)
    if backend == "onnx":
        from agent.detector.onnx import OnnxDetector

        if adapter is not None:
            raise DetectorError(f"backend 'onnx' runs a merged export, not adapter {adapter}: run `edge-inspect "
                                "export onnx --model M --adapter A --out DIR` and use DIR as the model")
        return OnnxDetector(model, class_names, options)
    raise DetectorError(f"unknown detector backend {backend!r}; available: {', '.join(BACKENDS)}")
