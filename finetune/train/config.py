"""Settings of one LoRA run and the error every training step reports with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from finetune.lora import LoraSettings

TASKS: tuple[str, ...] = ("<OD>", "<DENSE_REGION_CAPTION>", "<CAPTION_TO_PHRASE_GROUNDING>")
GROUNDING = "<CAPTION_TO_PHRASE_GROUNDING>"
Progress = Callable[[int, int, dict[str, float]], None]


class TrainError(ValueError):
    """A training request that cannot run; the message names the setting, file or value at fault."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters and budgets of one LoRA run (defaults suit a few hundred frames on a Jetson/RTX box)."""

    epochs: int = 3
    max_steps: int | None = None  # overrides epochs when given
    batch_size: int = 4
    lr: float = 2e-4
    vision_lr_scale: float = 0.1  # vision-tower LoRA learns slower (stage 2 of staged unfreezing)
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    lora: LoraSettings = field(default_factory=LoraSettings)
    gradient_checkpointing: bool | None = None  # None: only where GPU memory needs it (finetune/train/memory.py)
    amp: str = "auto"  # auto (bf16/fp16 on CUDA, off on CPU) | off | bf16 | fp16
    unfreeze_vision_epoch: int | None = None  # staged unfreezing: vision LoRA frozen before this epoch (0-based)
    shuffle_boxes: bool = False  # suffix order augmentation: boxes in random order instead of reading order
    tasks: tuple[str, ...] = ("<OD>",)
    loc_sigma: float = 0.0  # > 0: Gaussian soft targets over neighbouring <loc> bins
    checkpoint_every: int = 50
    eval_map: bool = True
    eval_batch_size: int = 4
    max_seconds: float | None = None
    max_memory_mb: float | None = None
    device: str = "auto"
    log_every: int = 5

    def __post_init__(self) -> None:
        checks = {"epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
                  "checkpoint_every": self.checkpoint_every >= 1, "warmup_steps": self.warmup_steps >= 0,
                  "max_steps": self.max_steps is None or self.max_steps >= 1, "log_every": self.log_every >= 1}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise TrainError(f"{bad[0]}={getattr(self, bad[0])!r} is out of range")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise TrainError(f"tasks {list(self.tasks)}: each must be one of {list(TASKS)}")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise TrainError(f"amp={self.amp!r}: must be auto, off, bf16 or fp16")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
