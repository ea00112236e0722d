"""What `edge-inspect finetune` and `export onnx` hand a model family that trains whole model directories (every
family but Florence-2, whose LoRA adapters keep their own path): `TrainingKit.finetune` / `TrainingKit.export_onnx`
in finetune/families.py take these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from finetune.data.dataset import Dataset


@dataclass(frozen=True)
class FinetuneRequest:
    """`edge-inspect finetune` on a family that trains whole model directories (not Florence-2's LoRA adapters):
    the base model directory, the data, where the fine-tuned directory goes, and the recipe. `scales`: short sides
    for multi-scale training (None: the family's default); `progress` gets one line per logged step."""

    model: Path
    train_set: Dataset
    out: Path
    val_set: Dataset | None = None
    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 4
    lr: float = 2e-4
    warmup_steps: int = 10
    amp: str = "auto"
    seed: int = 0
    device: str = "auto"
    max_seconds: float | None = None
    augment: bool = False
    scales: tuple[int, ...] | None = None
    max_grad_norm: float = 10.0
    log_every: int = 10
    progress: Callable[[str], None] | None = None


@dataclass(frozen=True)
class ExportRequest:
    """`edge-inspect export onnx` on such a family: model directory, export directory, precision, class names."""

    model: Path
    out: Path
    precision: str = "fp32"
    class_names: Sequence[str] | None = None
