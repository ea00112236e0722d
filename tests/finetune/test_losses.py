"""The losses both trainers share: -100-padded labels, Gaussian soft `<loc>` targets, the sequence loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from finetune.losses import IGNORE_INDEX, label_ids, sequence_loss, soft_loc_targets
from finetune.tiny import build_tokenizer


def test_soft_loc_targets_are_normalised_gaussians_peaking_on_the_target_bin() -> None:
    soft = soft_loc_targets(4.0, bins=50)
    assert torch.allclose(soft.sum(1), torch.ones(50))
    assert int(soft[20].argmax()) == 20 and soft[20, 21] > soft[20, 25] > soft[20, 40]
    assert torch.equal(soft_loc_targets(0.0, bins=5), torch.eye(5))


def test_sequence_loss_with_one_hot_targets_is_cross_entropy_ignoring_padding() -> None:
    torch.manual_seed(0)
    loc_ids = torch.arange(10, 20)
    logits = torch.randn(2, 3, 20)
    labels = torch.tensor([[1, 12, -100], [15, 2, 3]])
    expected = F.cross_entropy(logits.view(-1, 20), labels.view(-1), ignore_index=-100)
    got = sequence_loss(logits, labels, loc_ids, soft_loc_targets(0.0, bins=10))
    assert torch.allclose(got, expected, atol=1e-5)


def test_sequence_loss_charges_a_near_miss_less_than_a_far_miss() -> None:
    loc_ids = torch.arange(0, 100)
    soft = soft_loc_targets(4.0, bins=100)
    labels = torch.tensor([[50]])
    near, far = torch.zeros(1, 1, 100), torch.zeros(1, 1, 100)
    near[0, 0, 52] = far[0, 0, 90] = 10.0
    assert sequence_loss(near, labels, loc_ids, soft) < sequence_loss(far, labels, loc_ids, soft)


def test_labels_are_right_padded_with_the_ignored_index() -> None:
    tokenizer = build_tokenizer(["scratch", "hole"])
    labels = label_ids(tokenizer, ["scratch<loc_1><loc_2><loc_3><loc_4>", "hole<loc_5><loc_6><loc_7><loc_8>" * 2])
    short, long = (row[row != IGNORE_INDEX] for row in labels)
    assert labels.shape[1] == len(long) > len(short)
    assert (labels[0, len(short):] == IGNORE_INDEX).all()
    assert "<loc_4>" in tokenizer.convert_ids_to_tokens(short.tolist())
