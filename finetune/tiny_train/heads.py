"""The recipe's training-only heads on the encoder's image-token outputs, and their per-cell losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from finetune.tiny_train.batches import TinyBatch


class AuxHeads(nn.Module):
    """Training-only heads on the encoder's image-token outputs (never saved with the model)."""

    def __init__(self, d_model: int, num_classes: int) -> None:
        super().__init__()
        self.cell_class = nn.Linear(d_model, num_classes + 1)
        self.cell_box = nn.Linear(d_model, 4 * d_model)


def cell_losses(heads: AuxHeads, cells: torch.Tensor, batch: TinyBatch, loc_embeddings: torch.Tensor,
                soft: torch.Tensor, background_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Class loss on every cell (background down-weighted) and box loss on cells inside a defect."""
    class_logits = heads.cell_class(cells)
    weights = torch.ones(class_logits.shape[-1])
    weights[0] = background_weight
    class_loss = F.cross_entropy(class_logits.flatten(0, 1), batch.cell_class.flatten(), weight=weights)
    positive = batch.cell_box[..., 0] >= 0
    if not positive.any():
        return class_loss, cells.sum() * 0.0
    # box cells score each coordinate against the model's own <loc> embeddings: the space the decoder emits in
    coded = heads.cell_box(cells[positive]).view(-1, 4, cells.shape[-1])
    box_log_probs = F.log_softmax(coded @ loc_embeddings.T, dim=-1)
    target = soft[batch.cell_box[positive]]
    box_loss = (target * (target.clamp(min=1e-12).log() - box_log_probs)).sum(-1).mean()
    return class_loss, box_loss
