"""The tiny recipe's training-only heads: class loss on every cell, box loss only where a defect is."""

from __future__ import annotations

import torch

from finetune.losses import soft_loc_targets
from finetune.tiny_train.batches import TinyBatch
from finetune.tiny_train.heads import AuxHeads, cell_losses


def _batch(cell_class: list[int], cell_box: list[list[int]]) -> TinyBatch:
    return TinyBatch(torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, dtype=torch.long),
                     torch.tensor([cell_class]), torch.tensor([cell_box]))


def test_frames_without_defects_cost_no_box_loss() -> None:
    torch.manual_seed(0)
    heads, cells = AuxHeads(d_model=8, num_classes=2), torch.randn(1, 4, 8)
    batch = _batch([0, 0, 0, 0], [[-1] * 4] * 4)
    class_loss, box_loss = cell_losses(heads, cells, batch, torch.randn(10, 8), soft_loc_targets(1.0, bins=10), 0.2)
    assert class_loss > 0 and box_loss == 0


def test_box_loss_is_lower_when_cells_point_at_their_box_bins() -> None:
    torch.manual_seed(0)
    heads, cells = AuxHeads(d_model=8, num_classes=2), torch.randn(1, 4, 8)
    loc_embeddings = torch.randn(10, 8)
    soft = soft_loc_targets(0.0, bins=10)
    coded = heads.cell_box(cells[0, :1]).view(4, 8) @ loc_embeddings.T
    favoured = coded.argmax(-1).tolist()  # the bins the untrained head already scores highest
    batch_hit = _batch([1, 0, 0, 0], [favoured, [-1] * 4, [-1] * 4, [-1] * 4])
    batch_miss = _batch([1, 0, 0, 0], [coded.argmin(-1).tolist(), [-1] * 4, [-1] * 4, [-1] * 4])
    _, hit = cell_losses(heads, cells, batch_hit, loc_embeddings, soft, 0.2)
    _, miss = cell_losses(heads, cells, batch_miss, loc_embeddings, soft, 0.2)
    assert hit < miss
