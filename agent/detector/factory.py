"""Backend registry: config/CLI name -> detector instance (like Frigate's detector plugins), per model family.

`create_detector` finds the model's family (agent/detector/families.py:family_of, which loads the families listed
in `FAMILY_MODULES`) and calls that family's builder for the backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent.detector.base import Detector
from agent.detector.families import DetectorRequest, families, family_of

BACKENDS = ("torch-eager", "torch-fast", "onnx")


def create_detector(
    backend: str,
    model: str | Path,
    adapter: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    device: str = "auto",
    max_new_tokens: int = 64,
    quantize: str = "none",
) -> Detector:
    """Build the named backend for the model's family; an unknown name raises `DetectorError` listing the family's
    backends, or a quantization the backend cannot run (`agent.detector.quantize`) one naming both."""
    request = DetectorRequest(model, adapter, class_names, device, max_new_tokens, quantize)
    return families()[family_of(model)].build(backend, request)
