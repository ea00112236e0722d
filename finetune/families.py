"""Model families on the training side, as data: what `edge-inspect model tiny --family NAME` builds, and what
`finetune`, `export onnx` and a recalibration run do with a model of each family.

Each family is one `TrainingKit` in `KITS`; its functions import their heavy code only when called. The serving side
of a family (its detector backends, and how a model directory names its family) is agent/detector/families.py;
commands find a model's family there, with `agent.detector.families.family_of`.

Two kinds of family: those that train LoRA adapters on a frozen base (Florence-2, PaliGemma 2: `lora_finetune` takes
`finetune.train.run.train_lora`'s arguments, so the command and the recalibration run call it the same way) and those
that fine-tune a whole model directory (Mask R-CNN: `finetune` takes a `FinetuneRequest`, `export_onnx` an
`ExportRequest`; finetune/cli/families.py hands them over).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.family_requests import ExportRequest, FinetuneRequest
from finetune.paligemma import kit as paligemma


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

    Optional steps (None: the family has no such step): `lora_finetune` replaces Florence-2's `train_lora` for an
    adapter family (same arguments, returns its `TrainResult`); `finetune` trains a whole-model family (returns a
    JSON-able summary); `export_onnx` exports a whole-model family from an `ExportRequest`. They raise ValueError /
    OSError naming what is wrong."""

    name: str
    title: str  # how messages name the family, e.g. "Florence-2"
    build_tiny: Callable[[TinyRequest], Path]
    lora_finetune: Callable[..., Any] | None = None
    finetune: Callable[[FinetuneRequest], dict[str, Any]] | None = None
    export_onnx: Callable[[ExportRequest], Path] | None = None

    @property
    def trains_whole_models(self) -> bool:
        return self.finetune is not None


KITS: dict[str, TrainingKit] = {}


def register_kit(kit: TrainingKit) -> TrainingKit:
    KITS[kit.name] = kit
    return kit


def kit_for(family: str) -> TrainingKit:
    """The named family's kit; an unknown name is a ValueError listing the known ones."""
    if family not in KITS:
        raise ValueError(f"unknown model family {family!r}; available: {', '.join(KITS)}")
    return KITS[family]


def kit_of_model(model: str | Path) -> TrainingKit:
    """The kit of a model's family (its config.json `model_type`, agent/detector/families.py:family_of); a model
    type no family claims is a ValueError naming it."""
    from agent.detector.base import DetectorError
    from agent.detector.families import family_of

    try:
        return kit_for(family_of(model))
    except DetectorError as exc:
        raise ValueError(str(exc)) from None


def lora_trainer(model: str | Path) -> Callable[..., Any] | None:
    """What trains an adapter on `model`: None for Florence-2 (the caller's own `train_lora`), else the adapter
    family's `lora_finetune`; a family that trains no adapters is a ValueError saying so."""
    kit = kit_of_model(model)
    if kit.name == FLORENCE2.name:
        return None
    if kit.lora_finetune is None:
        raise ValueError(f"{model} is a {kit.title} model ({kit.name} family), which has no LoRA fine-tuning: "
                         "`edge-inspect finetune` trains the whole model")
    return kit.lora_finetune


def refuse_adapter_export(model: str | Path) -> None:
    """`export onnx` of an adapter family other than Florence-2: none has an ONNX export yet (ValueError)."""
    kit = kit_of_model(model)
    if kit.name != FLORENCE2.name and not kit.trains_whole_models:
        raise ValueError(f"{model} is a {kit.title} model ({kit.name} family), which has no ONNX export (serve it "
                         "with a torch backend, e.g. torch-eager)")


def _florence_tiny(request: TinyRequest) -> Path:
    from finetune.tiny import TinySpec, build_tiny_model

    if request.image_size % 16:
        raise ValueError(f"--image-size {request.image_size} is not a multiple of 16")  # the patch grid
    return build_tiny_model(list(request.class_names), request.out,
                            TinySpec(image_size=request.image_size, seed=request.seed))


def _maskrcnn_tiny(request: TinyRequest) -> Path:
    from finetune.maskrcnn.tiny import build_tiny

    return build_tiny(request.class_names, request.out, request.image_size, request.seed)


def _maskrcnn_finetune(request: FinetuneRequest) -> dict[str, Any]:
    from finetune.maskrcnn.train import finetune_maskrcnn

    return finetune_maskrcnn(request)


def _maskrcnn_export(request: ExportRequest) -> Path:
    from finetune.maskrcnn.export import export_maskrcnn_onnx

    return export_maskrcnn_onnx(request)


FLORENCE2 = register_kit(TrainingKit(name="florence2", title="Florence-2", build_tiny=_florence_tiny))
MASKRCNN = register_kit(TrainingKit(name="maskrcnn", title="Mask R-CNN", build_tiny=_maskrcnn_tiny,
                                    finetune=_maskrcnn_finetune, export_onnx=_maskrcnn_export))
PALIGEMMA2 = register_kit(TrainingKit(name=paligemma.NAME, title=paligemma.TITLE, build_tiny=paligemma.build_tiny,
                                      lora_finetune=paligemma.finetune))
