"""Model families on the training side, as data: what `edge-inspect model tiny --family NAME` builds.

Each family is one `TrainingKit` in `KITS`; its functions import their heavy code only when called. The serving side
of a family (its detector backends, and how a model directory names its family) is agent/detector/families.py;
`finetune`, `evaluate` and `export` find a model's family there, with `agent.detector.families.family_of`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.family_requests import ExportRequest, FinetuneRequest


@dataclass(frozen=True)
class TinyRequest:
    """An untrained tiny model for tests and demos: its classes, where to write it, input size and seed."""

    class_names: Sequence[str]
    out: Path
    image_size: int = 256
    seed: int = 0


@dataclass(frozen=True)
class TrainingKit:
    """One family's training-side entry points. `build_tiny` raises ValueError naming a bad request value.
    `finetune` and `export_onnx` are for families other than Florence-2 (whose commands keep their own path): they
    raise ValueError / OSError naming what is wrong, and return a JSON-able summary / the export directory."""

    name: str
    title: str  # how messages name the family, e.g. "Florence-2"
    build_tiny: Callable[[TinyRequest], Path]
    finetune: Callable[[FinetuneRequest], dict[str, Any]] | None = None
    export_onnx: Callable[[ExportRequest], Path] | None = None


KITS: dict[str, TrainingKit] = {}


def register_kit(kit: TrainingKit) -> TrainingKit:
    KITS[kit.name] = kit
    return kit


def kit_for(family: str) -> TrainingKit:
    """The named family's kit; an unknown name is a ValueError listing the known ones."""
    if family not in KITS:
        raise ValueError(f"unknown model family {family!r}; available: {', '.join(KITS)}")
    return KITS[family]


def _florence_tiny(request: TinyRequest) -> Path:
    from finetune.tiny import TinySpec, build_tiny_model

    if request.image_size % 16:
        raise ValueError(f"--image-size {request.image_size} is not a multiple of 16")  # the patch grid
    return build_tiny_model(list(request.class_names), request.out,
                            TinySpec(image_size=request.image_size, seed=request.seed))


FLORENCE2 = register_kit(TrainingKit(name="florence2", title="Florence-2", build_tiny=_florence_tiny))


def _maskrcnn_tiny(request: TinyRequest) -> Path:
    from finetune.maskrcnn.tiny import build_tiny

    return build_tiny(request.class_names, request.out, request.image_size, request.seed)


def _maskrcnn_finetune(request: FinetuneRequest) -> dict[str, Any]:
    from finetune.maskrcnn.train import finetune_maskrcnn

    return finetune_maskrcnn(request)


def _maskrcnn_export(request: ExportRequest) -> Path:
    from finetune.maskrcnn.export import export_maskrcnn_onnx

    return export_maskrcnn_onnx(request)


MASKRCNN = register_kit(TrainingKit(name="maskrcnn", title="Mask R-CNN", build_tiny=_maskrcnn_tiny,
                                    finetune=_maskrcnn_finetune, export_onnx=_maskrcnn_export))
