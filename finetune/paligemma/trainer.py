"""LoRA fine-tuning of a PaliGemma (2) model: Florence-2's trainer and run loop (`finetune.train`) with the
family's hooks: the model class, the LoRA targets, the batcher, the 1024 location tokens and next-token alignment.

Everything else is shared: budgets, checkpoints and `--resume`, validation loss and mAP (through the family's
torch-eager detector), soft location targets, hard-example mining, augmentation, the adapter + manifest the model
store takes. What does not apply to this family is refused, naming the setting: task mixes (PaliGemma is prompted
`detect ...` only), the `three-stage` schedule (its stages are DaViT stages, which SigLIP lacks) and fp16 autocast
(Gemma 2 overflows in fp16; bf16 is used on CUDA).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from agent.detector.constraints import GrammarError
from agent.detector.paligemma.dialect import LOC_TOKENS
from agent.detector.paligemma.grammar import PaliGemmaGrammar
from finetune.data.dataset import Dataset
from finetune.lora import LoraSettings, add_lora
from finetune.paligemma.batches import PaliGemmaBatcher
from finetune.train.batches import model_class_names
from finetune.train.config import Progress, TrainConfig, TrainError
from finetune.train.memory import ATTENTION_BYTES_16BIT, BYTES_PER_TOKEN_UNIT_16BIT
from finetune.train.run import TrainResult, train_lora
from finetune.train.trainer import LoraTrainer

# Gemma 2 (language model) and SigLIP (vision tower) module names in transformers' PaliGemma
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VISION_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def lora_targets(settings: LoraSettings) -> str:
    """A regex PEFT full-matches against module names: the Gemma 2 attention and MLP projections, and with
    `settings.vision` the SigLIP tower's."""
    parts = [rf".*\.language_model\..*\.({'|'.join(TEXT_TARGETS)})"]
    if settings.vision:
        parts.append(rf".*\.vision_tower\..*\.({'|'.join(VISION_TARGETS)})")
    return "|".join(f"(?:{part})" for part in parts)


def check_config(config: TrainConfig) -> None:
    """TrainError naming a setting this family cannot honour."""
    if tuple(config.tasks) != ("<OD>",):
        raise TrainError(f"tasks {list(config.tasks)}: a PaliGemma model is fine-tuned on detection only "
                         "(`detect ...`); leave --tasks at <OD>")
    if config.schedule == "three-stage":
        raise TrainError("schedule 'three-stage' unfreezes DaViT stages, which PaliGemma's SigLIP tower does not "
                         "have: use --schedule cosine (with --unfreeze-vision-epoch for staged unfreezing)")
    if config.amp == "fp16":
        raise TrainError("amp 'fp16': Gemma 2 overflows in fp16; use --amp bf16 (or auto)")


def activation_bytes(config: Any, batch_size: int, precision_bytes: int, answer_tokens: int = 64) -> int:
    """Rough activation memory of one training batch without checkpointing: SigLIP over the image tokens, Gemma 2
    over image tokens + prompt + answer (the per-token and attention terms of finetune/train/memory.py)."""
    vision, text = config.vision_config, config.text_config
    image_tokens = (vision.image_size // vision.patch_size) ** 2
    seq = image_tokens + answer_tokens
    units = (image_tokens * vision.hidden_size * vision.num_hidden_layers
             + seq * text.hidden_size * text.num_hidden_layers)
    attention = (vision.num_attention_heads * image_tokens**2 * vision.num_hidden_layers
                 + text.num_attention_heads * seq**2 * text.num_hidden_layers)
    per_frame = BYTES_PER_TOKEN_UNIT_16BIT * units + ATTENTION_BYTES_16BIT * attention
    return math.ceil(per_frame * batch_size * precision_bytes / 2)


class PaliGemmaTrainer(LoraTrainer):
    """`LoraTrainer` for `PaliGemmaForConditionalGeneration`."""

    def __init__(self, model_dir: Path, config: TrainConfig, init_adapter: Path | None = None) -> None:
        check_config(config)
        super().__init__(model_dir, config, init_adapter)
        if self.amp is torch.float16:  # amp auto on a GPU without bf16
            raise TrainError(f"this GPU ({self.device}) has no bf16, and Gemma 2 overflows in fp16: train with "
                             "--amp off")

    def load(self) -> tuple[Any, Any]:
        from transformers import AutoProcessor, PaliGemmaForConditionalGeneration

        processor = AutoProcessor.from_pretrained(self.model_dir)
        base = PaliGemmaForConditionalGeneration.from_pretrained(self.model_dir, dtype=torch.float32,
                                                                 use_safetensors=True)
        return processor, base

    def new_adapter(self, base: Any) -> Any:
        return add_lora(base, self.config.lora, lora_targets(self.config.lora))

    def make_batcher(self) -> PaliGemmaBatcher:
        try:
            grammar = PaliGemmaGrammar(self.processor.tokenizer, model_class_names(self.model_dir))
        except GrammarError as exc:
            raise TrainError(f"{self.model_dir}: {exc}") from None
        return PaliGemmaBatcher(self.processor, self.config, grammar)

    def loc_tokens(self) -> list[str]:
        return list(LOC_TOKENS)

    def activation_estimate(self, base: Any, precision_bytes: int) -> int:
        return activation_bytes(base.config, self.config.batch_size, precision_bytes)

    def next_token_view(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return logits[:, :-1], labels[:, 1:]  # decoder-only: the logits at t predict the token at t + 1


def finetune_paligemma(model_dir: Path, train_set: Dataset, out_dir: Path, config: TrainConfig = TrainConfig(),
                       val_set: Dataset | None = None, init_adapter: Path | None = None, run_dir: Path | None = None,
                       resume: bool = False, progress: Progress | None = None) -> TrainResult:
    """`train_lora` (same arguments, same outputs) with `PaliGemmaTrainer`."""
    return train_lora(model_dir, train_set, out_dir, config, val_set, init_adapter, run_dir, resume, progress,
                      trainer_class=PaliGemmaTrainer)
