"""Constrained decoding for the region tasks: what the decoder may write for a dense caption or a grounded phrase.

- `<DENSE_REGION_CAPTION>` (`DenseGrammar`): `<s> (caption <loc><loc><loc><loc>)* </s>`. A caption is 1 to
  `max_caption_tokens` free-text tokens: any token of the vocabulary except the special and added ones (`<loc_N>`,
  `<s>`, `</s>`, task tokens...) and those whose text holds `<`, `>` or a line break (the caption must survive the
  `caption<loc_N>` text); its first token must write something visible (not only spaces). What the caption says is
  the model's; the grammar constrains the structure.
- `<CAPTION_TO_PHRASE_GROUNDING>` (`GroundingGrammar`): `<s> </s>` (not on the frame) or
  `<s> phrase <loc>x4 (<loc>x4)* </s>`: the phrase is given, so its tokens are forced after the first ("found")
  choice, then one or more boxes: Florence-2's own grounding answer, one phrase followed by all its boxes.

In both, every box has x2 >= x1 and y2 >= y1 and a region is only begun when the token budget still has room for
all of it and the closing `</s>`, as in the `<OD>` grammar (`agent/detector/constraints.py`), whose `RowState` and
`OdLogitsProcessor` they share. `score_regions` turns a constrained answer into `Region`s with a confidence.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from agent.detector.constraints import DONE, GROUP, LABEL, LOC, START, GrammarError, LocVocabulary, RowState
from agent.detector.loc import bins_to_xyxy
from agent.detector.scoring import window_mass
from agent.detector.tasks import Region

AFTER_BOX = "after-box"  # grounding: another box of the phrase, or the end
BOX_TOKENS = 5  # 4 <loc> tokens and the closing </s> that must still fit after a region's text
DEFAULT_MAX_CAPTION_TOKENS = 24
_NOT_IN_TEXT = ("<", ">")  # besides any unprintable character (line breaks, control codes)


class _LocGrammar(LocVocabulary):
    """What both region grammars share: the tokenizer's fixed ids and the box rule x2 >= x1 and y2 >= y1."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(tokenizer)
        self.tokenizer = tokenizer
        self._eos = torch.tensor([self.eos_id])

    def _next_loc(self, state: RowState, token: int, then: str) -> None:
        state.locs.append(self._loc_index[token])
        if len(state.locs) == 4:
            state.phase, state.boxes, state.locs = then, state.boxes + 1, []

    def _loc_range(self, state: RowState) -> torch.Tensor:
        lower = state.locs[len(state.locs) - 2] if len(state.locs) >= 2 else 0  # x2 >= x1, y2 >= y1
        return self.loc_ids[lower:]

    def _or_end(self, more: torch.Tensor | None, state: RowState, min_boxes: int, max_boxes: int | None
                ) -> torch.Tensor:
        """`more` (a region's first token) and/or `</s>`, as the box counts and the budget allow."""
        if more is None or (max_boxes is not None and state.boxes >= max_boxes):
            return self._eos
        return more if state.boxes < min_boxes else torch.cat([more, self._eos])


