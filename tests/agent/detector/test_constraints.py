"""Constrained decoding: whatever the model's logits, the output is `<s> (label loc loc loc loc)* </s>`."""

from __future__ import annotations

import pytest
import torch

from agent.detector.constraints import GrammarError, OdGrammar, OdLogitsProcessor
from agent.detector.loc import from_loc_text, to_bins
from finetune.tiny import build_tokenizer

CLASSES = ("scratch", "hole", "oil spot", "oil")


@pytest.fixture(scope="module")
def grammar() -> OdGrammar:
    return OdGrammar(build_tokenizer(CLASSES), CLASSES)


def decode_with_random_logits(grammar: OdGrammar, seed: int, max_new: int, **kw: int) -> list[int]:
    """Run the processor step by step on random logits, like greedy generate would."""
    gen = torch.Generator().manual_seed(seed)
    proc = OdLogitsProcessor(grammar, max_new, **kw)
    ids = torch.tensor([[grammar.eos_id]])  # decoder start token
    for _ in range(max_new):
        scores = proc(ids, torch.randn(1, grammar.vocab_size, generator=gen) * 5)
        ids = torch.cat([ids, scores.argmax(-1, keepdim=True)], dim=1)
        if ids[0, -1] == grammar.eos_id:
            break
    return ids[0, 1:].tolist()


@pytest.mark.parametrize("seed", range(60))
def test_random_logits_always_produce_a_parseable_answer(grammar: OdGrammar, seed: int) -> None:
    tokens = decode_with_random_logits(grammar, seed, max_new=40)
    tok = build_tokenizer(CLASSES)
    text = tok.decode(tokens, skip_special_tokens=False)
    assert tokens[0] == grammar.bos_id and tokens[-1] == grammar.eos_id, text
    dets = from_loc_text(text, CLASSES, (1000, 1000))  # strict: any stray token would raise
    bins = to_bins(dets)
    n_loc = sum(grammar.loc_bin(t) is not None for t in tokens)
    assert n_loc == 4 * len(dets), f"every loc token belongs to a parsed box: {text}"
    assert (bins[:, 2] >= bins[:, 0]).all() and (bins[:, 3] >= bins[:, 1]).all()


def test_a_group_is_only_started_when_it_fits_in_the_token_budget(grammar: OdGrammar) -> None:
    for seed in range(20):
        tokens = decode_with_random_logits(grammar, seed, max_new=8)
        assert len(tokens) <= 8 and tokens[-1] == grammar.eos_id


def test_min_and_max_boxes_fix_the_number_of_boxes(grammar: OdGrammar) -> None:
    for seed in range(5):
        tokens = decode_with_random_logits(grammar, seed, max_new=80, min_boxes=5, max_boxes=5)
        assert sum(grammar.loc_bin(t) is not None for t in tokens) == 20


def test_class_names_that_share_a_prefix_are_both_reachable(grammar: OdGrammar) -> None:
    oil, oil_spot = grammar.label_ids[3], grammar.label_ids[2]
    assert oil_spot[: len(oil)] == oil or oil != oil_spot


def test_identically_tokenized_classes_are_rejected() -> None:
    tok = build_tokenizer(["hole"])
    with pytest.raises(GrammarError, match="tokenize identically"):
        OdGrammar(tok, ["hole", "hole"])
