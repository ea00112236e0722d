"""Constrained decoding for `<OD>`: the decoder may only write `<s> (label <loc><loc><loc><loc>)* </s>`.

`label` is one of the configured class names (possibly several tokens), the four `<loc>` tokens are x1 y1 x2 y2
with x2 >= x1 and y2 >= y1, and a group is only started when the token budget still has room for all of it and the
closing `</s>`. With this grammar every output parses, even from a randomly initialised model.

`OdGrammar` is backend-neutral (token ids in, allowed ids out) so every backend (HF generate, the fast decoder,
ONNX) enforces the same language and scores boxes on the same constrained distribution. Another model family's
answer language (PaliGemma 2's, agent/detector/paligemma/grammar.py) implements the same `Grammar` protocol on the
same `RowState` and label trie, so `OdLogitsProcessor` and the greedy loop (agent/detector/greedy.py) serve it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

from agent.detector.loc import LOC_BINS

# Decoder states.
START, GROUP, LABEL, LOC, DONE = "start", "group", "label", "loc", "done"


@dataclass
class _TrieNode:
    children: dict[int, _TrieNode] = field(default_factory=dict)
    class_id: int | None = None  # set where a complete class name ends


@dataclass
class RowState:
    """Where one decoded row is in the grammar."""

    phase: str = START
    node: _TrieNode | None = None  # position in the label trie while in LABEL
    label_len: int = 0
    locs: list[int] = field(default_factory=list)
    boxes: int = 0
    steps: int = 0  # tokens consumed so far
    sep: int = 0  # tokens of a multi-token separator written so far (PaliGemma's ` ; `; unused by `<OD>`)


class GrammarError(ValueError):
    """A class list the tokenizer cannot express as a label (names the class)."""


class StepGrammar(Protocol):
    """What `OdLogitsProcessor` drives: any answer language, `<OD>`'s or a region task's
    (`agent/detector/task_grammars.py`)."""

    def advance(self, state: RowState, token: int) -> None: ...

    def allowed(self, state: RowState, budget: int, min_boxes: int = 0, max_boxes: int | None = None
                ) -> list[int] | torch.Tensor: ...


class Grammar(StepGrammar, Protocol):
    """What the greedy loop and the sliced vocabulary need besides: a detection language with a class list
    (`OdGrammar`, PaliGemma's)."""

    class_names: tuple[str, ...]
    eos_id: int
    pad_id: int
    vocab_size: int
    loc_ids: torch.Tensor
    allowed_ids: torch.Tensor  # every token the language can ever emit

    def advance(self, state: RowState, token: int) -> None: ...

    def allowed(self, state: RowState, budget: int, min_boxes: int = 0, max_boxes: int | None = None
                ) -> list[int]: ...


def build_label_trie(label_ids: Sequence[Sequence[int]], class_names: Sequence[str]) -> _TrieNode:
    """A trie over the classes' label token ids; two classes with the same ids are a `GrammarError` naming both."""
    root = _TrieNode()
    for class_id, ids in enumerate(label_ids):
        node = root
        for tok in ids:
            node = node.children.setdefault(tok, _TrieNode())
        if node.class_id is not None:
            raise GrammarError(f"classes {class_names[node.class_id]!r} and {class_names[class_id]!r} "
                               "tokenize identically")
        node.class_id = class_id
    return root


def shortest_finish(node: _TrieNode) -> int:
    """Fewest label tokens still needed from `node` to the end of some class name."""
    if node.class_id is not None:
        return 0
    return 1 + min(shortest_finish(child) for child in node.children.values())


class LocVocabulary:
    """The ids every Florence-2 grammar needs: `<s>`, `</s>`, `<pad>`, the vocabulary size, the 1000 `<loc_N>`."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.bos_id = int(tokenizer.bos_token_id)
        self.eos_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id)
        self.vocab_size = len(tokenizer)
        self.loc_ids = torch.tensor(tokenizer.convert_tokens_to_ids([f"<loc_{i}>" for i in range(LOC_BINS)]))
        self._loc_index = {int(t): i for i, t in enumerate(self.loc_ids)}

    def loc_bin(self, token_id: int) -> int | None:
        return self._loc_index.get(token_id)


class OdGrammar(LocVocabulary):
    """The `<OD>` output language over a tokenizer's ids, for a fixed class list."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, class_names: Sequence[str]) -> None:
        super().__init__(tokenizer)
        self.class_names = tuple(class_names)
        self.label_ids = [self._label_tokens(tokenizer, name) for name in self.class_names]
        self.root = build_label_trie(self.label_ids, self.class_names)
        label_tokens = {t for ids in self.label_ids for t in ids}
        specials = {self.bos_id, self.eos_id, self.pad_id}
        self.allowed_ids = torch.tensor(sorted(specials | set(self._loc_index) | label_tokens))

    def _label_tokens(self, tokenizer: PreTrainedTokenizerBase, name: str) -> list[int]:
        ids = list(tokenizer(name, add_special_tokens=False).input_ids)
        if not ids or any(i in self._loc_index for i in ids) or self.eos_id in ids:
            raise GrammarError(f"class name {name!r} cannot be written by this tokenizer (ids {ids})")
        return ids

    # ----- transitions ----------------------------------------------------------------------------------------------
    def advance(self, state: RowState, token: int) -> None:
        """Consume one generated token (assumed allowed) and move the state on."""
        state.steps += 1
        if state.phase == START:
            state.phase = GROUP
        elif state.phase == GROUP:
            if token == self.eos_id:
                state.phase = DONE
            else:
                state.phase, state.node, state.label_len = LABEL, self.root.children[token], 1
        elif state.phase == LABEL:
            assert state.node is not None
            if token in state.node.children:
                state.node, state.label_len = state.node.children[token], state.label_len + 1
            else:  # the label ended here: this is x1
                state.phase, state.locs = LOC, [self._loc_index[token]]
        elif state.phase == LOC:
            state.locs.append(self._loc_index[token])
            if len(state.locs) == 4:
                state.phase, state.boxes, state.locs = GROUP, state.boxes + 1, []

    def allowed(self, state: RowState, budget: int, min_boxes: int = 0, max_boxes: int | None = None) -> list[int]:
        """Token ids allowed next; `budget` = tokens that may still be generated including this one."""
        if state.phase == START:
            return [self.bos_id]
        if state.phase == DONE:
            return [self.pad_id]
        if state.phase == GROUP:
            return self._group_starts(state, budget, min_boxes, max_boxes)
        if state.phase == LABEL:
            assert state.node is not None
            nxt = [tok for tok, child in state.node.children.items() if self._fits(child, budget - 1)]
            return nxt + (self._loc_range(0) if state.node.class_id is not None else [])
        lower = state.locs[len(state.locs) - 2] if len(state.locs) >= 2 else 0  # x2 >= x1, y2 >= y1
        return self._loc_range(lower)

    def _group_starts(self, state: RowState, budget: int, min_boxes: int, max_boxes: int | None) -> list[int]:
        if max_boxes is not None and state.boxes >= max_boxes:
            return [self.eos_id]
        starts = [tok for tok, child in self.root.children.items() if self._fits(child, budget - 1)]
        if not starts:
            return [self.eos_id]
        return starts if state.boxes < min_boxes else [*starts, self.eos_id]

    def _fits(self, node: _TrieNode, budget_after: int) -> bool:
        """Can some class through `node` still finish (rest of label + 4 locs + </s>) within the budget?"""
        return shortest_finish(node) + 5 <= budget_after

    def _loc_range(self, lower_bin: int) -> list[int]:
        return [int(t) for t in self.loc_ids[lower_bin:]]


class OdLogitsProcessor(LogitsProcessor):
    """HF `LogitsProcessor` enforcing a `Grammar` (`OdGrammar` or another family's); everything outside the allowed
    set gets -inf.

    `prompt_len` is the length of the prefix that generation starts from (1: Florence-2's decoder start token; the
    whole prompt for a decoder-only model).
    """

    def __init__(
        self, grammar: StepGrammar, max_new_tokens: int, min_boxes: int = 0, max_boxes: int | None = None,
        prompt_len: int = 1,
    ) -> None:
        self.grammar = grammar
        self.max_new_tokens = max_new_tokens
        self.min_boxes = min_boxes
        self.max_boxes = max_boxes
        self.prompt_len = prompt_len
        self._states: list[RowState] = []

    def states_for(self, input_ids: torch.LongTensor) -> list[RowState]:
        """States after the tokens in `input_ids`, advanced incrementally when generation adds one token a step."""
        generated = input_ids.shape[1] - self.prompt_len
        if len(self._states) == input_ids.shape[0] and all(s.steps == generated - 1 for s in self._states):
            for state, tok in zip(self._states, input_ids[:, -1].tolist()):
                self.grammar.advance(state, tok)
        else:
            self._states = [RowState() for _ in range(input_ids.shape[0])]
            for state, row in zip(self._states, input_ids[:, self.prompt_len:].tolist()):
                for tok in row:
                    self.grammar.advance(state, tok)
        return self._states

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        mask = torch.ones_like(scores, dtype=torch.bool)
        for row, state in enumerate(self.states_for(input_ids)):
            budget = self.max_new_tokens - state.steps
            mask[row, self.grammar.allowed(state, budget, self.min_boxes, self.max_boxes)] = False
        return scores.masked_fill(mask, float("-inf"))
