"""Constrained decoding for PaliGemma detection: the model may only write a well-formed answer for the class list.

The language over token ids (agent/detector/paligemma/dialect.py has it as text):

    answer = (box (sep box)*)? <eos>        box = <loc> <loc> <loc> <loc> label        sep = tokens of " ; "

`label` is the tokens of " " + a configured class name (possibly several; the class names share a trie, so one may
be a prefix of another), the four locations are y1 x1 y2 x2 with y2 >= y1 and x2 >= x1, and a box is only started
when the token budget still has room for all of it and the closing `<eos>`. With this grammar every answer parses,
even from a randomly initialised model. After `<eos>` a finished row is padded, as HF `generate` does.

`PaliGemmaGrammar` implements `agent.detector.constraints.Grammar` on the same `RowState`, so Florence-2's
`OdLogitsProcessor` (HF `generate`) and the greedy loop of the fast backends (`agent.detector.greedy`) run it
unchanged. `encode` writes the token ids of an answer: the training targets are exactly what the grammar accepts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from agent.detector.constraints import (
    DONE,
    LABEL,
    LOC,
    START,
    GrammarError,
    RowState,
    build_label_trie,
    shortest_finish,
)
from agent.detector.paligemma.dialect import LOC_TOKENS, SEPARATOR, check_class_names

SEP = "sep"  # phase: inside the separator, after its first token


class PaliGemmaGrammar:
    """The PaliGemma detection answer over a tokenizer's ids, for a fixed class list."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, class_names: Sequence[str]) -> None:
        try:
            check_class_names(class_names)
        except ValueError as exc:
            raise GrammarError(str(exc)) from None
        self.class_names = tuple(class_names)
        self.eos_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id)
        self.vocab_size = len(tokenizer)
        self.loc_ids = torch.tensor(self._loc_token_ids(tokenizer))
        self._loc_index = {int(t): i for i, t in enumerate(self.loc_ids)}
        self.label_ids = [self._piece(tokenizer, f" {name}", f"class name {name!r}") for name in self.class_names]
        self.sep_ids = self._piece(tokenizer, SEPARATOR, f"the box separator {SEPARATOR!r}")
        self.root = build_label_trie(self.label_ids, self.class_names)
        if self.sep_ids[0] in self.root.children or any(self.sep_ids[0] in ids for ids in self.label_ids):
            raise GrammarError(f"a class name starts like the box separator {SEPARATOR!r} in this tokenizer")
        self._box_cost = 4 + shortest_finish(self.root)  # tokens of the shortest box
        label_tokens = {t for ids in self.label_ids for t in ids}
        self.allowed_ids = torch.tensor(sorted({self.eos_id, self.pad_id, *self._loc_index, *label_tokens,
                                                *self.sep_ids}))

    @staticmethod
    def _loc_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
        found = tokenizer.convert_tokens_to_ids(list(LOC_TOKENS))
        ids = [int(i) for i in (found if isinstance(found, list) else [found])]
        if (tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids) or len(set(ids)) != len(ids):
            raise GrammarError("the tokenizer lacks PaliGemma's location tokens <loc0000>..<loc1023>")
        return ids

    def _piece(self, tokenizer: PreTrainedTokenizerBase, text: str, what: str) -> list[int]:
        ids = list(tokenizer(text, add_special_tokens=False).input_ids)
        bad = {self.eos_id, self.pad_id, *self._loc_index}
        if not ids or any(i in bad for i in ids) or tokenizer.unk_token_id in ids:
            raise GrammarError(f"{what} cannot be written by this tokenizer (ids {ids})")
        return ids

    def loc_bin(self, token_id: int) -> int | None:
        return self._loc_index.get(token_id)

    def encode(self, boxes: Sequence[tuple[int, Sequence[int]]]) -> list[int]:
        """Token ids of the answer for `boxes` = (class id, (y1, x1, y2, x2) bins) in order, `<eos>` included."""
        ids: list[int] = []
        for index, (class_id, bins) in enumerate(boxes):
            if index:
                ids += self.sep_ids
            ids += [int(self.loc_ids[b]) for b in bins] + self.label_ids[class_id]
        return [*ids, self.eos_id]

    # ----- transitions ----------------------------------------------------------------------------------------------
    def advance(self, state: RowState, token: int) -> None:
        """Consume one generated token (assumed allowed) and move the state on."""
        state.steps += 1
        if state.phase == START:
            state.phase = DONE if token == self.eos_id else LOC
            state.locs = [] if token == self.eos_id else [self._loc_index[token]]
        elif state.phase == LOC:
            state.locs.append(self._loc_index[token])
            if len(state.locs) == 4:
                state.phase, state.node, state.label_len = LABEL, self.root, 0
        elif state.phase == LABEL:
            self._advance_label(state, token)
        elif state.phase == SEP:
            state.sep += 1
            if state.sep == len(self.sep_ids):
                state.phase, state.locs = LOC, []

    def _advance_label(self, state: RowState, token: int) -> None:
        assert state.node is not None
        if token in state.node.children:
            state.node, state.label_len = state.node.children[token], state.label_len + 1
            return
        state.boxes += 1  # the label ended here: the box is complete
        if token == self.eos_id:
            state.phase = DONE
        elif len(self.sep_ids) == 1:
            state.phase, state.locs = LOC, []
        else:
            state.phase, state.sep = SEP, 1

    def allowed(self, state: RowState, budget: int, min_boxes: int = 0, max_boxes: int | None = None) -> list[int]:
        """Token ids allowed next; `budget` = tokens that may still be generated including this one."""
        if state.phase == START:
            room = (max_boxes is None or max_boxes > 0) and budget >= self._box_cost + 1
            starts = self._loc_range(0) if room else []
            return starts + ([self.eos_id] if min_boxes == 0 or not starts else [])
        if state.phase == LOC:
            lower = state.locs[len(state.locs) - 2] if len(state.locs) >= 2 else 0  # y2 >= y1, x2 >= x1
            return self._loc_range(lower)
        if state.phase == LABEL:
            return self._label_next(state, budget, min_boxes, max_boxes)
        if state.phase == SEP:
            return [self.sep_ids[state.sep]]
        return [self.pad_id]

    def _label_next(self, state: RowState, budget: int, min_boxes: int, max_boxes: int | None) -> list[int]:
        assert state.node is not None
        # a label token, then the rest of the shortest name through it, then <eos>
        nxt = [tok for tok, child in state.node.children.items() if shortest_finish(child) + 2 <= budget]
        if state.node.class_id is None:
            return nxt
        done = state.boxes + 1
        more = (max_boxes is None or done < max_boxes) and budget >= len(self.sep_ids) + self._box_cost + 1
        end = done >= min_boxes or not more
        return nxt + ([self.sep_ids[0]] if more else []) + ([self.eos_id] if end else [])

    def _loc_range(self, lower_bin: int) -> list[int]:
        return [int(t) for t in self.loc_ids[lower_bin:]]
