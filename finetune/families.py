"""Model families on the training side, as data: what `edge-inspect model tiny --family NAME` builds.

Each family is one `TrainingKit` in `KITS`; its functions import their heavy code only when called. The serving side
of a family (its detector backends, and how a model directory names its family) is agent/detector/families.py;
`finetune`, `evaluate` and `export` find a model's family there, with `agent.detector.families.family_of`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TinyRequest:
    """An untrained tiny model for tests and demos: its classes, where to write it, input size and seed."""

    class_names: Sequence[str]
    out: Path
    image_size: int = 256
    seed: int = 0


@dataclass(frozen=True)
class TrainingKit:
    """One family's training-side entry points. `build_tiny` raises ValueError naming a bad request value."""

    name: str
    title: str  # how messages name the family, e.g. "Florence-2"
    build_tiny: Callable[[TinyRequest], Path]


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
