"""Hard-example mining: the hardest fraction of a batch weighted up, weights averaging 1, gradients following."""

from __future__ import annotations

import pytest
import torch

from finetune.train.hard_examples import hard_example_weights, weighted_batch_loss


def test_the_top_fifth_by_loss_gets_the_hard_weight_normalised_to_a_mean_of_one() -> None:
    losses = torch.tensor([1.0, 5.0, 2.0, 8.0, 3.0])
    weights = hard_example_weights(losses, fraction=0.2, weight=3.0)
    # raw [1, 1, 1, 3, 1], mean 7/5
    assert weights.tolist() == pytest.approx([5 / 7, 5 / 7, 5 / 7, 15 / 7, 5 / 7])
    assert float(weights.mean()) == pytest.approx(1.0)


def test_the_count_is_the_fraction_rounded_up_and_at_least_one() -> None:
    losses = torch.arange(10, dtype=torch.float32)
    assert int((hard_example_weights(losses, 0.3, 2.0) > 1).sum()) == 3  # 0.3 x 10 is 3, not 4 (float error)
    assert int((hard_example_weights(losses[:4], 0.2, 2.0) > 1).sum()) == 1
    assert int((hard_example_weights(losses[:4], 0.26, 2.0) > 1).sum()) == 2


def test_mining_off_or_a_weight_of_one_leaves_every_sample_equal() -> None:
    losses = torch.tensor([4.0, 1.0, 9.0])
    assert hard_example_weights(losses, 0.0, 5.0).tolist() == [1.0, 1.0, 1.0]
    assert hard_example_weights(losses, 0.5, 1.0).tolist() == [1.0, 1.0, 1.0]


def test_gradients_scale_with_the_weights_and_not_through_the_ranking() -> None:
    losses = torch.tensor([1.0, 5.0, 2.0, 8.0], requires_grad=True)
    weighted_batch_loss(losses, fraction=0.25, weight=4.0).backward()
    # raw [1, 1, 1, 4], mean 7/4; d(mean(w * l))/dl = w / 4
    assert losses.grad is not None
    assert losses.grad.tolist() == pytest.approx([1 / 7, 1 / 7, 1 / 7, 4 / 7])
