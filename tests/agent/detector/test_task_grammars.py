"""Region-task grammars: whatever the model's logits, a dense caption answer is `<s> (caption loc loc loc loc)* </s>`
and a grounding answer `<s></s>` or `<s> phrase (loc loc loc loc)+ </s>`; each region is scored as documented."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
import torch

from agent.detector.constraints import GROUP, LABEL, LOC, GrammarError, OdLogitsProcessor, RowState
from agent.detector.task_grammars import AFTER_BOX, DenseGrammar, GroundingGrammar, RegionGrammar, score_regions
from finetune.tiny import build_tokenizer

CLASSES = ("scratch", "hole", "oil spot")
_REGION = re.compile(r"([^<>]+)((?:<loc_\d+>){4})")
_LOCS = re.compile(r"<loc_(\d+)>")


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer(CLASSES)


@pytest.fixture(scope="module")
def dense(tokenizer: Any) -> DenseGrammar:
    return DenseGrammar(tokenizer, max_caption_tokens=6)


def decode_with_random_logits(grammar: RegionGrammar, seed: int, max_new: int, scale: float = 5.0) -> list[int]:
    """Greedy steps through the processor on random logits, as HF generate would run them."""
    gen = torch.Generator().manual_seed(seed)
    processor = OdLogitsProcessor(grammar, max_new)
    ids = torch.tensor([[grammar.eos_id]])  # the decoder start token
    for _ in range(max_new):
        scores = processor(ids, torch.randn(1, grammar.vocab_size, generator=gen) * scale)
        ids = torch.cat([ids, scores.argmax(-1, keepdim=True)], dim=1)
        if ids[0, -1] == grammar.eos_id:
            break
    return list(ids[0, 1:].tolist())


def boxes_in_order(text: str) -> None:
    bins = [int(b) for b in _LOCS.findall(text)]
    for i in range(0, len(bins), 4):
        x1, y1, x2, y2 = bins[i:i + 4]
        assert x2 >= x1 and y2 >= y1, text


@pytest.mark.parametrize("seed", range(40))
def test_random_logits_always_give_well_formed_region_captions(dense: DenseGrammar, tokenizer: Any,
                                                                seed: int) -> None:
    tokens = decode_with_random_logits(dense, seed, max_new=48, scale=2.0 if seed % 2 else 8.0)
    assert tokens[0] == dense.bos_id and tokens[-1] == dense.eos_id and len(tokens) <= 48
    text = tokenizer.decode(tokens[1:-1], skip_special_tokens=False)
    regions = _REGION.findall(text)
    assert "".join(caption + locs for caption, locs in regions) == text, f"stray tokens in {text!r}"
    assert all(caption.strip() and caption.isprintable() for caption, _ in regions), text
    boxes_in_order(text)
    parsed = score_regions(tokens, torch.zeros(len(tokens), dense.vocab_size), dense, 8, (1000, 1000))
    assert [r.label for r in parsed] == [caption.strip() for caption, _ in regions]


def test_a_caption_is_as_long_as_allowed_and_a_region_only_starts_when_it_fits(dense: DenseGrammar) -> None:
    state = RowState()
    for token in (dense.bos_id, int(dense.start_ids[0])):
        dense.advance(state, token)
    for _ in range(5):  # captions of max_caption_tokens (6) tokens at most: then only a coordinate may follow
        dense.advance(state, int(dense.text_ids[0]))
    assert torch.equal(dense.allowed(state, budget=20), dense.loc_ids)
    fresh = RowState(phase=GROUP)
    assert dense.allowed(fresh, budget=5).tolist() == [dense.eos_id]  # caption + 4 locs + </s> need 6
    assert set(dense.allowed(fresh, budget=6).tolist()) == {*dense.start_ids.tolist(), dense.eos_id}


def test_dense_never_allows_a_box_without_a_caption_an_early_end_or_an_inverted_box(dense: DenseGrammar) -> None:
    group = set(dense.allowed(RowState(phase=GROUP), budget=30).tolist())
    assert not group & set(dense.loc_ids.tolist())  # a box needs its caption first
    caption = set(dense.allowed(RowState(phase=LABEL, label_len=2), budget=30).tolist())
    assert dense.eos_id not in caption and set(dense.loc_ids.tolist()) <= caption
    x2 = dense.allowed(RowState(phase=LOC, locs=[400, 100]), budget=30).tolist()
    assert x2[0] == int(dense.loc_ids[400]) and dense.eos_id not in x2
    texts = [dense.tokenizer.decode([i]) for i in dense.text_ids.tolist()]
    assert not any(c in text for text in texts for c in "<>\n")
    assert all(dense.tokenizer.decode([i]).strip() for i in dense.start_ids.tolist())


@pytest.mark.parametrize("phrase", ["scratch", "oil spot", "dark streak near the edge"])
@pytest.mark.parametrize("seed", range(12))
def test_random_logits_always_give_a_well_formed_grounding_answer(tokenizer: Any, phrase: str, seed: int) -> None:
    grammar = GroundingGrammar(tokenizer, phrase)
    tokens = decode_with_random_logits(grammar, seed, max_new=40)
    assert tokens[0] == grammar.bos_id and tokens[-1] == grammar.eos_id and len(tokens) <= 40
    body = tokens[1:-1]
    if not body:
        return  # "not on the frame"
    assert body[:len(grammar.phrase_ids)] == grammar.phrase_ids
    locs = body[len(grammar.phrase_ids):]
    assert locs and len(locs) % 4 == 0 and all(grammar.loc_bin(t) is not None for t in locs)
    text = tokenizer.decode(body, skip_special_tokens=False)
    assert text.startswith(phrase)
    boxes_in_order(text)
    parsed = score_regions(tokens, torch.zeros(len(tokens), grammar.vocab_size), grammar, 8, (1000, 1000))
    assert len(parsed) == len(locs) // 4 and {r.label for r in parsed} == {phrase}


def test_grounding_allows_only_the_phrase_or_the_end_then_boxes(tokenizer: Any) -> None:
    grammar = GroundingGrammar(tokenizer, "oil spot")
    first = grammar.phrase_ids[0]
    assert sorted(grammar.allowed(RowState(phase=GROUP), budget=30).tolist()) == sorted([first, grammar.eos_id])
    if len(grammar.phrase_ids) > 1:
        assert grammar.allowed(RowState(phase=LABEL, label_len=1), 30).tolist() == [grammar.phrase_ids[1]]
    after = grammar.allowed(RowState(phase=AFTER_BOX, boxes=1), budget=30).tolist()
    assert set(after) == {*grammar.loc_ids.tolist(), grammar.eos_id}
    assert grammar.allowed(RowState(phase=AFTER_BOX, boxes=1), budget=4).tolist() == [grammar.eos_id]
    assert grammar.allowed(RowState(phase=AFTER_BOX, boxes=2), 30, max_boxes=2).tolist() == [grammar.eos_id]


@pytest.mark.parametrize("phrase", ["", "<loc_5>"])
def test_a_phrase_the_tokenizer_cannot_write_as_text_is_refused(tokenizer: Any, phrase: str) -> None:
    with pytest.raises(GrammarError, match="cannot be written"):
        GroundingGrammar(tokenizer, phrase)


def test_grounding_scores_are_p_found_then_p_another_box(tokenizer: Any) -> None:
    """Box 1 scores P(the phrase begins) = 0.8; box 2 scores P(another box) = 0.5; coordinates are certain."""
    grammar = GroundingGrammar(tokenizer, "hole")
    n = len(grammar.phrase_ids)
    boxes = [[100, 200, 300, 400], [500, 500, 600, 650]]
    tokens = [grammar.bos_id, *grammar.phrase_ids, *(int(grammar.loc_ids[b]) for b in boxes[0]),
              *(int(grammar.loc_ids[b]) for b in boxes[1]), grammar.eos_id]
    log_probs = torch.full((len(tokens), grammar.vocab_size), -math.inf)
    for t, token in enumerate(tokens):
        log_probs[t, token] = 0.0
    log_probs[1, grammar.phrase_ids[0]], log_probs[1, grammar.eos_id] = math.log(0.8), math.log(0.2)
    second = 2 + n - 1 + 4  # x1 of the second box
    log_probs[second, tokens[second]], log_probs[second, grammar.eos_id] = math.log(0.5), math.log(0.5)
    regions = score_regions(tokens, log_probs, grammar, loc_window=0, image_size=(1000, 500))
    assert [r.label for r in regions] == ["hole", "hole"]
    assert [r.score for r in regions] == pytest.approx([0.8, 0.5])
    assert regions[0].box == pytest.approx((100.5, 100.25, 300.5, 200.25))


def test_dense_scores_are_the_geometric_mean_of_the_caption_tokens(dense: DenseGrammar,
                                                                   tokenizer: Any) -> None:
    caption = list(tokenizer("dark scratch", add_special_tokens=False).input_ids)
    locs = [int(dense.loc_ids[b]) for b in (10, 20, 30, 40)]
    tokens = [dense.bos_id, *caption, *locs, dense.eos_id]
    log_probs = torch.full((len(tokens), dense.vocab_size), -math.inf)
    for t, token in enumerate(tokens):
        log_probs[t, token] = 0.0
    log_probs[1, caption[0]] = math.log(0.25)  # the first caption token at 0.25, the others certain
    (region,) = score_regions(tokens, log_probs, dense, loc_window=0, image_size=(1000, 1000))
    assert region.label == "dark scratch"
    assert region.score == pytest.approx(0.25 ** (1 / len(caption)))