class DenseGrammar(_LocGrammar):
    """`<DENSE_REGION_CAPTION>`: `<s> (caption <loc>x4)* </s>` with free-text captions (see the module doc)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_caption_tokens: int = DEFAULT_MAX_CAPTION_TOKENS
                 ) -> None:
        super().__init__(tokenizer)
        if max_caption_tokens < 1:
            raise GrammarError(f"max_caption_tokens must be at least 1, got {max_caption_tokens}")
        self.max_caption_tokens = max_caption_tokens
        self.text_ids, self.start_ids = caption_token_ids(tokenizer)

    def advance(self, state: RowState, token: int) -> None:
        """Consume one generated token (assumed allowed)."""
        state.steps += 1
        if state.phase == DONE:
            return  # padding after </s>
        if state.phase == START:
            state.phase = GROUP
        elif state.phase == GROUP:
            state.phase, state.label_len = (DONE, 0) if token == self.eos_id else (LABEL, 1)
        elif state.phase == LABEL and self.loc_bin(token) is None:
            state.label_len += 1
        else:  # x1 after the caption, or the next coordinate
            state.phase = LOC
            self._next_loc(state, token, then=GROUP)

    def allowed(self, state: RowState, budget: int, min_boxes: int = 0, max_boxes: int | None = None
                ) -> torch.Tensor:
        """Token ids allowed next; `budget` = tokens that may still be generated including this one."""
        room = budget - 1 >= BOX_TOKENS  # after this text token: 4 locs and </s>
        if state.phase == START:
            return torch.tensor([self.bos_id])
        if state.phase == DONE:
            return torch.tensor([self.pad_id])
        if state.phase == GROUP:
            return self._or_end(self.start_ids if room else None, state, min_boxes, max_boxes)
        if state.phase == LABEL:
            more = room and state.label_len < self.max_caption_tokens
            return torch.cat([self.text_ids, self.loc_ids]) if more else self.loc_ids
        return self._loc_range(state)

    def label(self, text_tokens: list[int]) -> str:
        return str(self.tokenizer.decode(text_tokens, skip_special_tokens=True)).strip()

    def confidence(self, text_log_probs: list[float], box_index: int, exist: float) -> float:
        """A caption's confidence: the geometric mean of its tokens' probabilities (the first one includes the choice
        "another region" over `</s>`), so a long caption is not penalised for its length."""
        return math.exp(sum(text_log_probs) / max(len(text_log_probs), 1))


class GroundingGrammar(_LocGrammar):
    """`<CAPTION_TO_PHRASE_GROUNDING>` for one given phrase: `<s></s>` or `<s> phrase (<loc>x4)+ </s>`."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, phrase: str) -> None:
        super().__init__(tokenizer)
        self.phrase = phrase
        ids = list(tokenizer(phrase, add_special_tokens=False).input_ids)
        specials = {self.bos_id, self.eos_id, self.pad_id}
        if not ids or any(i in self._loc_index or i in specials for i in ids):
            raise GrammarError(f"phrase {phrase!r} cannot be written by this tokenizer (ids {ids})")
        self.phrase_ids = ids

    def advance(self, state: RowState, token: int) -> None:
        state.steps += 1
        if state.phase == DONE:
            return
        if state.phase == START:
            state.phase = GROUP
        elif state.phase in (GROUP, AFTER_BOX) and token == self.eos_id:
            state.phase = DONE
        elif state.phase in (GROUP, LABEL):
            state.phase, state.label_len = LABEL, state.label_len + 1
            if state.label_len == len(self.phrase_ids):
                state.phase = LOC  # the phrase is written: its first box follows
        else:  # LOC or AFTER_BOX: a coordinate
            state.phase = LOC
            self._next_loc(state, token, then=AFTER_BOX)

    def allowed(self, state: RowState, budget: int, min_boxes: int = 0, max_boxes: int | None = None
                ) -> torch.Tensor:
        if state.phase == START:
            return torch.tensor([self.bos_id])
        if state.phase == DONE:
            return torch.tensor([self.pad_id])
        if state.phase == GROUP:  # found (the phrase, then at least one box) or not on the frame
            fits = len(self.phrase_ids) + 4 + 1 <= budget
            return self._or_end(torch.tensor(self.phrase_ids[:1]) if fits else None, state, min_boxes, max_boxes)
        if state.phase == LABEL:
            return torch.tensor([self.phrase_ids[state.label_len]])
        if state.phase == AFTER_BOX:
            return self._or_end(self.loc_ids if budget >= BOX_TOKENS else None, state, min_boxes, max_boxes)
        return self._loc_range(state)

    def label(self, text_tokens: list[int]) -> str:
        return self.phrase

    def confidence(self, text_log_probs: list[float], box_index: int, exist: float) -> float:
        """P(found) for the first box (the phrase's first token over `</s>`; the rest are forced), P(another box)
        over `</s>` for each further one."""
        return math.exp(sum(text_log_probs)) if box_index == 0 else exist


RegionGrammar = DenseGrammar | GroundingGrammar


def caption_token_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids a caption may hold, ids a caption may start with): every ordinary token whose text keeps the
    `caption<loc_N>` form readable; a first token must also write something visible."""
    excluded = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    ids = [i for i in range(len(tokenizer)) if i not in excluded]
    texts = tokenizer.batch_decode([[i] for i in ids])
    inner = [(i, text) for i, text in zip(ids, texts, strict=True)
             if text.isprintable() and not any(c in text for c in _NOT_IN_TEXT)]
    if not inner:
        raise GrammarError("the tokenizer has no ordinary tokens a caption could be written with")
    start = [i for i, text in inner if text.strip()]
    return torch.tensor([i for i, _ in inner]), torch.tensor(start)


def score_regions(tokens: list[int], log_probs: torch.Tensor, grammar: RegionGrammar, loc_window: int,
                  image_size: tuple[int, int]) -> list[Region]:
    """Parse a constrained answer (no decoder-start token) into regions, each scored as its text's confidence
    (`grammar.confidence`) times the geometric mean of its four coordinates' probability mass within `loc_window`
    bins (as `<OD>` boxes are: `agent/detector/scoring.py`). `log_probs` is T x vocab, the constrained
    log-distributions the tokens were drawn from."""
    state, regions = RowState(), list[Region]()
    text: list[int] = []
    text_log_probs: list[float] = []
    masses: list[float] = []
    exist = 1.0
    for t, token in enumerate(tokens):
        before = state.phase
        grammar.advance(state, token)
        if state.phase == DONE:
            break
        step = log_probs[t]
        if grammar.loc_bin(token) is None:
            if before == GROUP and isinstance(grammar, DenseGrammar):
                text, text_log_probs = [], []  # a new caption begins
            text.append(token)
            text_log_probs.append(float(step[token]))
            continue
        if not masses:  # x1: the choice "a box" over </s> (1 where </s> was not allowed here); x1's mass given a box
            exist = max(1.0 - math.exp(float(step[grammar.eos_id])), 1e-12)
        mass = window_mass(step, grammar.loc_ids, grammar.loc_bin(token) or 0, loc_window)
        masses.append(mass / exist if not masses else mass)
        if len(masses) == 4:
            regions.append(_region(grammar, text, text_log_probs, exist, masses, tokens[t - 3: t + 1], image_size,
                                   len(regions)))
            masses = []
    return regions


def _region(grammar: RegionGrammar, text: list[int], text_log_probs: list[float], exist: float, masses: list[float],
            loc_tokens: list[int], image_size: tuple[int, int], index: int) -> Region:
    bins = np.array([[grammar.loc_bin(t) or 0 for t in loc_tokens]])
    x1, y1, x2, y2 = (float(v) for v in bins_to_xyxy(bins, image_size)[0])
    geometry = float(np.prod(np.clip(masses, 1e-12, 1.0)) ** 0.25)
    return Region(grammar.label(text), (x1, y1, x2, y2), grammar.confidence(text_log_probs, index, exist) * geometry)

