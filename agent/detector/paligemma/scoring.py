"""Per-box confidence of a PaliGemma answer from the decoder's constrained token probabilities.

The rule of `agent.detector.scoring` (Florence-2), carried over to PaliGemma's order (locations before the label):

    score = P(box) * P(label) * (P~(y1) * P~(x1) * P~(y2) * P~(x2)) ** (1/4)

    P(box)   = the choice "another box" against `<eos>`: for the first box, the probability mass of all location
               tokens at the first step (the alternative is `<eos>`); for a later one, the probability of the
               separator after the previous label (against `<eos>` and a longer label)
    P(label) = prod_j p(l_j) over the label's tokens (the class, given that there is a box)
    P~(c)    = the mass of the location tokens within W bins of the chosen one, divided by the mass of all location
               tokens at that step (so the first coordinate does not count P(box) twice)

All probabilities are under the constrained distribution (softmax over the tokens the grammar allows at that step),
so a backend that slices `lm_head` to the grammar's vocabulary scores identically. W is `DEFAULT_LOC_WINDOW`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from agent.detections import Detections
from agent.detector.constraints import DONE, LABEL, LOC, START, RowState
from agent.detector.paligemma.dialect import bins_to_xyxy
from agent.detector.paligemma.grammar import SEP, PaliGemmaGrammar
from agent.detector.scoring import DEFAULT_LOC_WINDOW, ScoredBox, window_mass


@dataclass
class _Box:
    """What is known about the box being written."""

    box_logp: float = 0.0
    label_logp: float = 0.0
    geometry: list[float] = field(default_factory=list)


def score_answer(
    tokens: list[int], log_probs: torch.Tensor, grammar: PaliGemmaGrammar, loc_window: int = DEFAULT_LOC_WINDOW,
    columns: torch.Tensor | None = None,
) -> list[ScoredBox]:
    """Parse generated `tokens` into boxes and score each one; `log_probs[t]` is the constrained log-distribution the
    t-th token was drawn from (T x vocab, or T x slice with `columns`: full-vocab id -> column)."""
    state, boxes, box = RowState(), list[ScoredBox](), _Box()
    cols = columns.to(log_probs.device) if columns is not None else None
    loc_cols = grammar.loc_ids.to(log_probs.device) if cols is None else cols[grammar.loc_ids.to(log_probs.device)]
    for t, tok in enumerate(tokens):
        row, phase = log_probs[t], state.phase
        logp = float(row[tok if cols is None else int(cols[tok])])
        if phase in (START, LOC) and tok != grammar.eos_id:
            mass = float(torch.exp(row[loc_cols]).sum().clamp(min=1e-30))
            if phase == START:
                box.box_logp = math.log(mass)
            box.geometry.append(window_mass(row, loc_cols, grammar.loc_bin(tok) or 0, loc_window) / mass)
        elif phase == SEP:
            box.box_logp += logp  # the separator's forced tokens (probability 1 under the grammar)
        elif phase == LABEL:
            node = state.node
            if node is not None and tok in node.children:
                box.label_logp += logp
            else:
                assert node is not None and node.class_id is not None, "grammar ended a box without a label"
                boxes.append(_finish(box, node.class_id, state.locs))
                box = _Box(box_logp=logp if tok != grammar.eos_id else 0.0)
        grammar.advance(state, tok)
        if state.phase == DONE:
            break
    return boxes


def _finish(box: _Box, class_id: int, locs: list[int]) -> ScoredBox:
    geometry = float(np.prod(np.clip(box.geometry, 1e-12, 1.0)) ** 0.25)
    bins = (int(locs[0]), int(locs[1]), int(locs[2]), int(locs[3]))
    return ScoredBox(class_id, bins, math.exp(box.box_logp + box.label_logp) * geometry)


def scored_detections(
    tokens: list[int], log_probs: torch.Tensor, grammar: PaliGemmaGrammar, loc_window: int,
    columns: torch.Tensor | None, image_size: tuple[int, int],
) -> Detections:
    """`score_answer` turned into `Detections` on a frame of `image_size` (bins are y1 x1 y2 x2)."""
    boxes = score_answer(tokens, log_probs, grammar, loc_window, columns)
    return Detections(bins_to_xyxy(np.array([b.bins for b in boxes]).reshape(-1, 4), image_size),
                      [b.class_id for b in boxes], [b.score for b in boxes], grammar.class_names, image_size)
