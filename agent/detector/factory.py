"""Backend registry: config/CLI name -> detector instance (like Frigate's detector plugins)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent.detector.base import Detector, DetectorError

BACKENDS = ("torch-eager",)


def create_detector(
    backend: str,
    model: str | Path,
    adapter: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    device: str = "auto",
    max_new_tokens: int = 64,
) -> Detector:
    """Build the named backend; an unknown name raises `DetectorError` listing the known ones."""
    if backend == "torch-eager":
        from agent.detector.florence2 import DetectorOptions, Florence2Detector

        options = DetectorOptions(device=device, max_new_tokens=max_new_tokens)
        return Florence2Detector(model, adapter, class_names, options)
    raise DetectorError(f"unknown detector backend {backend!r}; available: {', '.join(BACKENDS)}")
