"""Constrained greedy decoding on the grammar's sliced vocabulary, shared by the fast backends (torch-fast, onnx).

A backend supplies one decoder step that returns logits over `grammar.allowed_ids` only (its `lm_head` sliced to
the tokens the `<OD>` grammar can ever emit). This loop masks those logits with the grammar, takes the argmax and
keeps the constrained log-probs that `score_sequence(..., columns=vocab.columns)` scores. It reproduces HF greedy
`generate` with `OdLogitsProcessor`: a finished row is padded, and the loop stops as soon as every row has
finished (early exit) or the token budget is spent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from agent.detector.constraints import DONE, Grammar, RowState

# (previous tokens, full-vocab ids, shape B; decoder position of those tokens) -> logits B x A over the slice
StepFn = Callable[[npt.NDArray[np.int64], int], npt.NDArray[np.float32]]


@dataclass(frozen=True)
class DecodeLimits:
    """Token budget and forced box counts (`min_boxes == max_boxes` fixes the decode length, as benchmarks do)."""

    max_new_tokens: int = 64
    min_boxes: int = 0
    max_boxes: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 2:
            raise ValueError(f"max_new_tokens must be >= 2 (<s> and </s>), got {self.max_new_tokens}")
        if self.min_boxes < 0 or (self.max_boxes is not None and self.max_boxes < self.min_boxes):
            raise ValueError(f"need 0 <= min_boxes <= max_boxes, got {self.min_boxes} and {self.max_boxes}")


class SlicedVocab:
    """The grammar's vocabulary slice: column -> full-vocab id (`ids`) and full-vocab id -> column (`columns`)."""

    def __init__(self, grammar: Grammar) -> None:
        self.ids = grammar.allowed_ids.numpy().astype(np.int64)
        columns = np.full(max(grammar.vocab_size, int(self.ids.max()) + 1), -1, dtype=np.int64)
        columns[self.ids] = np.arange(len(self.ids))
        self.columns = columns

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def columns_tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.columns)

    def allowed_mask(
        self, grammar: Grammar, states: list[RowState], limits: DecodeLimits
    ) -> npt.NDArray[np.bool_]:
        """B x A: True where the grammar allows the column's token next."""
        mask = np.zeros((len(states), len(self.ids)), dtype=bool)
        for row, state in enumerate(states):
            allowed = grammar.allowed(state, limits.max_new_tokens - state.steps, limits.min_boxes, limits.max_boxes)
            mask[row, self.columns[np.asarray(allowed, dtype=np.int64)]] = True
        return mask


def masked_log_softmax(logits: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
    """Log-softmax over the allowed entries only (the rest -inf), in float32."""
    masked = np.where(mask, logits.astype(np.float32, copy=False), np.float32(-np.inf))
    top = masked.max(axis=-1, keepdims=True)
    shifted = masked - top
    return (shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))).astype(np.float32)


def greedy_decode(
    step: StepFn, grammar: Grammar, vocab: SlicedVocab, batch: int, limits: DecodeLimits, decoder_start_id: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Run the constrained greedy loop -> (tokens B x T full-vocab ids, log-probs T x B x A over the slice)."""
    states = [RowState() for _ in range(batch)]
    previous = np.full(batch, decoder_start_id, dtype=np.int64)
    tokens: list[npt.NDArray[np.int64]] = []
    log_probs: list[npt.NDArray[np.float32]] = []
    for position in range(limits.max_new_tokens):
        logits = step(previous, position)
        step_log_probs = masked_log_softmax(logits, vocab.allowed_mask(grammar, states, limits))
        chosen = vocab.ids[step_log_probs.argmax(axis=-1)]
        finished = np.array([s.phase == DONE for s in states])
        chosen = np.where(finished, grammar.pad_id, chosen)  # as HF generate pads rows that already wrote </s>
        for state, token in zip(states, chosen.tolist()):
            grammar.advance(state, token)
        tokens.append(chosen)
        log_probs.append(step_log_probs)
        previous = chosen
        if all(s.phase == DONE for s in states):
            break
    return np.stack(tokens, axis=1), np.stack(log_probs)
