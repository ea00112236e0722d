"""Per-box confidence from the decoder's token probabilities.

All probabilities are taken under the *constrained* distribution: at each step, softmax over only the tokens the
`<OD>` grammar allows there (`agent.detector.constraints`). That makes the number independent of how a backend
computes logits for forbidden tokens (e.g. a fast path that slices `lm_head` to the allowed vocabulary).

For a box written as label tokens l_1..l_k followed by x1 y1 x2 y2:

    score = P(label) * (P~(x1) * P~(y1) * P~(x2) * P~(y2)) ** (1/4)

    P(label) = prod_j p(l_j)        -- includes the choice "another box" versus `</s>` at the first label token,
                                       so it is the model's belief that this defect exists and has this class
    P~(c)    = sum_{|b - c| <= W} p(<loc_b>)   -- probability mass within W bins of the chosen coordinate

The window W (default 8 bins = 0.8 % of the frame per side, twice the sigma of the soft-target loss the training
recipe uses) measures how sure the model is of *where* the edge is, not which of two neighbouring bins it prefers: a
model trained on Gaussian soft targets spreads even a certain belief over a few bins, and with a narrow window that
training artefact, not certainty, would dominate the score (measured: with W = 2 an overfit model scored its own
frames and pure noise alike, ~0.47; with W = 8 its own frames score 0.96 and noise lower). W = 0 gives the plain token
probability. The score lies in [0, 1] and grows with the model's certainty about both the class and the geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agent.detections import Detections
from agent.detector.constraints import GROUP, LABEL, LOC, OdGrammar, RowState
from agent.detector.loc import bins_to_xyxy

DEFAULT_LOC_WINDOW = 8


@dataclass(frozen=True)
class ScoredBox:
    class_id: int
    bins: tuple[int, int, int, int]
    score: float


def constrained_log_probs(step_scores: torch.Tensor) -> torch.Tensor:
    """Log-softmax of per-step scores whose forbidden entries are -inf (rows x vocab), in float32."""
    return torch.log_softmax(step_scores.float(), dim=-1)


def score_sequence(
    tokens: list[int], log_probs: torch.Tensor, grammar: OdGrammar, loc_window: int = DEFAULT_LOC_WINDOW,
    columns: torch.Tensor | None = None,
) -> list[ScoredBox]:
    """Parse generated `tokens` (no decoder-start token) into boxes and score each one.

    `log_probs[t]` is the constrained log-distribution the t-th token was drawn from (T x vocab). A backend that
    decodes on a sliced vocabulary passes `columns`: full-vocab token id -> its column in `log_probs` (T x slice).
    """
    state, boxes = RowState(), []
    label_logp, loc_probs = 0.0, list[float]()
    columns = columns.to(log_probs.device) if columns is not None else None
    loc_ids = grammar.loc_ids.to(log_probs.device) if columns is None else columns[grammar.loc_ids.to(log_probs.device)]
    for t, tok in enumerate(tokens):
        phase_before = state.phase
        if phase_before == GROUP and tok != grammar.eos_id:
            label_logp, loc_probs = 0.0, []
        if phase_before in (GROUP, LABEL) and grammar.loc_bin(tok) is None and tok != grammar.eos_id:
            label_logp += float(log_probs[t, tok if columns is None else int(columns[tok])])
        elif phase_before in (LABEL, LOC):
            loc_probs.append(window_mass(log_probs[t], loc_ids, grammar.loc_bin(tok) or 0, loc_window))
        class_id = state.node.class_id if state.node is not None else None
        grammar.advance(state, tok)
        if phase_before == LOC and state.phase == GROUP:
            boxes.append(_finish_box(state, class_id, tokens[t - 3 : t + 1], grammar, label_logp, loc_probs))
        if state.phase == "done":
            break
    return boxes


def scored_detections(
    tokens: list[int], log_probs: torch.Tensor, grammar: OdGrammar, loc_window: int, columns: torch.Tensor | None,
    image_size: tuple[int, int],
) -> Detections:
    """`score_sequence` turned into `Detections` on a frame of `image_size` (what every backend returns)."""
    boxes = score_sequence(tokens, log_probs, grammar, loc_window, columns)
    return Detections(
        bins_to_xyxy(np.array([b.bins for b in boxes]).reshape(-1, 4), image_size),
        [b.class_id for b in boxes], [b.score for b in boxes], grammar.class_names, image_size,
    )


def window_mass(step_log_probs: torch.Tensor, loc_ids: torch.Tensor, chosen_bin: int, window: int) -> float:
    lo, hi = max(0, chosen_bin - window), min(len(loc_ids), chosen_bin + window + 1)
    return float(torch.exp(step_log_probs[loc_ids[lo:hi]]).sum().clamp(max=1.0))


def _finish_box(
    state: RowState, class_id: int | None, loc_tokens: list[int], grammar: OdGrammar, label_logp: float,
    loc_probs: list[float],
) -> ScoredBox:
    assert class_id is not None, "grammar reached a box without a complete label"
    bins = tuple(grammar.loc_bin(t) or 0 for t in loc_tokens)
    geo = float(np.prod(np.clip(loc_probs, 1e-12, 1.0)) ** 0.25)
    return ScoredBox(class_id, bins, float(np.exp(label_logp)) * geo)  # type: ignore[arg-type]


__all__ = ["DEFAULT_LOC_WINDOW", "LABEL", "LOC", "ScoredBox", "constrained_log_probs", "score_sequence",
           "scored_detections", "window_mass"]
