"""What the decoder is trained against, shared by the LoRA trainer (`finetune.train`) and the tiny recipe.

- `label_ids`: target texts -> token ids with -100 on padding (the positions every loss here ignores),
- `soft_loc_targets`: Gaussian soft targets over neighbouring `<loc>` bins (a near miss costs less than a far one),
- `sequence_loss`: cross-entropy over the target tokens, with `<loc>` tokens scored against those soft targets,
- `sample_losses`: the same, one value per sample (what hard-example mining weights, `finetune/train/hard_examples.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from agent.detector.loc import LOC_BINS

IGNORE_INDEX = -100


def label_ids(tokenizer: Any, texts: Sequence[str]) -> torch.Tensor:
    """Tokenised target texts, right-padded; padding positions hold `IGNORE_INDEX`."""
    tokens = tokenizer(list(texts), return_tensors="pt", padding=True)
    return tokens.input_ids.masked_fill(tokens.attention_mask == 0, IGNORE_INDEX)


def soft_loc_targets(sigma: float, bins: int = LOC_BINS) -> torch.Tensor:
    """bins x bins matrix: row k is a Gaussian over bins centred on k (normalised); sigma 0 gives one-hot rows."""
    if sigma <= 0:
        return torch.eye(bins)
    k = torch.arange(bins, dtype=torch.float32)
    weights = torch.exp(-((k[None, :] - k[:, None]) ** 2) / (2 * sigma**2))
    return weights / weights.sum(dim=1, keepdim=True)


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor, loc_ids: torch.Tensor, soft: torch.Tensor
                  ) -> torch.Tensor:
    """Cross-entropy over the target tokens; `<loc>` targets are spread over neighbouring bins by `soft`."""
    per_token, valid = token_losses(logits, labels, loc_ids, soft)
    return (per_token * valid).sum() / valid.sum().clamp(min=1)


def sample_losses(logits: torch.Tensor, labels: torch.Tensor, loc_ids: torch.Tensor, soft: torch.Tensor | None
                  ) -> torch.Tensor:
    """One loss per sample (row): the mean over its own target tokens (hard cross-entropy when `soft` is None)."""
    per_token, valid = token_losses(logits, labels, loc_ids, soft)
    return (per_token * valid).sum(dim=-1) / valid.sum(dim=-1).clamp(min=1)


def token_losses(logits: torch.Tensor, labels: torch.Tensor, loc_ids: torch.Tensor, soft: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss of every target position, mask of the positions that count); `<loc>` targets soft when `soft` given."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    valid = labels != IGNORE_INDEX
    safe = labels.clamp(min=0)
    hard = -log_probs.gather(-1, safe[..., None]).squeeze(-1)
    if soft is None:
        return hard, valid
    loc_index = torch.searchsorted(loc_ids, safe).clamp(max=len(loc_ids) - 1)
    is_loc = loc_ids[loc_index] == safe
    target = soft[loc_index]
    # KL rather than cross-entropy: subtracting the target's own entropy makes 0 the floor, so logs are readable
    soft_nll = (target * (target.clamp(min=1e-12).log() - log_probs[..., loc_ids])).sum(-1)
    return torch.where(is_loc, soft_nll, hard), valid
