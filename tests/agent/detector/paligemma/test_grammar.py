"""PaliGemma's constrained decoding: whatever the logits, the answer is `(box (sep box)*)? <eos>` for the classes."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv
import torch
from transformers import GemmaTokenizer

from agent.detections import Detections
from agent.detector.constraints import GrammarError, OdLogitsProcessor, RowState
from agent.detector.paligemma.dialect import parse_answer, to_answer, to_bins
from agent.detector.paligemma.grammar import PaliGemmaGrammar
from finetune.paligemma.tiny import build_tokenizer

CLASSES = ("scratch", "hole", "oil spot", "oil")
SIZE = (1024, 1024)


@pytest.fixture(scope="module")
def tokenizer() -> GemmaTokenizer:
    return build_tokenizer(CLASSES)


@pytest.fixture(scope="module")
def grammar(tokenizer: GemmaTokenizer) -> PaliGemmaGrammar:
    return PaliGemmaGrammar(tokenizer, CLASSES)


def decode_with_random_logits(grammar: PaliGemmaGrammar, seed: int, max_new: int, **kw: int) -> list[int]:
    """Run the HF logits processor step by step on random logits after a 3-token prompt, as greedy generate would."""
    gen = torch.Generator().manual_seed(seed)
    proc = OdLogitsProcessor(grammar, max_new, prompt_len=3, **kw)
    ids = torch.tensor([[7, 8, 9]])  # stands for image tokens, <bos>, the prompt
    for _ in range(max_new):
        scores = proc(ids, torch.randn(1, grammar.vocab_size, generator=gen) * 5)
        ids = torch.cat([ids, scores.argmax(-1, keepdim=True)], dim=1)
        if ids[0, -1] == grammar.eos_id:
            break
    return ids[0, 3:].tolist()


@pytest.mark.parametrize("seed", range(30))
def test_random_logits_always_produce_an_answer_both_parsers_read(grammar: PaliGemmaGrammar, tokenizer: GemmaTokenizer,
                                                                 seed: int) -> None:
    tokens = decode_with_random_logits(grammar, seed, max_new=40)
    text = tokenizer.decode(tokens, skip_special_tokens=False)
    assert tokens[-1] == grammar.eos_id, text
    ours = parse_answer(text, CLASSES, SIZE)  # strict: any stray token would raise
    theirs = sv.Detections.from_vlm(sv.VLM.PALIGEMMA, text, resolution_wh=SIZE, classes=list(CLASSES))
    assert ours.labels == list(theirs.data["class_name"]), text
    assert sum(grammar.loc_bin(t) is not None for t in tokens) == 4 * len(ours), text
    bins = to_bins(ours)
    assert (bins[:, 2] >= bins[:, 0]).all() and (bins[:, 3] >= bins[:, 1]).all()


def test_encode_writes_what_the_grammar_accepts_and_the_text_of_the_answer(grammar: PaliGemmaGrammar,
        tokenizer: GemmaTokenizer) -> None:
    dets = Detections.from_labels(["oil spot", "hole", "oil"], np.array([[8, 16, 80, 160], [0, 0, 1023, 1023],
                                                                         [500, 500, 501, 501]]), CLASSES, SIZE)
    ids = grammar.encode([(int(c), list(b)) for c, b in zip(dets.class_id, to_bins(dets))])
    state = RowState()
    for step, token in enumerate(ids):
        assert token in grammar.allowed(state, len(ids) - step), (step, tokenizer.convert_ids_to_tokens([token]))
        grammar.advance(state, token)
    assert state.phase == "done" and state.boxes == 3
    assert tokenizer.decode(ids, skip_special_tokens=True) == to_answer(dets)


def test_a_box_is_only_started_when_it_fits_in_the_token_budget(grammar: PaliGemmaGrammar) -> None:
    for seed in range(20):
        tokens = decode_with_random_logits(grammar, seed, max_new=7)
        assert len(tokens) <= 7 and tokens[-1] == grammar.eos_id
    assert grammar.allowed(RowState(), budget=5) == [grammar.eos_id]  # 4 locs + a label + <eos> need 6


def test_min_and_max_boxes_fix_the_number_of_boxes(grammar: PaliGemmaGrammar) -> None:
    for seed in range(5):
        tokens = decode_with_random_logits(grammar, seed, max_new=80, min_boxes=4, max_boxes=4)
        assert sum(grammar.loc_bin(t) is not None for t in tokens) == 16


def test_class_names_that_share_a_prefix_are_both_written(grammar: PaliGemmaGrammar,
        tokenizer: GemmaTokenizer) -> None:
    assert grammar.label_ids[2][: len(grammar.label_ids[3])] == grammar.label_ids[3]  # " oil spot" starts as " oil"
    labels = set()
    for seed in range(40):
        text = tokenizer.decode(decode_with_random_logits(grammar, seed, max_new=60), skip_special_tokens=False)
        labels |= set(parse_answer(text, CLASSES, SIZE).labels)
    assert {"oil", "oil spot"} <= labels


def test_a_tokenizer_without_location_tokens_or_a_class_with_the_separator_is_refused(
        tokenizer: GemmaTokenizer) -> None:
    from finetune.tiny import build_tokenizer as florence_tokenizer  # <loc_N>, not <locNNNN>

    with pytest.raises(GrammarError, match="lacks PaliGemma's location tokens"):
        PaliGemmaGrammar(florence_tokenizer(CLASSES), CLASSES)
    with pytest.raises(GrammarError, match="class name 'a ; b'"):
        PaliGemmaGrammar(tokenizer, ["hole", "a ; b"])
    with pytest.raises(GrammarError, match="tokenize identically"):
        PaliGemmaGrammar(tokenizer, ["hole", "hole"])
