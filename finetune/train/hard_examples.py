"""Hard-example mining: the samples of a batch with the highest loss count more in its gradient.

The `hard_fraction` of a batch with the largest per-sample losses (`ceil(fraction x batch)` samples, at least
one: 20 % of a batch of 4 is its hardest sample) get the raw weight `hard_weight`, the others 1; the weights are
then divided by their mean, so they average 1 and the loss keeps its scale (the learning rate means the same with
mining on or off). The batch loss is the weighted mean of the per-sample losses (each the mean over its own target
tokens, `finetune.losses.sample_losses`). Weights are constants: no gradient flows through the ranking.
"""

from __future__ import annotations

import math

import torch


def hard_example_weights(losses: torch.Tensor, fraction: float, weight: float) -> torch.Tensor:
    """Per-sample weights (mean 1) for a 1-D vector of per-sample losses; see the module docstring."""
    count = len(losses)
    raw = torch.ones(count, dtype=torch.float32, device=losses.device)
    if count == 0 or fraction <= 0:
        return raw
    hardest = torch.topk(losses.detach().float(), max(1, math.ceil(fraction * count - 1e-9))).indices
    raw[hardest] = float(weight)
    return raw / raw.mean()


def weighted_batch_loss(losses: torch.Tensor, fraction: float, weight: float) -> torch.Tensor:
    """The batch loss with hard-example weights: mean over samples of weight x loss."""
    return (hard_example_weights(losses, fraction, weight) * losses).mean()
