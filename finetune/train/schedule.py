"""Learning-rate schedules and the staged unfreezing they bring, chosen by `TrainConfig.schedule`.

- `cosine` (default): linear warm-up over `warmup_steps`, then cosine decay from `lr` to 0 at the last step; the
  vision tower's LoRA learns at `lr x vision_lr_scale` (and, with `unfreeze_vision_epoch`, only from that epoch on).
- `three-stage` (the design documents' recipe, a named preset): the steps fall into three stages at `stage_ends`
  (fractions of the planned steps, default thirds), each with a constant learning rate for every LoRA weight:

  | stage | lr    | vision LoRA frozen                      |
  | ----- | ----- | --------------------------------------- |
  | 1     | 1e-4  | the first 2 DaViT stages (`blocks.0-1`) |
  | 2     | 5e-5  | the first DaViT stage (`blocks.0`)      |
  | 3     | 1e-5  | none: all unfrozen                      |

  With LoRA the base weights are always frozen: "frozen" and "unfrozen" name the LoRA adapters on a DaViT stage
  (their `requires_grad`); the text (BART) adapters train in every stage. The preset adds vision LoRA to a fresh
  adapter; an adapter trained without it keeps the stage learning rates and has no vision stages to unfreeze.
  `lr` and `vision_lr_scale` are not used. The configured warm-up still ramps the first steps of stage 1.

Both are pure functions of the step, so a resumed run (`resume=True`) lands in the same stage with the same rate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from torch import nn

from finetune.lora import lora_parameters
from finetune.train.config import TrainConfig

_VISION_STAGE = re.compile(r"vision_tower\.blocks\.(\d+)\.")


@dataclass(frozen=True)
class Stage:
    lr: float
    frozen_vision_stages: int  # LoRA on DaViT stages 0 .. n-1 frozen


THREE_STAGE: tuple[Stage, ...] = (Stage(1e-4, 2), Stage(5e-5, 1), Stage(1e-5, 0))


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def stage_index(step: int, total: int, ends: Sequence[float]) -> int:
    """The 0-based stage of `step` out of `total`: how many stage ends (fractions of `total`) it has passed."""
    return sum(step >= math.ceil(end * total - 1e-9) for end in ends)


def stage_lr(step: int, total: int, config: TrainConfig) -> float:
    """The three-stage preset's learning rate at `step` (warm-up included)."""
    warmup = min(config.warmup_steps, max(total - 1, 0))
    ramp = (step + 1) / warmup if step < warmup else 1.0
    return THREE_STAGE[stage_index(step, total, config.stage_ends)].lr * ramp


def lr_lambdas(config: TrainConfig, base_lrs: Sequence[float], total: int) -> list[Callable[[int], float]]:
    """One `LambdaLR` factor per optimizer group (its base lr x factor = the rate at that step)."""
    if config.schedule == "three-stage":
        return [partial(_relative_stage_lr, base=base, total=total, config=config) for base in base_lrs]
    warmup = min(config.warmup_steps, max(total - 1, 0))
    return [partial(lr_factor, warmup=warmup, total=total) for _ in base_lrs]


def _relative_stage_lr(step: int, base: float, total: int, config: TrainConfig) -> float:
    return stage_lr(step, total, config) / base


def vision_stage_of(name: str) -> int | None:
    """The DaViT stage a parameter lives in (`...vision_tower.blocks.<stage>.<block>...`), None outside it."""
    match = _VISION_STAGE.search(name)
    return int(match.group(1)) if match else None


def freeze_first_vision_stages(model: nn.Module, frozen: int) -> int:
    """LoRA weights of DaViT stages below `frozen` frozen, the later ones trainable; returns how many are frozen."""
    count = 0
    for name, param in lora_parameters(model, vision=True):
        stage = vision_stage_of(name)
        trainable = stage is None or stage >= frozen
        param.requires_grad_(trainable)
        count += not trainable
    return count


def apply_stage(model: nn.Module, config: TrainConfig, step: int, total: int) -> Stage:
    """Set which vision LoRA weights train at `step` of the three-stage preset; returns the stage."""
    stage = THREE_STAGE[stage_index(step, total, config.stage_ends)]
    freeze_first_vision_stages(model, stage.frozen_vision_stages)
    return stage
