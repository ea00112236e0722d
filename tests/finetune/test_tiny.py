"""The tiny builder's tokenizer and class-name rules: byte-level BPE spells any class name, even one it was not
built with, and names the `<OD>` answer or classes.txt could not carry are refused."""

from __future__ import annotations

import pytest

from finetune.tiny import build_tokenizer, can_spell, check_class_names

NEVER_SEEN = ("crazing", "rolled-in_scale", "Fehler ä", "pitted_surface", "日本 ✓")


@pytest.mark.parametrize("name", NEVER_SEEN)
def test_a_class_name_the_tokenizer_was_not_built_with_round_trips(name: str) -> None:
    tokenizer = build_tokenizer(["scratch", "hole", "stain"])
    ids = tokenizer(name, add_special_tokens=False).input_ids
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == name
    assert can_spell(tokenizer, name)


def test_names_the_tokenizer_was_built_with_take_fewer_tokens() -> None:
    generic = build_tokenizer(["scratch"])
    built_for = build_tokenizer(["rolled-in_scale"])
    length = lambda tok: len(tok("rolled-in_scale", add_special_tokens=False).input_ids)  # noqa: E731
    assert length(built_for) < length(generic)


def test_a_tokenizer_that_loses_characters_cannot_spell_the_name() -> None:
    class Lossy:
        unk_token_id = 3

        def __call__(self, text: str, add_special_tokens: bool) -> object:
            return type("Encoding", (), {"input_ids": [3 if c == "ä" else 10 for c in text]})()

        def decode(self, ids: list[int]) -> str:
            return "".join("?" if i == 3 else "x" for i in ids)

    assert not can_spell(Lossy(), "Fehler ä")


@pytest.mark.parametrize(("names", "message"), [
    (["a<b"], "class name 'a<b'"),
    ([" pad"], "class name ' pad'"),
    (["two\nlines"], "line breaks"),
    (["hole", "hole"], r"\['hole'\] appear more than once"),
    ([], "must be non-empty"),
])
def test_names_the_answer_or_classes_txt_cannot_carry_are_refused(names: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_class_names(names)
