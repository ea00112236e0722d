"""One LoRA run's model, optimizer, schedule and precision on a device, stepping through the batches it is given."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.detector.base import DetectorError
from agent.detector.florence2 import pick_device as detector_device
from agent.detector.loc import LOC_BINS
from finetune.data.dataset import Sample
from finetune.lora import (
    WHOLE_MARK,
    add_lora,
    enable_checkpointing,
    load_lora,
    lora_parameters,
    set_vision_trainable,
)
from finetune.losses import sample_losses, sequence_loss, soft_loc_targets
from finetune.train.batches import Batcher
from finetune.train.checkpoints import restore_rng, rng_state
from finetune.train.config import TrainConfig, TrainError
from finetune.train.hard_examples import weighted_batch_loss
from finetune.train.memory import CheckpointingChoice, activation_bytes, choose_checkpointing
from finetune.train.schedule import apply_stage, lr_lambdas


# ----- precision, memory, device ------------------------------------------------------------------------------------
def amp_dtype(requested: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 where the GPU supports it, else fp16; None on CPU or with amp off."""
    if requested == "off" or (requested == "auto" and device.type != "cuda"):
        return None
    if device.type != "cuda":
        raise TrainError(f"amp={requested!r} needs a CUDA device (training on {device})")
    if requested == "fp16" or (requested == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch on CUDA; the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def pick_device(requested: str) -> torch.device:
    """The detector's device rule (auto = cuda when available), reported as a training error."""
    try:
        return detector_device(requested)
    except DetectorError as exc:
        raise TrainError(str(exc)) from None


# ----- the trainer --------------------------------------------------------------------------------------------------
class LoraTrainer:
    """One run: model + adapter + optimizer on a device, stepping through deterministic batches.

    Florence-2's; another family's trainer (finetune/paligemma/trainer.py) subclasses it and replaces the hooks:
    `load`, `new_adapter`, `make_batcher`, `loc_tokens`, `activation_estimate` and `next_token_view`.
    """

    def __init__(self, model_dir: Path, config: TrainConfig, init_adapter: Path | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.config = config
        self.device = pick_device(config.device)
        self.amp = amp_dtype(config.amp, self.device)
        torch.manual_seed(config.seed)
        self.processor, base = self.load()
        self.model = load_lora(base, init_adapter) if init_adapter is not None else self.new_adapter(base)
        self.staged = config.unfreeze_vision_epoch is not None
        self.model.to(self.device)
        self.batcher = self.make_batcher()
        self.checkpointing = self._checkpointing(base)
        enable_checkpointing(self.model, self.checkpointing.enabled)
        self.loc_ids = torch.tensor(self.processor.tokenizer.convert_tokens_to_ids(self.loc_tokens()),
                                    device=self.device)
        self.soft = self._soft_targets()
        self.optimizer = self._optimizer()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp is torch.float16)
        self.schedule: torch.optim.lr_scheduler.LambdaLR | None = None
        self.total_steps = 0

    # ----- the family's hooks (Florence-2 here) ----------------------------------------------------------------------
    def load(self) -> tuple[Any, Any]:
        """(processor, base model in float32) from `model_dir`."""
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        processor = AutoProcessor.from_pretrained(self.model_dir)
        return processor, Florence2ForConditionalGeneration.from_pretrained(self.model_dir, dtype=torch.float32)

    def new_adapter(self, base: Any) -> Any:
        return add_lora(base, self.config.lora)

    def make_batcher(self) -> Batcher:
        return Batcher(self.processor, self.config)

    def loc_tokens(self) -> list[str]:
        """The location tokens, in bin order (what soft targets spread over)."""
        return [f"<loc_{i}>" for i in range(LOC_BINS)]

    def activation_estimate(self, base: Any, precision_bytes: int) -> int:
        return activation_bytes(base.config, max(self.batcher.size), self.config.batch_size, precision_bytes)

    def next_token_view(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the labels they predict, aligned (an encoder-decoder's are already; a decoder-only model's
        logits at t predict the token at t + 1)."""
        return logits, labels

    # ----- the run ------------------------------------------------------------------------------------------------
    def _checkpointing(self, base: Any) -> CheckpointingChoice:
        needed = self.activation_estimate(base, 2 if self.amp is not None else 4)
        return choose_checkpointing(self.config.gradient_checkpointing, self.device, needed)

    def _soft_targets(self) -> torch.Tensor | None:
        if self.config.loc_sigma <= 0:
            return None
        return soft_loc_targets(self.config.loc_sigma, len(self.loc_ids)).to(self.device)

    def _optimizer(self) -> torch.optim.Optimizer:
        """AdamW over the adapter: vision-tower LoRA at `lr * vision_lr_scale`, everything else (text LoRA and the
        parts carried whole, which train like the recipe that built them: one rate) at `lr`."""
        text = [p for _, p in lora_parameters(self.model, vision=False) if p.requires_grad]
        vision: list[torch.nn.Parameter] = []
        whole_vision: list[torch.nn.Parameter] = []
        for name, param in lora_parameters(self.model, vision=True):
            (whole_vision if WHOLE_MARK in name else vision).append(param)
        if not text and not vision and not whole_vision:
            raise TrainError("the adapter has no trainable LoRA weights")
        groups = [{"params": text + whole_vision, "lr": self.config.lr}]
        if vision:
            groups.append({"params": vision, "lr": self.config.lr * self.config.vision_lr_scale})
        return torch.optim.AdamW(groups, weight_decay=self.config.weight_decay)

    def set_schedule(self, total_steps: int) -> None:
        self.total_steps = total_steps
        base_lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambdas(self.config, base_lrs, total_steps))

    def unfreeze_for(self, step: int, epoch: int) -> None:
        """Which LoRA weights train at this step: the three-stage preset's stage, or `unfreeze_vision_epoch`."""
        if self.config.schedule == "three-stage":
            apply_stage(self.model, self.config, step, self.total_steps)
        elif self.staged:
            set_vision_trainable(self.model, epoch >= int(self.config.unfreeze_vision_epoch or 0))

    def loss(self, batch: dict[str, torch.Tensor], mining: bool = False) -> torch.Tensor:
        """The batch's training loss; with `mining`, hard-example weighted (`finetune/train/hard_examples.py`)."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        autocast = (torch.autocast("cuda", dtype=self.amp) if self.amp is not None else contextlib.nullcontext())
        with autocast:
            out = self.model(**batch, use_cache=False)
        logits, labels = self.next_token_view(out.logits, batch["labels"])
        if mining and self.config.hard_fraction > 0:
            losses = sample_losses(logits, labels, self.loc_ids, self.soft)
            return weighted_batch_loss(losses, self.config.hard_fraction, self.config.hard_weight)
        if self.soft is None:
            return out.loss.float()
        return sequence_loss(logits, labels, self.loc_ids, self.soft)

    def train_step(self, batch: dict[str, torch.Tensor]) -> float:
        self.model.train()
        loss = self.loss(batch, mining=True)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        assert self.schedule is not None
        self.schedule.step()
        return float(loss.detach())

    def validation_loss(self, samples: Sequence[Sample]) -> float:
        """Teacher-forced `<OD>` loss over `samples` (boxes in reading order, no dropout)."""
        self.model.eval()
        rng = np.random.default_rng(0)
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(samples), self.config.batch_size):
                chunk = samples[start : start + self.config.batch_size]
                total += float(self.loss(self.batcher(chunk, rng, task="<OD>"))) * len(chunk)
                count += len(chunk)
        return total / max(count, 1)

    def state(self, step: int, history: list[dict[str, float]], epochs: list[dict[str, Any]]) -> dict[str, Any]:
        assert self.schedule is not None
        return {"step": step, "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng_state(), "history": history, "epochs": epochs}

    def restore(self, state: dict[str, Any]) -> None:
        assert self.schedule is not None
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"])
