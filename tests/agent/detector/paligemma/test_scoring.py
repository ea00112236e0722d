"""A PaliGemma box's score: P(box) x P(label) x the geometric mean of the location windows' mass."""

from __future__ import annotations

import math

import pytest
import torch

from agent.detector.paligemma.grammar import PaliGemmaGrammar
from agent.detector.paligemma.scoring import score_answer
from finetune.paligemma.tiny import build_tokenizer

CLASSES = ("scratch", "hole")


@pytest.fixture(scope="module")
def grammar() -> PaliGemmaGrammar:
    return PaliGemmaGrammar(build_tokenizer(CLASSES), CLASSES)


def step(grammar: PaliGemmaGrammar, probs: dict[int, float]) -> torch.Tensor:
    """One constrained log-distribution: these token ids with these probabilities, everything else impossible."""
    row = torch.full((grammar.vocab_size,), float("-inf"))
    for token, p in probs.items():
        row[token] = math.log(p)
    return row


def loc(grammar: PaliGemmaGrammar, b: int) -> int:
    return int(grammar.loc_ids[b])


def test_two_boxes_are_scored_from_their_own_steps(grammar: PaliGemmaGrammar) -> None:
    scratch, hole = grammar.label_ids[0], grammar.label_ids[1]
    assert len(scratch) == len(hole) == 1
    tokens = grammar.encode([(0, [100, 200, 300, 400]), (1, [10, 20, 30, 40])])
    rows = [
        step(grammar, {grammar.eos_id: 0.2, loc(grammar, 100): 0.5, loc(grammar, 104): 0.3}),  # y1; P(box) 0.8
        step(grammar, {loc(grammar, 200): 0.6, loc(grammar, 900): 0.4}),  # x1: 0.6 within the window
        step(grammar, {loc(grammar, 300): 1.0}),  # y2
        step(grammar, {loc(grammar, 400): 0.9, loc(grammar, 1000): 0.1}),  # x2
        step(grammar, {scratch[0]: 0.7, hole[0]: 0.3}),  # the label
        step(grammar, {grammar.sep_ids[0]: 0.25, grammar.eos_id: 0.75}),  # another box? P(box) of the second
        *[step(grammar, {t: 1.0}) for t in grammar.sep_ids[1:]],  # the rest of " ; " is forced
        *[step(grammar, {loc(grammar, b): 1.0}) for b in (10, 20, 30, 40)],
        step(grammar, {hole[0]: 0.5, scratch[0]: 0.5}),
        step(grammar, {grammar.eos_id: 1.0}),
    ]
    first, second = score_answer(tokens, torch.stack(rows), grammar, loc_window=8)
    assert (first.class_id, first.bins) == (0, (100, 200, 300, 400))
    assert first.score == pytest.approx(0.8 * 0.7 * (1.0 * 0.6 * 1.0 * 0.9) ** 0.25, rel=1e-5)
    assert (second.class_id, second.bins) == (1, (10, 20, 30, 40))
    assert second.score == pytest.approx(0.25 * 0.5, rel=1e-5)


def test_an_immediate_eos_is_no_box(grammar: PaliGemmaGrammar) -> None:
    rows = torch.stack([step(grammar, {grammar.eos_id: 0.9, loc(grammar, 3): 0.1})])
    assert score_answer([grammar.eos_id], rows, grammar) == []


def test_a_narrow_window_counts_only_the_chosen_bin(grammar: PaliGemmaGrammar) -> None:
    tokens = grammar.encode([(1, [100, 100, 100, 100])])
    spread = {loc(grammar, 100): 0.5, loc(grammar, 101): 0.5}
    rows = [step(grammar, spread) for _ in range(4)] + [step(grammar, {grammar.label_ids[1][0]: 1.0}),
                                                         step(grammar, {grammar.eos_id: 1.0})]
    (wide,) = score_answer(tokens, torch.stack(rows), grammar, loc_window=8)
    (narrow,) = score_answer(tokens, torch.stack(rows), grammar, loc_window=0)
    assert wide.score == pytest.approx(1.0) and narrow.score == pytest.approx(0.5)
