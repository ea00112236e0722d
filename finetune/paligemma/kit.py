"""The paligemma2 family's training-side entry points, as finetune/families.py registers them (`TrainingKit`).

Light on purpose (the CLI imports it to list the families): each function imports its heavy code when called. It
does not import finetune.families (that would be an import cycle); `build_tiny` takes its `TinyRequest`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NAME, TITLE = "paligemma2", "PaliGemma 2"


def build_tiny(request: Any) -> Path:
    """`model tiny --family paligemma2`: an untrained tiny PaliGemma 2 (`request`: finetune.families.TinyRequest)."""
    from finetune.paligemma.tiny import TinyPaliSpec, build_tiny_paligemma

    spec = TinyPaliSpec(image_size=request.image_size, seed=request.seed)
    return build_tiny_paligemma(list(request.class_names), request.out, spec)


def finetune(*args: Any, **kwargs: Any) -> Any:
    """`edge-inspect finetune` on a PaliGemma model directory: `finetune.train.run.train_lora`'s arguments."""
    from finetune.paligemma.trainer import finetune_paligemma

    return finetune_paligemma(*args, **kwargs)
