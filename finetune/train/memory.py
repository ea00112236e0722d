"""Whether a LoRA run uses activation (gradient) checkpointing: only where it saves GPU memory the run would lack.

Checkpointing trades compute for memory: activations are recomputed in the backward pass instead of kept.
- CPU: off by default. Host memory is rarely the limit, and the recomputation costs time for no measurable saving
  (bench/results/finetune-cpu-tiny.json: 0.64x the speed, peak RSS 1.00x; a user measured ~4 s/step on against
  ~0.8 s/step off).
- CUDA: on by default only when one batch's activations without it, estimated from the model's shapes
  (`activation_bytes`), would not fit twice into the GPU memory still free after loading the model.
`TrainConfig.gradient_checkpointing` True/False overrides the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

# Activation bytes per token, per hidden unit, per transformer layer at 16-bit precision (Korthikanti et al., 2022,
# "Reducing activation recomputation in large transformer models": 34 s b h + 5 a s^2 b per layer).
BYTES_PER_TOKEN_UNIT_16BIT = 34
ATTENTION_BYTES_16BIT = 5
HEADROOM = 2.0  # allocator fragmentation, optimizer state, the logits over the vocabulary


@dataclass(frozen=True)
class CheckpointingChoice:
    enabled: bool
    reason: str


def activation_bytes(config: Any, image_size: int, batch_size: int, precision_bytes: int,
                     target_tokens: int = 64) -> int:
    """Rough activation memory of one Florence-2 training batch without checkpointing (vision tower + BART)."""
    vision, text = config.vision_config, config.text_config
    units, side = 0.0, float(image_size)
    for stride, dim, depth in zip(vision.patch_stride, vision.embed_dim, vision.depths):
        side /= stride
        units += side * side * dim * depth  # windowed attention: the s^2 term is small
    image_tokens = int(side * side) + 1
    units += image_tokens * text.d_model * text.encoder_layers + target_tokens * text.d_model * text.decoder_layers
    attention = text.encoder_attention_heads * image_tokens**2 * text.encoder_layers
    per_frame = BYTES_PER_TOKEN_UNIT_16BIT * units + ATTENTION_BYTES_16BIT * attention
    return math.ceil(per_frame * batch_size * precision_bytes / 2)


def choose_checkpointing(requested: bool | None, device: torch.device, needed_bytes: int) -> CheckpointingChoice:
    """`requested` when given; else off on CPU, and on CUDA on only when `needed_bytes` x HEADROOM is not free."""
    if requested is not None:
        return CheckpointingChoice(requested, "asked for" if requested else "turned off")
    if device.type != "cuda":
        return CheckpointingChoice(False, "off on CPU: recomputation costs time and host memory is not the limit")
    free, _total = torch.cuda.mem_get_info(device)
    need = needed_bytes * HEADROOM
    enabled = need > free
    verdict = "on" if enabled else "off"
    return CheckpointingChoice(enabled, f"{verdict}: activations need ~{need / 2**30:.1f} GiB with headroom, "
                                        f"{free / 2**30:.1f} GiB of GPU memory free")
