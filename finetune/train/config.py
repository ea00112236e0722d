"""Settings of one LoRA run and the error every training step reports with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from finetune.lora import LoraSettings

TASKS: tuple[str, ...] = ("<OD>", "<DENSE_REGION_CAPTION>", "<CAPTION_TO_PHRASE_GROUNDING>")
GROUNDING = "<CAPTION_TO_PHRASE_GROUNDING>"
MIX_TASKS: tuple[str, ...] = ("od", "dense", "grounding")  # the pools a task mix draws from (task_mix.py)
SCHEDULES: tuple[str, ...] = ("cosine", "three-stage")  # see finetune/train/schedule.py
Progress = Callable[[int, int, dict[str, float]], None]


class TrainError(ValueError):
    """A training request that cannot run; the message names the setting, file or value at fault."""


def check_mix(mix: tuple[tuple[str, int], ...]) -> None:
    """A task mix names known pools, each once, with whole weights >= 0 and at least one above 0."""
    names = [name for name, _ in mix]
    unknown = [name for name in names if name not in MIX_TASKS]
    if unknown or len(set(names)) != len(names):
        raise TrainError(f"task mix {names}: each of {list(MIX_TASKS)} at most once ({unknown or 'a repeat'})")
    if any(weight < 0 for _, weight in mix) or not any(weight > 0 for _, weight in mix):
        raise TrainError(f"task mix {dict(mix)}: weights must be whole numbers >= 0, at least one above 0")


@dataclass(frozen=True)
class AugmentSettings:
    """What augmentation draws (defaults: flips half the time, crops of 80-100 % of a side, +-20 % light)."""

    hflip: float = 0.5  # probability of a horizontal flip
    vflip: float = 0.5  # probability of a vertical flip
    min_scale: float = 0.8  # crop side as a fraction of the frame side, drawn from [min_scale, 1]; 1 = no crop
    brightness: float = 0.2  # offset drawn from +-brightness x 255
    contrast: float = 0.2  # gain around the frame's mean drawn from [1 - contrast, 1 + contrast]
    min_visible: float = 0.5  # a box the crop cuts keeps its clipped part when this much of its area is inside

    def __post_init__(self) -> None:
        checks = {"hflip": 0 <= self.hflip <= 1, "vflip": 0 <= self.vflip <= 1,
                  "min_scale": 0 < self.min_scale <= 1, "brightness": 0 <= self.brightness <= 1,
                  "contrast": 0 <= self.contrast < 1, "min_visible": 0 < self.min_visible <= 1}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise TrainError(f"augment.{bad[0]}={getattr(self, bad[0])!r} is out of range")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters and budgets of one LoRA run (defaults suit a few hundred frames on a Jetson/RTX box)."""

    epochs: int = 3
    max_steps: int | None = None  # overrides epochs (and min_steps) when given
    min_steps: int = 0  # at least this many steps, however few epochs' worth the data gives
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
    augment: AugmentSettings | None = None  # image augmentation (finetune/train/augment.py); None: off
    hard_fraction: float = 0.0  # hard-example mining: the top fraction of a batch by loss weighted up; 0: off
    hard_weight: float = 2.0  # raw weight of those hardest samples (the others 1), normalised to a mean of 1
    schedule: str = "cosine"  # cosine: warm-up + cosine at lr | three-stage: the preset of finetune/train/schedule.py
    stage_ends: tuple[float, float] = (1 / 3, 2 / 3)  # three-stage: where stages 1 and 2 end, fractions of the steps
    tasks: tuple[str, ...] = ("<OD>",)  # prompts an <OD> frame is trained with (derived from its boxes)
    task_mix: tuple[tuple[str, int], ...] | None = None  # (od|dense|grounding, weight): finetune/train/task_mix.py
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
                  "max_steps": self.max_steps is None or self.max_steps >= 1, "log_every": self.log_every >= 1,
                  "min_steps": self.min_steps >= 0}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise TrainError(f"{bad[0]}={getattr(self, bad[0])!r} is out of range")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise TrainError(f"tasks {list(self.tasks)}: each must be one of {list(TASKS)}")
        if self.task_mix is not None:
            check_mix(tuple((str(name), int(weight)) for name, weight in self.task_mix))
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise TrainError(f"amp={self.amp!r}: must be auto, off, bf16 or fp16")
        self._check_recipe()

    def _check_recipe(self) -> None:
        if not 0.0 <= self.hard_fraction <= 1.0 or self.hard_weight < 1.0:
            raise TrainError(f"hard_fraction={self.hard_fraction!r} must lie in [0, 1] and hard_weight="
                             f"{self.hard_weight!r} be at least 1")
        if self.schedule not in SCHEDULES:
            raise TrainError(f"schedule={self.schedule!r}: must be one of {list(SCHEDULES)}")
        first, second = self.stage_ends
        if not 0.0 < first < second < 1.0:
            raise TrainError(f"stage_ends={self.stage_ends!r}: need 0 < first < second < 1 (fractions of the steps)")
        if self.schedule != "cosine" and self.unfreeze_vision_epoch is not None:
            raise TrainError(f"schedule={self.schedule!r} sets its own unfreezing: leave unfreeze_vision_epoch unset")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
