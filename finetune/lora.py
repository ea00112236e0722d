"""PEFT LoRA on native transformers Florence-2: which modules get adapters, wrapping, loading, saving.

Module names are those of `Florence2ForConditionalGeneration` in transformers >= 5 (not the remote-code model):
the BART encoder/decoder (`model.language_model`) have `q_proj`, `k_proj`, `v_proj`, `out_proj` (self- and
cross-attention) and `fc1`/`fc2`; the DaViT vision tower (`model.vision_tower`) has `qkv`/`proj` (window and channel
attention) and its own `fc1`/`fc2`. The targets are a regular expression over full module names, so `fc1` in the
vision tower is adapted only when the vision tower is asked for (`LoraSettings.vision`).

Only safetensors adapters are read or written (`adapter_model.safetensors`); a directory holding pickle-based
weights is refused before PEFT looks at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agent.store.files import StoreError, check_adapter_dir

TEXT_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
VISION_TARGETS: tuple[str, ...] = ("qkv", "proj")
VISION_PREFIX = "vision_tower"
# Parts of Florence-2 an adapter may carry whole (PEFT's modules_to_save: every weight trained, a full copy stored in
# the adapter). The text side is not one of them: PEFT needs at least one LoRA layer, and those live there.
WHOLE_PARTS: tuple[str, ...] = (VISION_PREFIX, "multi_modal_projector")
WHOLE_MARK = "modules_to_save"  # in the names of the trained copies of whole parts
TRAINED_MARKS = ("lora_", WHOLE_MARK)  # in the names of an adapter's own parameters


class LoraError(ValueError):
    """A LoRA setting or adapter that cannot be used; the message names the value or file at fault."""


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters (defaults: r=8, alpha=16, dropout 0.05 on the BART attention and MLP layers)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    vision: bool = False  # also adapt the DaViT tower (qkv/proj, and its fc1/fc2)
    lm_head: bool = False
    whole: tuple[str, ...] = ()  # parts (WHOLE_PARTS) trained in full and stored whole inside the adapter

    def __post_init__(self) -> None:
        if self.r < 1:
            raise LoraError(f"LoRA rank r={self.r}: must be at least 1")
        if self.alpha <= 0:
            raise LoraError(f"LoRA alpha={self.alpha}: must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise LoraError(f"LoRA dropout={self.dropout}: must lie in [0, 1)")
        unknown = [part for part in self.whole if part not in WHOLE_PARTS]
        if unknown:
            raise LoraError(f"whole parts {unknown}: an adapter can carry only {list(WHOLE_PARTS)} whole")

    def target_modules(self) -> str:
        """A regex PEFT full-matches against module names (e.g. `model.language_model.encoder.layers.0.fc1`)."""
        parts = [rf".*\.language_model\..*\.({'|'.join(TEXT_TARGETS)})"]
        if self.vision and VISION_PREFIX not in self.whole:  # a whole tower needs no LoRA inside it
            parts.append(rf".*\.{VISION_PREFIX}\..*\.({'|'.join((*VISION_TARGETS, 'fc1', 'fc2'))})")
        if self.lm_head:
            parts.append("lm_head")
        return "|".join(f"(?:{part})" for part in parts)


def lora_config(settings: LoraSettings, targets: str | None = None) -> Any:
    """PEFT's config; `targets` (a module-name regex) replaces Florence-2's `settings.target_modules()`."""
    from peft import LoraConfig

    # no task_type: Florence-2 is not one of PEFT's task classes; the plain PeftModel forwards every argument
    return LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=targets or settings.target_modules(), bias="none",
                      modules_to_save=list(settings.whole) or None)


def add_lora(model: nn.Module, settings: LoraSettings, targets: str | None = None) -> Any:
    """Wrap `model` with fresh LoRA adapters (base weights frozen); returns the `PeftModel`. `targets`: another
    family's module-name regex (finetune/paligemma/trainer.py)."""
    from peft import get_peft_model

    if settings.lm_head and tied_lm_head(model):
        raise LoraError("lm_head LoRA on a model whose lm_head is tied to the input embeddings: merging it for "
                        "inference would change the embeddings too; leave lm_head out (Florence-2 and PaliGemma "
                        "tie them)")
    return get_peft_model(model, lora_config(settings, targets))


def tied_lm_head(model: nn.Module) -> bool:
    head = getattr(model, "lm_head", None)
    get_embeddings = getattr(model, "get_input_embeddings", None)
    embeddings = get_embeddings() if callable(get_embeddings) else None
    return head is not None and embeddings is not None and head.weight is embeddings.weight


def load_lora(model: nn.Module, adapter: Path, trainable: bool = True) -> Any:
    """Wrap `model` with the adapter in `adapter` (safetensors only), its LoRA weights trainable by default."""
    from peft import PeftModel

    check_safe_adapter(adapter)
    try:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LoraError(f"adapter {adapter} does not fit this base model: {first}") from exc


def check_safe_adapter(adapter: Path) -> None:
    """An adapter directory with adapter_config.json + adapter_model.safetensors and no pickled weights."""
    try:
        check_adapter_dir(Path(adapter))
    except StoreError as exc:
        raise LoraError(str(exc)) from None
    from safetensors import SafetensorError, safe_open

    weights = Path(adapter) / "adapter_model.safetensors"
    try:
        with safe_open(str(weights), "pt") as handle:
            handle.keys()
    except (SafetensorError, OSError) as exc:
        raise LoraError(f"adapter weights {weights} are corrupt or not safetensors: {exc}") from exc


def lora_parameters(model: nn.Module, vision: bool | None = None) -> Iterator[tuple[str, nn.Parameter]]:
    """The adapter's own parameters by name (LoRA weights and the trained copies of whole parts); `vision`
    True/False keeps only those inside/outside the vision tower."""
    for name, param in model.named_parameters():
        if not any(mark in name for mark in TRAINED_MARKS):
            continue
        if vision is None or (VISION_PREFIX in name) == vision:
            yield name, param


def set_vision_trainable(model: nn.Module, trainable: bool) -> int:
    """Freeze or unfreeze the vision tower's LoRA weights (staged unfreezing); returns how many tensors changed."""
    count = 0
    for _, param in lora_parameters(model, vision=True):
        param.requires_grad_(trainable)
        count += 1
    return count


def trainable_count(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def save_adapter(model: Any, out_dir: Path) -> Path:
    """Write the adapter in PEFT layout (adapter_config.json + adapter_model.safetensors)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


def enable_checkpointing(model: Any, enabled: bool) -> None:
    """Activation (gradient) checkpointing for training; non-reentrant so frozen inputs need no grad hooks."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if enabled:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_disable()


def lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the LoRA weights (for checkpoints and tests)."""
    return {name: param.detach().clone() for name, param in lora_parameters(model)}
