"""Per-box confidence: label probability x geometric mean of the four coordinates' probability mass, all under the
constrained distribution; high where the model is sure, low where it guesses."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.capture.synthetic import SyntheticFrame
from agent.detector.constraints import OdGrammar
from agent.detector.florence2 import DetectorOptions, Florence2Detector
from agent.detector.scoring import score_sequence
from finetune.tiny import build_tokenizer

CLASSES = ("scratch", "hole")


@pytest.fixture(scope="module")
def grammar() -> OdGrammar:
    return OdGrammar(build_tokenizer(CLASSES), CLASSES)


def step(grammar: OdGrammar, probs: dict[int, float]) -> torch.Tensor:
    """A constrained log-distribution over the vocabulary with the given token probabilities (rest: -inf)."""
    row = torch.full((grammar.vocab_size,), float("-inf"))
    for tok, p in probs.items():
        row[tok] = math.log(p)
    return row


def test_score_is_label_probability_times_geometric_mean_of_coordinate_mass(grammar: OdGrammar) -> None:
    hole = grammar.label_ids[1]
    loc = [int(t) for t in grammar.loc_ids]
    tokens = [grammar.bos_id, *hole, loc[10], loc[20], loc[30], loc[40], grammar.eos_id]
    steps = [step(grammar, {grammar.bos_id: 1.0})]
    steps += [step(grammar, {hole[0]: 0.8, grammar.eos_id: 0.2})] + [step(grammar, {t: 1.0}) for t in hole[1:]]
    # x1: 0.5 on the chosen bin, 0.3 one bin away, 0.2 far away
    steps.append(step(grammar, {loc[10]: 0.5, loc[11]: 0.3, loc[500]: 0.2}))
    steps += [step(grammar, {loc[b]: 1.0}) for b in (20, 30, 40)]
    steps.append(step(grammar, {grammar.eos_id: 1.0}))
    log_probs = torch.stack(steps)
    (wide,) = score_sequence(tokens, log_probs, grammar, loc_window=2)
    (exact,) = score_sequence(tokens, log_probs, grammar, loc_window=0)
    assert wide.class_id == 1 and wide.bins == (10, 20, 30, 40)
    assert wide.score == pytest.approx(0.8 * 0.8**0.25)
    assert exact.score == pytest.approx(0.8 * 0.5**0.25)


def test_a_sequence_with_several_boxes_scores_each_one(grammar: OdGrammar) -> None:
    scratch, hole = grammar.label_ids
    loc = [int(t) for t in grammar.loc_ids]
    tokens = [grammar.bos_id, *scratch, loc[1], loc[2], loc[3], loc[4], *hole, loc[5], loc[6], loc[7], loc[8],
              grammar.eos_id]
    uniform = torch.log_softmax(torch.zeros(len(tokens), grammar.vocab_size), dim=-1)
    boxes = score_sequence(tokens, uniform, grammar, loc_window=0)
    assert [b.class_id for b in boxes] == [0, 1]
    assert all(0.0 <= b.score <= 1.0 for b in boxes)


@pytest.mark.slow
def test_an_overfit_model_scores_its_own_frames_above_unseen_noise(overfit: tuple[Path, list[SyntheticFrame]]
                                                                   ) -> None:
    model_dir, frames = overfit
    known = Florence2Detector(model_dir).detect([f.image for f in frames])
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(6)]
    # force one box on noise so there is something to compare (left alone the model may rightly say nothing)
    guessed = Florence2Detector(model_dir, options=DetectorOptions(min_boxes=1)).detect(noise)
    known_scores = np.concatenate([d.score for d in known])
    noise_scores = np.concatenate([d.score for d in guessed])
    assert len(known_scores) >= 6 and len(noise_scores) >= 6
    assert np.median(known_scores) > np.median(noise_scores), (known_scores, noise_scores)
    assert known_scores.mean() > noise_scores.mean(), (known_scores, noise_scores)
